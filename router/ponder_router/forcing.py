"""Budget forcing: a sample that reaches its thinking budget still answers.

Role: ``ForcingConfig`` is the router config's ``forcing`` section and the ReasoningService
CRD's ``spec.budgets.forcing`` (the operator's API imports it, so the descriptions are what
``kubectl explain`` shows and the bounds are the API server's). When a sample is cut off at
its tier's ``max_tokens`` (the server says ``finish_reason: length``, or, from a model that
sends no signals, it used all its tokens), the ``executor`` continues the same sequence on
the same replica, prompt + the sample's text + the answer cue (``ForcingConfig.cue_text``),
for at most ``answer_tokens`` more, and the answer found in the cue and its continuation is
that sample's vote, counted as forced (s1's budget forcing: an answer forced at the cap beats
a truncation). Neighbours: ``chat`` (the thinking end marker the cue may name), ``plan``
(a forced answer is a vote). Pure: no I/O.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from .chat import ChatFormat

THINK_END = "{think_end}"
"""In a cue, the model's thinking end marker (``chat``'s delimiters; empty when none)."""
DEFAULT_CUE = "\n" + THINK_END + "\n\nFinal answer:"


class ForcingConfig(BaseModel):
    """Answer at the cap: how a sample cut off at its token budget is made to answer."""

    # Also the ReasoningService CRD's spec.budgets.forcing (the operator's API imports it).

    model_config = ConfigDict(
        frozen=True, extra="forbid", alias_generator=to_camel, populate_by_name=True
    )

    enabled: bool = Field(
        default=True,
        description="Continue a sample cut off at its tier's maxTokens with the answer cue "
                    "and vote with its answer; false: such a sample abstains.",
    )  # fmt: skip
    cue: str = Field(
        default=DEFAULT_CUE, min_length=1, max_length=256,
        description="Text appended to the cut-off sample to ask for its answer; {think_end} "
                    "stands for the model's thinking end marker (spec.model.chat), empty "
                    "when it has none.",
    )  # fmt: skip
    answer_tokens: int = Field(
        default=32, ge=1, le=4096,
        description="Tokens the forced answer may take (beyond the tier's maxTokens).",
    )  # fmt: skip

    def cue_text(self, chat: ChatFormat) -> str:
        """The cue with ``{think_end}`` replaced by ``chat``'s thinking end marker."""
        marks = chat.delimiters
        return self.cue.replace(THINK_END, marks.end if marks is not None else "")

"""Probe exits: a long sample stops once its answer has settled.

Role: ``ProbeConfig`` is the router config's ``probes`` section and the ReasoningService
CRD's ``spec.budgets.probes`` (the operator's API imports it, so the descriptions are what
``kubectl explain`` shows and the bounds are the API server's). While a sample streams,
the ``executor`` (through ``probing``) forks a short probe every ``interval_tokens`` of its
reasoning: the prompt, the reasoning so far and the probe cue, for at most ``max_tokens``,
on the sample's replica. The probe cue ends inside the answer's format (by default the
forcing cue and `` \\boxed{``) and the probe stops at the format's closing delimiter (vLLM's
``stop``, which leaves the matched string out of the text), so a probe generates the answer's
own tokens, not the phrase around it (Dynasor's probes do the same); ``read_probe`` puts the
delimiter back to read the answer. ``ProbeState`` is the pure decision: it keeps the
readings of one sample's probes and says when the last ``agreement`` of them give the same
answer (each at least ``confidence_floor`` sure where the server sent a confidence). Then
the sample is cancelled and the settled probe's answer is its vote, counted as probed
(Dynasor's certaindex idea, as a policy knob). Neighbours: ``answers`` (when two answers
are the same), ``forcing`` (the cue a probe's default extends), ``probing`` (the I/O).
Pure: no I/O, no clock.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from .answers import EqualityMode, Extractor, answer_key
from .chat import ChatFormat
from .forcing import ForcingConfig

DEFAULT_OPENING = " \\boxed{"
"""What the default probe cue adds to the forcing cue: the answer's box, opened."""
DEFAULT_STOP = ("}",)


class ProbeConfig(BaseModel):
    """Stop when the answer has settled: how often a streaming sample is probed and when
    its probes agree enough to end it."""

    # Also the ReasoningService CRD's spec.budgets.probes (the operator's API imports it).

    model_config = ConfigDict(
        frozen=True, extra="forbid", alias_generator=to_camel, populate_by_name=True
    )

    enabled: bool = Field(
        default=False,
        description="Probe long samples while they stream and stop one once its probes "
                    "agree; its vote is the probed answer.",
    )  # fmt: skip
    interval_tokens: int = Field(
        default=256, ge=1, le=1_000_000,
        description="Reasoning tokens between two probes of one sample.",
    )  # fmt: skip
    agreement: int = Field(
        default=3, ge=1, le=64,
        description="Consecutive probes that must give the same answer to stop the sample.",
    )  # fmt: skip
    confidence_floor: float | None = Field(
        default=None, gt=0.0, le=1.0,
        description="Least probability of a probe's answer (from the server's "
                    "cumulative_logprob of the probe) for it to count towards agreement; "
                    "ignored when the server sends none. Unset: any probe counts.",
    )  # fmt: skip
    max_tokens: int = Field(
        default=16, ge=1, le=1024,
        description="Tokens one probe may generate after its cue.",
    )  # fmt: skip
    cue: str | None = Field(
        default=None, min_length=1, max_length=256,
        description="Text appended to the reasoning so far to ask for its answer; it ends "
                    "inside the answer's format so that a probe writes only the answer. "
                    "{think_end} as in forcing.cue. Unset: forcing.cue followed by "
                    "' \\boxed{'.",
    )  # fmt: skip
    stop: tuple[Annotated[str, Field(min_length=1, max_length=32)], ...] = Field(
        default=DEFAULT_STOP, max_length=4,
        json_schema_extra={"x-kubernetes-list-type": "atomic"},
        description="Stop strings that end a probe (vLLM's stop; the matched one is left "
                    "out of its text): the closing delimiter of the format the cue opens, "
                    "first the one that closes it. Empty: a probe runs to the end of its "
                    "answer or maxTokens.",
    )  # fmt: skip

    def cue_text(self, forcing: ForcingConfig, chat: ChatFormat) -> str:
        """The probe cue, ``{think_end}`` replaced by ``chat``'s thinking end marker."""
        if self.cue is None:
            return forcing.cue_text(chat) + DEFAULT_OPENING
        return ForcingConfig(cue=self.cue).cue_text(chat)


@dataclass(frozen=True, slots=True)
class ProbeReading:
    """What one probe said: its answer (None: none found, or the probe failed) and the
    probability the server gave its text (None: not sent)."""

    answer: str | None
    confidence: float | None = None


def probe_confidence(cumulative_logprob: float | None) -> float | None:
    """The probability of a probe's text from its cumulative log-probability."""
    if cumulative_logprob is None or math.isnan(cumulative_logprob):
        return None
    return math.exp(min(cumulative_logprob, 0.0))


def compute_settled_answer(readings: Sequence[ProbeReading], *, agreement: int,
                           confidence_floor: float | None = None,
                           equality: EqualityMode = "numeric") -> str | None:  # fmt: skip
    """The answer the last ``agreement`` readings all give (the latest's spelling), each
    with an answer and, where it has a confidence, at least ``confidence_floor``; else None."""
    if agreement < 1 or len(readings) < agreement:
        return None
    last = readings[-agreement:]
    keys = set()
    for reading in last:
        if reading.answer is None:
            return None
        if (confidence_floor is not None and reading.confidence is not None
                and reading.confidence < confidence_floor):  # fmt: skip
            return None
        keys.add(answer_key(reading.answer, equality))
    return last[-1].answer if len(keys) == 1 else None


def read_probe(text: str, extract: Extractor, stop: Sequence[str], *,
               stopped: bool) -> tuple[str | None, str]:  # fmt: skip
    """The answer in a probe's ``text`` (its cue and what it generated) and the text it was
    read from. A probe that ``stopped`` at a stop string lost that string: when the text
    alone has no answer, it is read with each stop string put back (``\\boxed{42`` and
    ``}``), the first that gives one wins. An empty answer (``\\boxed{}``) is none."""
    answer = extract(text) or None
    if answer is not None or not stopped:
        return answer, text
    for closing in stop:
        answer = extract(text + closing) or None
        if answer is not None:
            return answer, text + closing
    return None, text


@dataclass
class ProbeState:
    """One sample's probes: when the next is due and whether the answer has settled."""

    config: ProbeConfig
    equality: EqualityMode = "numeric"
    readings: list[ProbeReading] = field(default_factory=list)
    next_at_tokens: int = 0
    settled: str | None = None

    def __post_init__(self) -> None:
        if self.next_at_tokens == 0:
            self.next_at_tokens = self.config.interval_tokens

    def due(self, tokens: int) -> bool:
        """Whether a sample at ``tokens`` reasoning tokens should be probed now."""
        return self.settled is None and tokens >= self.next_at_tokens

    def fired(self, tokens: int) -> None:
        """A probe was sent at ``tokens``: the next is due ``interval_tokens`` later."""
        self.next_at_tokens = tokens + self.config.interval_tokens

    def record(self, reading: ProbeReading) -> str | None:
        """A probe's reading, in the order they were sent; the settled answer, if any."""
        self.readings.append(reading)
        if self.settled is None:
            self.settled = compute_settled_answer(
                self.readings, agreement=self.config.agreement,
                confidence_floor=self.config.confidence_floor, equality=self.equality)
        return self.settled

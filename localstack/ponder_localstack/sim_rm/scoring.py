r"""Pure behaviour of the stand-in reward model, a simulator standing in for a verifier.

Role: the score of one (prompt, completion) text, as the router's verifier adapter sends
it (``prompt + "\n\n" + completion``, ``ponder_router.triton.TritonBackend.score``). The
score knows whether the completion's last ``\boxed{}`` answer is the problem's reference
answer — the stand-in LLM's (``sim_llm.behaviour``: the caller passes ``reference_of``)
— and is drawn from a normal distribution for a right or for a wrong answer, fitted to
the real reward model's scores: ``rm_score`` in
``shared/data/samples/qwen25math_math100_x8_samples.csv`` (Qwen2.5-Math-RM-72B on
Qwen2.5-Math samples of 100 MATH problems, 8 each; 728 right, 72 wrong; mean and sample
standard deviation per group, checked against the file by
``tests/unit/test_sim_rm_scoring.py``). The score is fixed by the text (a real reward
model is deterministic too); each sample's reasoning words differ, so its score does.
Not modelled: the real scores' correlation within a problem. Standard library only: it
runs inside Triton's python-backend stub. Neighbours: ``1/reward_model.py`` (the Triton model).
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable
from dataclasses import dataclass

SCORED_TEXT_SEPARATOR = "\n\n"
"""Between the prompt and the completion in the scored text; the stand-in LLM's
completions hold no blank line, so the last one splits them."""
_BOXED = "\\boxed{"


@dataclass(frozen=True)
class ScoreDistribution:
    """A normal distribution of reward-model scores."""

    mean: float
    stdev: float


RIGHT_SCORES = ScoreDistribution(mean=3.2724, stdev=1.2703)
"""``rm_score`` of the right samples (``correct == 1``): mean, sample standard deviation."""
WRONG_SCORES = ScoreDistribution(mean=-0.8226, stdev=1.7826)
"""``rm_score`` of the wrong samples (``correct == 0``)."""


def split_scored_text(text: str) -> tuple[str, str]:
    """The prompt and the completion of a scored text (at its last blank line)."""
    prompt, separator, completion = text.rpartition(SCORED_TEXT_SEPARATOR)
    return (prompt, completion) if separator else (text, "")


def last_boxed_answer(text: str) -> str | None:
    r"""The content of the last ``\boxed{...}`` (nested braces matched), or None."""
    start = text.rfind(_BOXED)
    if start < 0:
        return None
    depth, begin = 1, start + len(_BOXED)
    for position in range(begin, len(text)):
        depth += {"{": 1, "}": -1}.get(text[position], 0)
        if depth == 0:
            return text[begin:position].strip()
    return None


def draw_score(correct: bool, text: str) -> float:
    """A score for a right or a wrong completion, fixed by ``text``."""
    distribution = RIGHT_SCORES if correct else WRONG_SCORES
    seed = int.from_bytes(hashlib.sha256(" ".join(text.split()).encode()).digest()[:16], "big")
    return random.Random(seed).gauss(distribution.mean, distribution.stdev)


class SimRewardModel:
    """Scores texts; ``reference_of(prompt)`` is the right answer to a prompt."""

    def __init__(self, reference_of: Callable[[str], str]) -> None:
        self.reference_of = reference_of

    def is_correct(self, text: str) -> bool:
        """Whether the completion's last boxed answer is the prompt's reference answer."""
        prompt, completion = split_scored_text(text)
        answer = last_boxed_answer(completion)
        return answer is not None and answer == self.reference_of(prompt).strip()

    def score(self, text: str) -> float:
        return draw_score(self.is_correct(text), text)

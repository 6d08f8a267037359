"""Evaluation data from the stand-in LLM: many sampled completions per MATH-500 problem.

Role: the ``standin-math500`` source of ``ponder evaluate`` / ``ponder calibrate``
(``--builtin standin-math500``). The tools never import this package; they find
``generate_standin`` through the ``ponder_tools.generators`` entry point that
``localstack/pyproject.toml`` registers, so the source exists wherever the local stack is
installed (a checkout after ``make setup``) and is refused with a clear message elsewhere.
Rows have the shape ``ponder_tools.evaluation.dataset`` loads.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from .sim_llm.behaviour import UNLIMITED_MAX_TOKENS, SamplingParams, SimModel, SimSettings


def generate_standin(
    root: Path,
    *,
    samples_per_problem: int = 40,
    seed: int = 0,
    skill_logit_offset: float = 0.0,
    problem_limit: int | None = None,
) -> Iterator[dict[str, Any]]:
    """Samples of the stand-in LLM (a simulator) over MATH-500, deterministic under ``seed``.

    ``root`` is the shared data folder. Each sample is what the simulated model writes for
    the problem with sampling seed ``seed * 1_000_003 + i``: reasoning text ending in
    ``\\boxed{answer}``, correct with the problem's calibrated accuracy; ``tokens`` counts
    its tokens, ``confidences`` its geometric-mean token probability (what the router reads
    live from the simulated ``cumulative_logprob``: ``ponder_router.confidence``). A
    negative ``skill_logit_offset`` makes a weaker model (a smaller one in a cascade).
    Unreadable calibration data raises ``CalibrationDataError`` (a ``ValueError``).
    """
    model = SimModel.load(root, SimSettings(skill_logit_offset=skill_logit_offset))
    problems: Sequence[Any] = model.catalog.problems[:problem_limit]
    for problem in problems:
        completions = [
            model.complete(problem.text, SamplingParams(
                max_tokens=UNLIMITED_MAX_TOKENS, seed=seed * 1_000_003 + i))
            for i in range(samples_per_problem)
        ]  # fmt: skip
        yield {
            "id": problem.problem_id,
            "question": problem.text,
            "reference": problem.answer,
            "samples": [c.text for c in completions],
            "tokens": [len(c.tokens) for c in completions],
            "confidences": [round(math.exp(c.logprob_per_token), 9) for c in completions],
            "level": problem.level,
        }

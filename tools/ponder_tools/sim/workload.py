"""Trace requests → reasoning requests, through the router's own estimator and budget policy.

Role: between ``traces`` (arrivals and token counts) and ``engine`` (the replay). Every
request is given a MATH-500 problem (seeded uniform draw), scored by the router's
``FeatureEstimator`` (with the policy's estimator weights) and budgeted by
``assign_budget`` with the router's default policy at idle load, exactly as the live
router would budget that prompt.

Work model (what a request costs the GPUs):

- **Samples.** ``single`` and ``best-of-n`` run every sample the budget allows; ``vote`` and
  ``revise`` run the first wave plus each further sample with probability
  ``extra_sample_ratio`` (the budget policy's own demand model: adaptive stopping ends
  most requests early), i.e. ``wave + Binomial(max_samples - wave, extra_sample_ratio)``.
- **Tokens per sample.** The trace's generated-token count sets how long this request runs
  *relative to the trace's mean*; the budget sets the level: ``tokens = clip(round(
  token_fill_ratio x max_tokens_per_sample x generated / mean(generated)), 1,
  max_tokens_per_sample)``. So the router's expectation (``expected_request_tokens``) is
  right on average, every request deviates from it as much as the trace's requests
  deviate from their mean, and no sample exceeds its cap (capping makes the realised mean
  a little lower than the router expects).
- **Shape.** Parallel strategies run their samples as that many concurrent sequences of the
  same length; ``revise`` runs one sequence of ``samples x tokens``.

The router's demand signal for a request is its budget's ``expected_tokens`` (queued or in
flight), which is what ``ponder_router_demand_tokens`` publishes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from ponder_router.budgets import (
    Budget,
    BudgetPolicy,
    LoadState,
    Strategy,
    assign_budget,
    default_policy,
)
from ponder_router.difficulty import DifficultyEstimator
from ponder_tools.data import shared_data_dir

from .errors import SimulationError
from .traces import Trace

MATH500_PATH = Path("math") / "math500_test.jsonl"


@dataclass(frozen=True)
class Workload:
    """A trace with each request's budget and realised work, as parallel arrays."""

    trace: Trace
    tier_names: tuple[str, ...]
    tier: npt.NDArray[np.int64]
    difficulty: npt.NDArray[np.float64]
    sequences: npt.NDArray[np.int64]
    tokens_per_sequence: npt.NDArray[np.int64]
    expected_tokens: npt.NDArray[np.float64]
    expected_sequence_tokens: npt.NDArray[np.float64]

    @property
    def requests(self) -> int:
        return self.trace.requests

    @property
    def generated_tokens(self) -> npt.NDArray[np.int64]:
        """Tokens each request really generates (all its samples)."""
        return self.sequences * self.tokens_per_sequence

    @property
    def mean_expected_tokens(self) -> float:
        return float(self.expected_tokens.mean()) if self.requests else 0.0

    @property
    def mean_sequences(self) -> float:
        return float(self.sequences.mean()) if self.requests else 0.0


def load_problems(root: Path | None = None) -> list[str]:
    """The MATH-500 problem statements from the shared data folder."""
    path = (root or shared_data_dir()) / MATH500_PATH
    if not path.is_file():
        raise SimulationError(f"problem set {path} not found")
    with path.open() as handle:
        return [json.loads(line)["problem"] for line in handle if line.strip()]


def build_workload(
    trace: Trace,
    problems: list[str],
    *,
    policy: BudgetPolicy | None = None,
    estimator: DifficultyEstimator | None = None,
    effort: str = "auto",
    seed: int = 0,
    mix_shift_seconds: float | None = None,
) -> Workload:
    """Budget and size every request of ``trace`` (see the module docstring's model).

    ``mix_shift_seconds`` makes the difficulty mix shift over time (a synthetic variant on
    top of the real arrivals): requests in even periods of that length draw from the easier
    half of the problems (by estimated difficulty), those in odd periods from the harder
    half. Without it every request draws from all problems alike.
    """
    if not problems:
        raise SimulationError("build_workload needs at least one problem")
    policy = policy or default_policy()
    estimator = estimator or policy.feature_estimator()
    estimates = [estimator.estimate(problem) for problem in problems]
    budgets = [assign_budget(e, effort, LoadState.idle(), policy) for e in estimates]
    tier_names = tuple(tier.name for tier in policy.tiers)
    rng = np.random.default_rng(seed)
    count = trace.requests
    pick = rng.integers(0, len(problems), size=count)
    if mix_shift_seconds is not None:
        if mix_shift_seconds <= 0 or len(problems) < 2:
            raise SimulationError("mix_shift_seconds must be positive, with two problems or more")
        by_score = np.argsort([e.score for e in estimates], kind="stable")
        half = len(problems) // 2
        hard = (trace.arrival_seconds // mix_shift_seconds).astype(np.int64) % 2 == 1
        draw = rng.integers(0, half, size=count)
        pick = np.where(hard, by_score[half:][draw % (len(problems) - half)], by_score[draw])

    def column(values: list[float]) -> npt.NDArray[np.float64]:
        return np.array(values, dtype=np.float64)[pick]

    cap = column([b.max_tokens_per_sample for b in budgets])
    max_samples = column([b.max_samples for b in budgets]).astype(np.int64)
    wave = column([b.wave_size for b in budgets]).astype(np.int64)
    expected = column([b.expected_tokens for b in budgets])
    adaptive = column([_adaptive(b) for b in budgets]).astype(bool)
    revise = column([b.strategy is Strategy.REVISE for b in budgets]).astype(bool)
    tier = column([tier_names.index(b.tier) for b in budgets]).astype(np.int64)
    scores = column([e.score for e in estimates])

    model = policy.demand_model
    extra = rng.binomial(np.maximum(max_samples - wave, 0), model.extra_sample_ratio)
    samples = np.where(adaptive, wave + extra, max_samples).astype(np.int64)
    generated = trace.output_tokens.astype(np.float64)
    mean_generated = float(generated.mean()) if count else 1.0
    relative = generated / max(mean_generated, 1e-9)
    tokens = np.clip(np.rint(model.token_fill_ratio * cap * relative), 1, cap).astype(np.int64)
    sequences = np.where(revise, 1, samples).astype(np.int64)
    tokens_per_sequence = np.where(revise, samples * tokens, tokens).astype(np.int64)
    expected_sequence = np.where(revise, expected, model.token_fill_ratio * cap)
    return Workload(trace, tier_names, tier, scores, sequences, tokens_per_sequence, expected,
                    expected_sequence)


def _adaptive(budget: Budget) -> bool:
    return budget.strategy in (Strategy.VOTE, Strategy.REVISE)

"""Offline replay of the confidence policies: weighted votes and low-confidence cancellation.

Role: ``ponder evaluate``'s replay of ``ponder_router.confidence`` on data that carry
per-sample confidences (``EvalProblem.confidences``). Unlike ``replay``'s vectorised fast
path it drives the router's own ``RequestPlan`` (``plan.replay_request``) one request at
a time, because a confidence gate is state shared across requests: the service's window
of recent confidences. Each ordering is one pass of the service over every problem, in a
seeded random problem order and a seeded random sample order per problem, with one
``ConfidenceGate`` carried across that pass (so the gate starts empty, warms up on the
first requests and never cancels before ``min_window`` confidences, as a fresh router).

What a cancelled sample costs: with running confidences (``running``, e.g. the Gemma
traces' checkpoints at every tenth of the trace, ``running_from_traces``) the tokens to
the first checkpoint past ``min_tokens`` whose confidence is below the gate's threshold;
with final confidences only, the replay takes the final confidence as the running one
from the first token on (exactly the stand-in model's construction: its cumulative
logprob grows linearly, so its running per-token mean is the final one at every token;
for a real model an assumption) and charges ``min_tokens``. The threshold is the gate's
as it stands when the sample finishes in the replay's order. Samples still running at
the stop are charged as in ``replay_request``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from ponder_router.aggregate import StopRule
from ponder_router.budgets import Budget
from ponder_router.confidence import ConfidenceConfig, ConfidenceGate
from ponder_router.plan import RecordedSample, RequestPlan, replay_request

from .dataset import Dataset, EvalProblem
from .trajectories import Trace

Running = tuple[tuple[int, float], ...]


@dataclass(frozen=True)
class ConfidenceResult:
    """One policy's averages over problems and orderings (accuracy in [0, 1])."""

    name: str
    accuracy: float
    accuracy_se: float
    mean_samples: float
    mean_tokens: float
    low_confidence: float
    """Mean samples a request had cancelled for low confidence."""
    seconds: float
    problem_accuracy: tuple[float, ...]

    def as_dict(self) -> dict[str, object]:
        return {"name": self.name, "accuracy": round(self.accuracy, 6),
                "accuracy_se": round(self.accuracy_se, 6),
                "mean_samples": round(self.mean_samples, 4),
                "mean_tokens": round(self.mean_tokens, 2),
                "mean_low_confidence_cancels": round(self.low_confidence, 4),
                "seconds": round(self.seconds, 3)}  # fmt: skip


def running_from_traces(traces: Mapping[str, Sequence[Trace]]) -> dict[str, list[Running]]:
    """Per problem id, each trace's (tokens, confidence) checkpoints before its end, in the
    order ``trajectories.convert_gemma_thinking`` writes the samples."""
    return {qid: [tuple((c.prefix_tokens, c.confidence) for c in t.checkpoints[:-1])
                  for t in group] for qid, group in traces.items()}  # fmt: skip


def recorded(problem: EvalProblem, order: Sequence[int],
             running: Sequence[Running] | None = None) -> list[RecordedSample]:  # fmt: skip
    """The problem's samples in ``order`` as ``RecordedSample``s, with confidences."""
    if problem.tokens is None:
        raise ValueError(f"problem {problem.problem_id} has no token counts")
    confidences = problem.confidences
    return [RecordedSample(problem.answer_keys[i], problem.tokens[i],
                           confidence=None if confidences is None else confidences[i],
                           running=() if running is None else running[i])
            for i in order]  # fmt: skip


def replay_confidence(
    dataset: Dataset,
    budgets: Sequence[Budget],
    rule: StopRule,
    confidence: ConfidenceConfig | None,
    *,
    name: str,
    orderings: int = 10,
    seed: int = 0,
    waves: bool = True,
    running: Mapping[str, Sequence[Running]] | None = None,
) -> ConfidenceResult:
    """Replay ``dataset`` (problem ``i`` under ``budgets[i]``) with ``rule`` and, unless
    None, ``confidence`` (see the module docstring); ``waves=False`` draws one sample at
    a time (the sequential baselines)."""
    started = time.perf_counter()
    problems = dataset.problems
    rng = np.random.default_rng(seed)
    correct = np.zeros((len(problems), orderings))
    samples = np.zeros_like(correct)
    tokens = np.zeros_like(correct)
    cancels = np.zeros_like(correct)
    for o in range(orderings):
        gate = ConfidenceGate(confidence) if confidence is not None else None
        for p in rng.permutation(len(problems)).tolist():
            problem = problems[p]
            order = rng.permutation(problem.sample_count).tolist()
            budget = budgets[p].model_copy(update={
                "max_samples": min(budgets[p].max_samples, problem.sample_count),
                "wave_size": min(budgets[p].wave_size, problem.sample_count)})
            plan = RequestPlan(budget, rule, equality="text", confidence=gate)
            series = None if running is None else running.get(problem.problem_id)
            outcome = replay_request(plan, recorded(problem, order, series), waves=waves)
            correct[p, o] = outcome.answer == problem.reference_key
            samples[p, o] = outcome.launched
            tokens[p, o] = outcome.tokens
            cancels[p, o] = plan.low_confidence
    accuracy = correct.mean(1)
    se = float(accuracy.std(ddof=1) / math.sqrt(len(accuracy))) if len(accuracy) > 1 else 0.0
    return ConfidenceResult(
        name=name, accuracy=float(accuracy.mean()), accuracy_se=se,
        mean_samples=float(samples.mean()), mean_tokens=float(tokens.mean()),
        low_confidence=float(cancels.mean()), seconds=time.perf_counter() - started,
        problem_accuracy=tuple(accuracy.tolist()),
    )  # fmt: skip

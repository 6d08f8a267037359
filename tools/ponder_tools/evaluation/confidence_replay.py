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

from ponder_router.aggregate import BETA_THRESHOLD, StopRule, StopRuleKind
from ponder_router.budgets import Budget, BudgetPolicy
from ponder_router.confidence import ConfidenceConfig, ConfidenceGate
from ponder_router.forcing import ForcingConfig
from ponder_router.plan import RecordedSample, RequestPlan, replay_request

from .dataset import Dataset, EvalProblem
from .suite import ponder_budgets
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
    confidences, checkpoints = problem.confidences, problem.checkpoints
    return [RecordedSample(problem.answer_keys[i], problem.tokens[i],
                           confidence=None if confidences is None else confidences[i],
                           running=() if running is None else running[i],
                           checkpoints=() if checkpoints is None else checkpoints[i])
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
    forcing_tokens: int | None = ForcingConfig().answer_tokens,
) -> ConfidenceResult:
    """Replay ``dataset`` (problem ``i`` under ``budgets[i]``) with ``rule`` and, unless
    None, ``confidence`` (see the module docstring); ``waves=False`` draws one sample at
    a time (the sequential baselines). A sample past its cap answers there where the data
    hold its trajectory (budget forcing, the router's default, ``forcing_tokens`` answer
    tokens; None: it abstains)."""
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
            outcome = replay_request(plan, recorded(problem, order, series), waves=waves,
                                     forcing_tokens=forcing_tokens)  # fmt: skip
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


# -- side by side -------------------------------------------------------------------------

VARIANTS = ("off", "weighted", "cancel", "both")
"""Each policy without confidence, with weighted votes, with cancellation, with both."""


@dataclass(frozen=True)
class ReplayedPolicy:
    """A policy to compare with and without confidence: per-problem budgets and a rule."""

    name: str
    budgets: Sequence[Budget]
    rule: StopRule
    waves: bool = True


def variant_config(variant: str, base: ConfidenceConfig) -> ConfidenceConfig | None:
    """``base`` with the knobs ``variant`` names on (None: ``off``)."""
    if variant == "off":
        return None
    return base.model_copy(update={"weighting": variant in ("weighted", "both"),
                                   "cancel": variant in ("cancel", "both")})  # fmt: skip


def compare_confidence(
    dataset: Dataset,
    policies: Sequence[ReplayedPolicy],
    base: ConfidenceConfig,
    *,
    orderings: int = 10,
    seed: int = 0,
    running: Mapping[str, Sequence[Running]] | None = None,
) -> list[dict[str, object]]:
    """Every policy in every ``VARIANTS``, with its accuracy change against the same policy
    off (paired over problems, with its standard error) and the share of tokens saved."""
    rows: list[dict[str, object]] = []
    for policy in policies:
        base_result: ConfidenceResult | None = None
        for variant in VARIANTS:
            result = replay_confidence(
                dataset, policy.budgets, policy.rule, variant_config(variant, base),
                name=f"{policy.name}/{variant}", orderings=orderings, seed=seed,
                waves=policy.waves, running=running)  # fmt: skip
            off = base_result or result
            base_result = off
            paired = np.array(result.problem_accuracy) - np.array(off.problem_accuracy)
            se = float(paired.std(ddof=1) / math.sqrt(len(paired))) if len(paired) > 1 else 0.0
            saved = 1 - result.mean_tokens / off.mean_tokens if off.mean_tokens else 0.0
            rows.append({"dataset": dataset.name, "policy": policy.name, "variant": variant,
                         **result.as_dict(),
                         "accuracy_change": round(result.accuracy - off.accuracy, 6),
                         "accuracy_change_se": round(se, 6),
                         "tokens_saved": round(saved, 4)})  # fmt: skip
    return rows


def format_confidence_table(rows: Sequence[Mapping[str, object]]) -> str:
    """The rows as a text table: accuracy, its change (± paired SE), mean samples, mean
    tokens, tokens saved against the same policy off, low-confidence cancels a request."""
    lines = [f"{'dataset':30} {'policy':26} {'variant':9} {'acc %':>7} {'d acc':>12} "
             f"{'samples':>8} {'tokens':>9} {'saved %':>8} {'cancels':>8}"]
    for r in rows:
        acc, change, se = (float(str(r[k])) for k in ("accuracy", "accuracy_change",
                                                      "accuracy_change_se"))
        lines.append(
            f"{str(r['dataset'])[:30]:30} {r['policy']!s:26} {r['variant']!s:9} "
            f"{100 * acc:7.2f} {f'{100 * change:+.2f}±{100 * se:.2f}':>12} "
            f"{float(str(r['mean_samples'])):8.2f} {float(str(r['mean_tokens'])):9.0f} "
            f"{100 * float(str(r['tokens_saved'])):8.1f} "
            f"{float(str(r['mean_low_confidence_cancels'])):8.2f}")  # fmt: skip
    return "\n".join(lines)


def evaluate_confidence(
    dataset: Dataset,
    policies: Sequence[tuple[str, BudgetPolicy]],
    rule: StopRule,
    base: ConfidenceConfig,
    *,
    orderings: int,
    seed: int = 0,
    running: Mapping[str, Sequence[Running]] | None = None,
) -> list[dict[str, object]]:
    """``ponder evaluate --confidence``: Adaptive-Consistency (``rule``'s threshold when it
    is beta, else 0.95; one sample at a time) and each named Ponder policy under ``rule``,
    side by side in every ``VARIANTS`` (``compare_confidence``)."""
    flat = [Budget(tier="all", strategy="vote", max_tokens_per_sample=1 << 30,
                   max_samples=p.sample_count, wave_size=1, expected_tokens=0.0)
            for p in dataset.problems]  # fmt: skip
    ac = rule.rule_threshold if rule.kind is StopRuleKind.BETA else BETA_THRESHOLD
    replayed = [ReplayedPolicy(f"adaptive-consistency@{ac:g}", flat,
                               StopRule(kind=StopRuleKind.BETA, threshold=ac),
                               waves=False)]  # fmt: skip
    for name, policy in policies:
        distinct, index = ponder_budgets(dataset.problems, policy)
        replayed.append(ReplayedPolicy(name, [distinct[i] for i in index.tolist()], rule))
    return compare_confidence(dataset, replayed, base, orderings=orderings, seed=seed,
                              running=running)  # fmt: skip

"""The policies ``ponder evaluate`` compares, each run through ``replay`` on one dataset.

Role: between ``replay`` (the array engine) and the CLI. ``ponder_budgets`` gives every
problem the budget the live router would: the estimator scores the question
(``difficulty.FeatureEstimator`` with the policy's weights by default),
``budgets.assign_budget`` picks the tier with effort ``auto`` and an idle pool, capped at
the samples the data hold for it (the router's client sample cap). ``run_suite`` replays:

- ``maj@N`` for N = 1 .. the most samples any problem has (a problem with fewer uses all);
- ``best-of-N`` by score for the same N, when the data carry scores;
- Adaptive-Consistency (Aggarwal et al. 2023): the ``beta`` rule at several thresholds,
  0.95 the paper's, one sample at a time, up to all of a problem's samples;
- ESC (Li et al. 2024): the ``window`` rule at several windows, 5 the paper's, one
  sample at a time (the router's rule slides the window by one sample);
- the router's ``margin`` rule (a sequential probability ratio test) at several leads,
  on the same footing as Adaptive-Consistency: one sample at a time, up to all of a
  problem's samples, no tiers;
- Ponder: the default policy and each given ``BudgetPolicy``, in waves, stopping by the
  service's rule, with budget forcing where the data hold trajectories (``forcing``); a
  tier that escalates replays the other model's samples for its
  problems (matched by id) at that model's price per token.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from ponder_router.aggregate import StopRule, StopRuleKind
from ponder_router.budgets import Budget, BudgetPolicy, LoadState, assign_budget, default_policy
from ponder_router.difficulty import DifficultyEstimate, DifficultyEstimator
from ponder_router.forcing import ForcingConfig

from .dataset import Dataset, EvalProblem
from .replay import (
    DecisionCache,
    IntArray,
    PolicyResult,
    ReplayError,
    ReplaySet,
    audit,
    build_replay_set,
    replay_adaptive,
    replay_fixed,
    summarise,
)

AC_THRESHOLDS = (0.6, 0.7, 0.8, 0.9, 0.95, 0.99)
AC_PAPER_THRESHOLD = 0.95
ESC_WINDOWS = (2, 3, 4, 5, 6, 8)
ESC_PAPER_WINDOW = 5
MARGINS = (1, 2, 3, 4, 5)  # a lead of 1 stops at the first vote: maj@1


@dataclass(frozen=True)
class Escalation:
    """Another model's samples for the same problems, and its cost per token."""

    dataset: Dataset
    price_per_token: float = 1.0


@dataclass(frozen=True)
class NamedPolicy:
    name: str
    policy: BudgetPolicy


@dataclass(frozen=True)
class SuiteConfig:
    orderings: int = 50
    seed: int = 0
    stop_rule: StopRule = field(default_factory=StopRule)
    effort: str = "auto"
    price_per_token: float = 1.0
    ac_thresholds: tuple[float, ...] = AC_THRESHOLDS
    esc_windows: tuple[int, ...] = ESC_WINDOWS
    margins: tuple[int, ...] = MARGINS
    audit_checks: int = 200
    forcing: ForcingConfig = field(default_factory=ForcingConfig)
    """Budget forcing for Ponder's policies (on, as the router's default): a sample cut at
    its tier's cap votes with its answer there where the data hold its trajectory."""


@dataclass
class SuiteResult:
    dataset: str
    problems: int
    max_samples: int
    results: list[PolicyResult] = field(default_factory=list)
    elapsed_seconds: float = 0.0
    cache_calls: int = 0

    def by_name(self, name: str) -> PolicyResult:
        for result in self.results:
            if result.name == name:
                return result
        raise KeyError(name)

    def family(self, family: str) -> list[PolicyResult]:
        return [r for r in self.results if r.family == family]


def ponder_budgets(
    problems: Sequence[EvalProblem],
    policy: BudgetPolicy,
    estimator: DifficultyEstimator | None = None,
    *,
    effort: str = "auto",
    scores: Sequence[float] | None = None,
) -> tuple[list[Budget], IntArray]:
    """Each problem's budget from the router's estimator and ``assign_budget`` (distinct
    budgets, and each problem's index into them). The estimator is the policy's own
    (``BudgetPolicy.feature_estimator``) unless one is given; ``scores`` reuses known
    estimates."""
    estimator = estimator or policy.feature_estimator()
    budgets: dict[Budget, int] = {}
    index = np.empty(len(problems), dtype=np.int64)
    idle = LoadState.idle()
    for i, problem in enumerate(problems):
        if scores is not None:
            estimate = DifficultyEstimate(score=scores[i])
        else:
            estimate = estimator.estimate(problem.question)
        budget = assign_budget(estimate, effort, idle, policy,
                               requested_max_samples=problem.sample_count)  # fmt: skip
        index[i] = budgets.setdefault(budget, len(budgets))
    return list(budgets), index


def replay_ponder(
    dataset: Dataset,
    rs: ReplaySet,
    named: NamedPolicy,
    config: SuiteConfig,
    *,
    escalations: Mapping[str, Escalation] | None = None,
    cache: DecisionCache | None = None,
    scores: Sequence[float] | None = None,
) -> PolicyResult:
    """Replay one Ponder policy over ``rs`` (built from ``dataset``)."""
    problems = dataset.problems
    budgets, index = ponder_budgets(problems, named.policy, effort=config.effort, scores=scores)
    params: dict[str, object] = {"tiers": [t.name for t in named.policy.tiers],
                                 "stop_rule": config.stop_rule.model_dump(mode="json")}
    targets = {b.escalate_to for b in budgets if b.escalate_to is not None}
    if not targets:
        outcome = replay_adaptive(rs, budgets, index, config.stop_rule, name=named.name,
                                  family="ponder", cache=cache, params=params,
                                  forcing=config.forcing)  # fmt: skip
        return summarise(outcome, rs)
    escalations = escalations or {}
    missing = sorted(targets - set(escalations))
    if missing:
        raise ReplayError(f"policy {named.name} escalates to {missing}: give their samples "
                          "(--escalate NAME=FILE)")  # fmt: skip
    merged: list[EvalProblem] = []
    prices: list[float] = []
    by_id = {name: {p.problem_id: p for p in esc.dataset.problems}
             for name, esc in escalations.items()}  # fmt: skip
    for problem, b in zip(problems, index.tolist(), strict=True):
        target = budgets[b].escalate_to
        if target is None:
            merged.append(problem)
            prices.append(config.price_per_token)
            continue
        other = by_id[target].get(problem.problem_id)
        if other is None:
            raise ReplayError(f"{target} has no samples for problem {problem.problem_id}")
        merged.append(other)
        prices.append(escalations[target].price_per_token)
    mixed = build_replay_set(dataset, orderings=config.orderings, seed=config.seed,
                             price=prices, problems=merged)  # fmt: skip
    capped = [
        b.model_copy(update={"max_samples": min(b.max_samples, p.sample_count),
                             "wave_size": min(b.wave_size, p.sample_count)})
        for b, p in zip([budgets[i] for i in index.tolist()], merged, strict=True)
    ]  # fmt: skip
    distinct: dict[Budget, int] = {}
    merged_index = np.array([distinct.setdefault(b, len(distinct)) for b in capped])
    params["escalated_problems"] = int(sum(b.escalate_to is not None for b in capped))
    outcome = replay_adaptive(mixed, list(distinct), merged_index, config.stop_rule,
                              name=named.name, family="ponder", cache=cache,
                              params=params, forcing=config.forcing)  # fmt: skip
    return summarise(outcome, mixed)


def run_suite(
    dataset: Dataset,
    policies: Sequence[NamedPolicy] = (),
    config: SuiteConfig | None = None,
    *,
    escalations: Mapping[str, Escalation] | None = None,
    include_default: bool = True,
) -> SuiteResult:
    """Every baseline and Ponder policy over ``dataset`` (see the module docstring)."""
    config = config or SuiteConfig()
    started = time.perf_counter()
    rs = build_replay_set(dataset, orderings=config.orderings, seed=config.seed,
                          price=config.price_per_token)  # fmt: skip
    if config.audit_checks:
        audit(rs, config.audit_checks, seed=config.seed)
    out = SuiteResult(dataset=dataset.name, problems=rs.problems, max_samples=rs.width)
    for n in range(1, rs.width + 1):
        out.results.append(summarise(replay_fixed(rs, n), rs))
    if rs.scores is not None:
        for n in range(1, rs.width + 1):
            out.results.append(summarise(replay_fixed(rs, n, by_score=True), rs))
    cache = DecisionCache()
    everything = [Budget(tier="all", strategy="vote", max_tokens_per_sample=1 << 30,
                         max_samples=int(n), wave_size=1, expected_tokens=0.0)
                  for n in sorted(set(rs.counts.tolist()))]  # fmt: skip
    positions = {b.max_samples: i for i, b in enumerate(everything)}
    index = np.array([positions[int(n)] for n in rs.counts.tolist()], dtype=np.int64)
    for threshold in config.ac_thresholds:
        rule = StopRule(kind=StopRuleKind.BETA, threshold=threshold)
        outcome = replay_adaptive(
            rs, everything, index, rule, name=f"adaptive-consistency@{threshold:g}",
            family="adaptive-consistency", waves=False, cache=cache,
            params={"threshold": threshold})  # fmt: skip
        out.results.append(summarise(outcome, rs))
    for window in config.esc_windows:
        rule = StopRule(kind=StopRuleKind.WINDOW, window=window)
        outcome = replay_adaptive(
            rs, everything, index, rule, name=f"esc@{window}", family="esc", waves=False,
            cache=cache, params={"window": window})  # fmt: skip
        out.results.append(summarise(outcome, rs))
    for margin in config.margins:
        rule = StopRule(kind=StopRuleKind.MARGIN, margin=margin)
        outcome = replay_adaptive(
            rs, everything, index, rule, name=f"margin@{margin}", family="margin",
            waves=False, cache=cache, params={"margin": margin})  # fmt: skip
        out.results.append(summarise(outcome, rs))
    named = ([NamedPolicy("ponder-default", default_policy())] if include_default else [])
    for policy in [*named, *policies]:
        out.results.append(replay_ponder(dataset, rs, policy, config,
                                         escalations=escalations, cache=cache))  # fmt: skip
    out.cache_calls = cache.calls
    out.elapsed_seconds = time.perf_counter() - started
    return out


def samples_at_accuracy(curve: Sequence[PolicyResult], accuracy: float,
                        cost: str = "samples") -> float | None:  # fmt: skip
    """Least compute a curve's frontier needs to reach ``accuracy`` (linear between its
    points), or None when it never does."""
    points = sorted((_cost(r, cost), r.accuracy) for r in curve)
    best_cost, best_acc = None, -1.0
    for c, a in points:
        if a > best_acc:
            if a >= accuracy:
                if best_cost is None or best_acc < 0:
                    return c
                share = (accuracy - best_acc) / (a - best_acc)
                return best_cost + share * (c - best_cost)
            best_cost, best_acc = c, a
    return None


def accuracy_at_samples(curve: Sequence[PolicyResult], samples: float,
                        cost: str = "samples") -> float | None:  # fmt: skip
    """Most accuracy a curve's frontier reaches within ``samples`` of compute (linear
    between its points), or None when even its cheapest point costs more."""
    frontier: list[tuple[float, float]] = []
    for c, a in sorted((_cost(r, cost), r.accuracy) for r in curve):
        if not frontier or a > frontier[-1][1]:
            frontier.append((c, a))
    if not frontier or frontier[0][0] > samples:
        return None
    for (c0, a0), (c1, a1) in itertools.pairwise(frontier):
        if c1 > samples:
            return a0 + (samples - c0) / (c1 - c0) * (a1 - a0)
    return frontier[-1][1]


def _cost(result: PolicyResult, cost: str) -> float:
    if cost == "samples":
        return result.mean_samples
    value = result.mean_tokens if cost == "tokens" else result.mean_cost
    return float("nan") if value is None else value

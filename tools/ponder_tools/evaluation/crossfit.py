"""Out-of-sample evaluation of calibration: K-fold cross-fitting over the problems.

Role: between ``calibrate`` and the benchmark. A policy calibrated and evaluated on the
same problems flatters itself; here every problem is replayed under a policy calibrated
on the other folds (``calibrate.solve`` on the rest, ``suite.replay_ponder`` on the
fold), and the per-problem results are stitched back together in the data's order, so
the cross-fitted policy can stand in the same table as the baselines.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass, replace

import numpy as np

from .calibrate import CalibrationConfig, CandidateTable, Solution, solve
from .replay import DecisionCache, PolicyResult, build_replay_set
from .suite import Escalation, NamedPolicy, SuiteConfig, replay_ponder


@dataclass(frozen=True)
class CrossFit:
    result: PolicyResult
    solutions: tuple[Solution, ...]


def fold_of(ids: tuple[str, ...], folds: int, seed: int) -> np.ndarray:
    """Each id's fold, dealt round-robin in the order of a seeded hash."""
    ranked = sorted(range(len(ids)),
                    key=lambda i: hashlib.sha256(f"fold:{seed}:{ids[i]}".encode()).hexdigest())
    out = np.empty(len(ids), dtype=np.int64)
    out[ranked] = np.arange(len(ids)) % folds
    return out


def cross_fit(
    table: CandidateTable,
    config: CalibrationConfig,
    *,
    name: str,
    folds: int = 5,
    orderings: int = 50,
    order: tuple[str, ...] | None = None,
    cache: DecisionCache | None = None,
) -> CrossFit:
    """The calibrated policy's results on every problem, each from the other folds.

    ``order`` lists the problem ids in the order the result's per-problem arrays should
    follow (the baselines' order); by default the table's. ``cache`` may be shared
    between calls (its answers depend on nothing but the states it was asked about).
    """
    cache = cache or DecisionCache()
    fold = fold_of(table.ids, folds, config.seed)
    order = order or table.ids
    position = {pid: i for i, pid in enumerate(order)}
    accuracy, samples, tokens = (np.zeros(len(order)) for _ in range(3))
    completed_sum = cost_sum = verifier_sum = waves_sum = 0.0
    has_tokens = True
    solutions = []
    main = table.models[0]
    escalations: Mapping[str, Escalation] = {
        m.service: Escalation(m.dataset, m.price_per_token) for m in table.models[1:]}
    for f in range(folds):
        train = fold != f
        solution = solve(table, train, config, cache=cache)
        solutions.append(solution)
        test_ids = [pid for pid, t in zip(table.ids, train, strict=True) if not t]
        subset = main.dataset.subset(test_ids)
        rs = build_replay_set(subset, orderings=orderings, seed=config.seed,
                              price=main.price_per_token)  # fmt: skip
        suite_config = SuiteConfig(orderings=orderings, seed=config.seed,
                                   stop_rule=solution.rule,
                                   price_per_token=main.price_per_token)  # fmt: skip
        result = replay_ponder(subset, rs, NamedPolicy(name, solution.policy), suite_config,
                               escalations=escalations, cache=cache)  # fmt: skip
        where = [position[p.problem_id] for p in subset.problems]
        accuracy[where] = result.problem_accuracy
        samples[where] = result.problem_samples
        tokens[where] = result.problem_tokens
        completed_sum += result.mean_completed * len(where)
        cost_sum += (result.mean_cost or 0.0) * len(where)
        verifier_sum += result.mean_verifier_calls * len(where)
        waves_sum += (result.mean_waves or 0.0) * len(where)
        has_tokens = has_tokens and result.mean_tokens is not None
    count = len(order)
    se = float(accuracy.std(ddof=1) / math.sqrt(count)) if count > 1 else 0.0
    thresholds = sorted({t.stop_threshold for s in solutions for t in s.policy.tiers
                         if t.stop_threshold is not None})  # fmt: skip
    scores = sorted({s.rule.score_threshold for s in solutions
                     if s.rule.score_threshold is not None})  # fmt: skip
    merged = PolicyResult(
        name=name, family="ponder", accuracy=float(accuracy.mean()), accuracy_se=se,
        mean_samples=float(samples.mean()), mean_completed=completed_sum / count,
        mean_tokens=float(tokens.mean()) if has_tokens else None,
        mean_cost=cost_sum / count if has_tokens else None,
        params={"folds": folds, "stop_thresholds": thresholds, "score_thresholds": scores,
                "tiers_per_fold": [len(s.policy.tiers) for s in solutions]},
        problem_accuracy=accuracy, problem_samples=samples, problem_tokens=tokens,
        mean_verifier_calls=verifier_sum / count, mean_waves=waves_sum / count,
    )  # fmt: skip
    return CrossFit(merged, tuple(solutions))


def with_budget(config: CalibrationConfig, budget: float) -> CalibrationConfig:
    """``config`` aiming at a mean compute ``budget`` instead of an accuracy."""
    return replace(config, budget=budget, target_accuracy=None)

"""What ``ponder calibrate`` reports: estimator quality, bins, hulls, escalation.

Role: presentation of a ``calibrate.Solution`` as the JSON document the CLI writes
(``solution_report``); ``escalation_table`` states, per bin, what each model must spend
to match the other's accuracy.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import numpy as np

from .allocate import Point, upper_hull
from .calibrate import (
    BinningResult,
    CalibrationConfig,
    Candidate,
    CandidateTable,
    CostUnit,
    ModelData,
    Solution,
    compare_estimators,
)
from .replay import BoolArray, FloatArray


def estimator_quality(table: CandidateTable, train: BoolArray) -> dict[str, Any]:
    """How well prompt-only scores rank held-out problems by difficulty, and which
    weights a calibrated policy ships (``calibrate.compare_estimators``)."""
    comparison = compare_estimators(table, train)
    out: dict[str, Any] = {
        name: {"auroc_pass1_below_half": comparison.auroc[name],
               "spearman_vs_error_rate": comparison.spearman[name]}
        for name in ("router_default_weights", "refit_on_train")
    }  # fmt: skip
    out["test_problems"] = comparison.test_problems
    out["test_hard_problems"] = comparison.test_hard_problems
    out["refit_weights"] = comparison.refit.model_dump(mode="json")
    out["shipped"] = "refit_on_train" if comparison.refit_wins else "router_default_weights"
    return out


def binning_report(result: BinningResult, candidates: Sequence[Candidate],
                   table: CandidateTable, train: BoolArray,
                   unit: CostUnit) -> dict[str, Any]:  # fmt: skip
    """Bins, their hulls, the chosen points, and what the choice gives on test problems."""
    test = ~train
    picks = result.chosen(candidates)
    per_problem = [picks[b] for b in result.bins.tolist()]
    test_idx = np.nonzero(test)[0]
    test_acc = float(np.mean([per_problem[p].accuracy[p] for p in test_idx]))
    test_cost = float(np.mean([per_problem[p].spend(unit)[p] for p in test_idx]))
    models = table.models
    bins = []
    for b in range(result.binning.count):
        in_bin = result.bins == b
        point = result.hulls[b][result.step.choice[b]]
        margin = result.penalties[b] if result.penalties else np.zeros(len(candidates))
        bins.append({
            "upper_edge": result.binning.edges[b],
            "train_problems": int((train & in_bin).sum()),
            "test_problems": int((test & in_bin).sum()),
            "train_mean_pass_at_1": round(float(table.pass1[train & in_bin].mean()), 4),
            "chosen": {**picks[b].describe(models),
                       "train_accuracy": round(point.accuracy + margin[point.label], 4),
                       "selection_margin": round(float(margin[point.label]), 4),
                       f"train_{unit}": round(point.cost, 3)},
            "hull": [{**candidates[p.label].describe(models), unit: round(p.cost, 3),
                      "accuracy": round(p.accuracy + margin[p.label], 4),
                      "selection_margin": round(float(margin[p.label]), 4),
                      "mean_samples": _mean(candidates[p.label].samples, train & in_bin),
                      "mean_tokens": _mean(candidates[p.label].tokens, train & in_bin)}
                     for p in result.hulls[b]],
        })  # fmt: skip
    discount = sum(w * float(result.penalties[b][result.hulls[b][result.step.choice[b]].label])
                   for b, w in enumerate(result.weights)) if result.penalties else 0.0
    return {
        "kind": result.binning.kind, "bins": bins,
        "train": {"accuracy": round(result.step.accuracy + discount, 4),
                  "selection_accuracy": round(result.step.accuracy, 4),
                  unit: round(result.step.cost, 3)},
        "test_from_curves": {"accuracy": round(test_acc, 4), unit: round(test_cost, 3),
                             "maj_all_accuracy": round(float(table.maj_all[test].mean()), 4)},
    }  # fmt: skip


def escalation_table(result: BinningResult, candidates: Sequence[Candidate],
                     models: Sequence[ModelData]) -> list[dict[str, Any]]:  # fmt: skip
    """Per bin: for each point on the large model's hull, what the small model spends to
    match its accuracy, and the other way round; and which is cheaper."""
    rows = []
    for b, points in enumerate(result.curves):
        small = upper_hull([p for p in points if candidates[p.label].model == 0])
        large = upper_hull([p for p in points if candidates[p.label].model > 0])
        chosen = result.hulls[b][result.step.choice[b]]
        comparisons = []
        for p in large:
            need = cost_to_reach(small, p.accuracy)
            comparisons.append({
                **candidates[p.label].describe(models), "accuracy": round(p.accuracy, 4),
                "large_cost": round(p.cost, 3),
                "small_cost_at_equal_accuracy": None if need is None else round(need, 3),
                "cheaper": "large" if need is None or need > p.cost else "small",
            })  # fmt: skip
        reverse = []
        for p in small:
            need = cost_to_reach(large, p.accuracy)
            reverse.append({
                **candidates[p.label].describe(models), "accuracy": round(p.accuracy, 4),
                "small_cost": round(p.cost, 3),
                "large_cost_at_equal_accuracy": None if need is None else round(need, 3),
                "cheaper": "small" if need is None or need >= p.cost else "large",
            })  # fmt: skip
        rows.append({"bin": b, "upper_edge": result.binning.edges[b],
                     "chosen": candidates[chosen.label].describe(models),
                     "large_vs_small": comparisons, "small_vs_large": reverse})  # fmt: skip
    return rows


def cost_to_reach(hull: Sequence[Point], accuracy: float) -> float | None:
    """Compute a hull needs to reach ``accuracy`` (linear between points), else None."""
    if hull and hull[0].accuracy >= accuracy:
        return hull[0].cost
    for here, there in itertools.pairwise(hull):
        if there.accuracy >= accuracy:
            share = (accuracy - here.accuracy) / (there.accuracy - here.accuracy)
            return here.cost + share * (there.cost - here.cost)
    return None


def solution_report(table: CandidateTable, train: BoolArray, solution: Solution,
                    config: CalibrationConfig) -> dict[str, Any]:  # fmt: skip
    """Everything ``ponder calibrate`` writes to ``calibration.json`` but the held-out run."""
    unit = config.cost_unit
    return {
        "models": [{"service": m.service, "dataset": m.dataset.name,
                    "price_per_token": m.price_per_token} for m in table.models],
        "settings": {"bins": config.bins, "test_fraction": config.test_fraction,
                     "seed": config.seed, "orderings": config.orderings, "cost_unit": unit,
                     "budget": config.budget, "target_accuracy": config.target_accuracy,
                     "match_within": config.match_within,
                     "thresholds": list(config.thresholds),
                     "selection_se": config.selection_se,
                     "best_of_n_in_allocation": config.verifier_model is not None},
        "split": {"train": int(train.sum()), "test": int((~train).sum())},
        "reference_maj_all_train_accuracy": round(solution.reference_accuracy, 4),
        "stop_rule": solution.rule.model_dump(mode="json"),
        "per_stop_rule": solution.per_rule,
        "estimator_signal": solution.signal,
        "estimator": estimator_quality(table, train),
        "predicted_bins": binning_report(solution.predicted, solution.candidates, table, train,
                                         unit),
        "oracle_bins": binning_report(solution.oracle, solution.candidates, table, train, unit),
        "escalation": escalation_table(solution.predicted, solution.candidates, table.models)
        if len(table.models) > 1 else None,
        "escalation_oracle_bins": escalation_table(solution.oracle, solution.candidates,
                                                   table.models)
        if len(table.models) > 1 else None,
    }  # fmt: skip


def _mean(values: FloatArray, mask: BoolArray) -> float:
    """A rounded mean over the ``mask`` problems (raw, unshrunk)."""
    return round(float(values[mask].mean()), 3)

"""Offline evaluation benchmark: Ponder's budgets against maj@N, Adaptive-Consistency and ESC.

For every real per-sample set in ``$PONDER_DATA_DIR/samples`` (Llama-2-13B on GSM8K,
400 problems x 48 program-of-thought samples; GPT-4 on GSM8K, 1,319 x 6 chain-of-thought
samples; Qwen2.5-Math, 100 MATH problems x 8 samples with reward-model scores; the
Gemma-4-12B thinking traces, 150 questions x 10 with confidences, compared as text) and
the stand-in LLM (a simulator) over MATH-500 with 40 samples a problem, all read or
generated in place into a temporary folder, side by side, it replays every problem in
50 random sample orders through the router's own estimator, budgets, aggregation and
stopping (``ponder_tools.evaluation``), and compares, with mean samples, tokens and
waves (sequential rounds of launches, the latency cost):

- maj@N, best-of-N by score, Adaptive-Consistency (beta thresholds), ESC (windows);
- the router's default policy;
- the cross-fitted AUROC of each difficulty signal for "the first sample is wrong"
  (``signals``: the router's prompt prior, text priors, first-wave disagreement,
  confidence, length, and all of them combined);
- on the sets named by ``--calibrate`` (Qwen by default; calibration is the slow part),
  the calibrated policy, out of sample: 5-fold cross-fitting, each fold's problems under
  a policy calibrated (``ponder calibrate``'s ``solve``) on the other four folds, aiming
  at maj@N_max within 0.1 points on train; and the same at a sweep of sample budgets.
  Where the data carry verifier scores (Qwen), best-of-n tiers are allowed, scored by
  the data's reward model and stopping at a verifier score chosen on train; the table
  counts its verifier calls beside the samples.

The verdict judges Adaptive-Consistency along both curves: at each of its thresholds'
accuracy, the samples Ponder's cross-fitted curve (the calibrated point and the budget
sweep) needs, and where Ponder needs fewer, as many, more, or never gets there; and the
same for the router's margin stopping rule alone (no tiers, no calibration).

With ``--cascade``, a two-model cascade on the stand-in (a weaker model, logit skill
-1.5, at 1 cost unit per token; the calibrated one at 8) calibrated the same way, with
escalation.

Prints the tables, a verdict on the targets and one summary table across the sets,
writes ``bench/results/evaluate.json``, ``bench/results/evaluate_<dataset>.png`` and
``bench/results/evaluate_signals.png`` (AUROC by signal and set).

    .venv/bin/python bench/bench_evaluate.py [--orderings 50] [--out bench/results] \
        [--calibrate qwen25math-100x8,standin-math500] [--cascade]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from ponder_localstack.standin import generate_standin
from ponder_tools.data import shared_data_dir
from ponder_tools.evaluation.calibrate import (
    CalibrationConfig,
    ModelData,
    build_table,
    split_ids,
)
from ponder_tools.evaluation.calibration_report import estimator_quality
from ponder_tools.evaluation.crossfit import cross_fit, with_budget
from ponder_tools.evaluation.dataset import (
    Dataset,
    convert_qwen25math,
    load_dataset,
    write_jsonl,
)
from ponder_tools.evaluation.replay import DecisionCache
from ponder_tools.evaluation.report import (
    compare_along_curve,
    compare_policies,
    format_comparisons,
    format_table,
    plot_suite,
    suite_document,
)
from ponder_tools.evaluation.signals import (
    COMBINED,
    LEARNED_PRIOR,
    POLICY_WAVE,
    ROUTER_PRIOR,
    TRAFFIC_PRIOR,
    SignalConfig,
    SignalReport,
    difficulty_signals,
    format_signals,
)
from ponder_tools.evaluation.suite import (
    SuiteConfig,
    SuiteResult,
    run_suite,
    samples_at_accuracy,
)
from ponder_tools.evaluation.trajectories import convert_gemma_thinking

TARGET_GAP_POINTS = 0.2
TARGET_SAMPLE_REDUCTION = 5.0
TARGET_REPLAY_SECONDS = 10.0
BUDGET_SWEEP = (1.0, 1.25, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0, 5.0, 6.0, 8.0)
FOLDS = 5
CALIBRATION_ORDERINGS = 50
VERIFIER = "reward-model"  # the model behind the data's scores (Qwen's release: unnamed)
SMALL_SKILL, LARGE_SKILL = -1.5, 0.0
SMALL_PRICE, LARGE_PRICE = 1.0, 8.0
SIGNAL_ORDERINGS = 20
TARGET_AUROC = 0.75
DEFAULT_GAP_POINTS = 0.5  # the default policy's target: within this of maj@N_max (or a paired se)
BASELINE_FAMILIES = ("adaptive-consistency", "esc", "margin")
DATASETS = ("llama2-13b-gsm8k-pot", "gpt4-gsm8k-cot", "qwen25math-100x8",
            "gemma4-12b-thinking", "standin-math500")  # fmt: skip
REAL_FILES = {"llama2-13b-gsm8k-pot": "samples/mot_llama2_13b_gsm8k_pot_400x48.jsonl",
              "gpt4-gsm8k-cot": "samples/mot_gpt4_gsm8k_cot_1319x6.jsonl"}  # fmt: skip
SIMULATED = ("standin-math500",)
SUMMARY_SIGNALS = (ROUTER_PRIOR, TRAFFIC_PRIOR, LEARNED_PRIOR, "disagreement",
                   "unconfidence", "length", "low score", COMBINED)  # fmt: skip


def load_source(name: str, folder: Path, **standin: float) -> tuple[Dataset, float]:
    """Write a built-in source as JSONL under ``folder`` and load it; seconds to load."""
    mode = "numeric"
    if name in REAL_FILES:
        path = shared_data_dir() / REAL_FILES[name]
    elif name == "qwen25math-100x8":
        path = write_jsonl(convert_qwen25math(), folder / f"{name}.jsonl")
    elif name == "gemma4-12b-thinking":
        path = write_jsonl(convert_gemma_thinking(), folder / f"{name}.jsonl")
        mode = "text"  # its answers are free text: `ponder evaluate --equality text`
    else:
        skill = standin.get("skill", 0.0)
        path = write_jsonl(generate_standin(shared_data_dir(), samples_per_problem=40,
                                            skill_logit_offset=skill),
                           folder / f"{name}{skill:+g}.jsonl")
    started = time.perf_counter()
    dataset = load_dataset(path, name=name, mode=mode)
    return dataset, time.perf_counter() - started


def evaluate_dataset(name: str, folder: Path, orderings: int, seed: int, out: Path,
                     calibrate: bool) -> dict[str, Any]:  # fmt: skip
    dataset, load_seconds = load_source(name, folder)
    suite = run_suite(dataset, config=SuiteConfig(orderings=orderings, seed=seed))
    replay_seconds = suite.elapsed_seconds
    started = time.perf_counter()
    signals = difficulty_signals(dataset, SignalConfig(orderings=SIGNAL_ORDERINGS, seed=seed,
                                                       folds=FOLDS))  # fmt: skip
    signal_seconds = time.perf_counter() - started
    if not calibrate:
        print(f"\n== {name}: {suite.problems} problems, up to {suite.max_samples} samples, "
              f"{orderings} orders each ==")
        print(format_table(suite, title=""))
        print(format_comparisons(compare_policies(suite)))
        print(format_signals(signals))
        print(f"replay of all baselines and the default policy: {replay_seconds:.2f} s "
              f"(+{load_seconds:.2f} s loading); signals {signal_seconds:.1f} s")
        plot_suite(suite, out / f"evaluate_{name}.png",
                   f"{name}: accuracy against compute ({orderings} orders)")
        document = suite_document(suite)
        document.update({"default_target": default_target(suite),
                         "load_seconds": round(load_seconds, 3),
                         "replay_seconds": round(replay_seconds, 3),
                         "signal_seconds": round(signal_seconds, 2),
                         "difficulty_signals": signals.as_dict(),
                         "simulated": name in SIMULATED})  # fmt: skip
        return document
    started = time.perf_counter()
    scored = all(p.scores is not None for p in dataset.problems)
    config = CalibrationConfig(orderings=CALIBRATION_ORDERINGS, seed=seed,
                               verifier_model=VERIFIER if scored else None)  # fmt: skip
    table = build_table([ModelData("serving", dataset)], config)
    order = tuple(p.problem_id for p in dataset.problems)
    cache = DecisionCache()
    fitted = cross_fit(table, config, name=f"ponder-calibrated ({FOLDS}-fold)", folds=FOLDS,
                       orderings=orderings, order=order, cache=cache)  # fmt: skip
    suite.results.append(fitted.result)
    for budget in BUDGET_SWEEP:
        point = cross_fit(table, with_budget(config, budget), name=f"ponder-budget@{budget:g}",
                          folds=FOLDS, orderings=orderings, order=order,
                          cache=cache)  # fmt: skip
        suite.results.append(dataclasses.replace(point.result, family="ponder-curve"))
    calibration_seconds = time.perf_counter() - started
    train_ids, _ = split_ids(table.ids, 0.3, seed)
    quality = estimator_quality(table, np.array([i in train_ids for i in table.ids]))
    print(f"\n== {name}: {suite.problems} problems, up to {suite.max_samples} samples, "
          f"{orderings} orders each ==")
    print(format_table(suite, title=""))
    print(format_comparisons(compare_policies(suite)))
    print(format_signals(signals))
    for label in ("router_default_weights", "refit_on_train"):
        q = quality[label]
        print(f"estimator ({label}) on {quality['test_problems']} held-out problems "
              f"({quality['test_hard_problems']} with pass@1 < 0.5): AUROC "
              f"{_fmt(q['auroc_pass1_below_half'])}, Spearman vs error rate "
              f"{_fmt(q['spearman_vs_error_rate'])}")
    verdict = judge(suite, fitted.result.name, replay_seconds, dataset)
    for line in verdict["lines"]:
        print(line)
    print(f"replay of all baselines and the default policy: {replay_seconds:.2f} s "
          f"(+{load_seconds:.2f} s loading); calibration and cross-fitting "
          f"{calibration_seconds:.1f} s")
    plot_suite(suite, out / f"evaluate_{name}.png",
               f"{name}: accuracy against compute ({orderings} orders; Ponder calibrated "
               f"out of sample, {FOLDS}-fold)")
    document = suite_document(suite)
    document.update({
        "default_target": default_target(suite),
        "load_seconds": round(load_seconds, 3), "replay_seconds": round(replay_seconds, 3),
        "signal_seconds": round(signal_seconds, 2),
        "difficulty_signals": signals.as_dict(), "simulated": name in SIMULATED,
        "calibration_seconds": round(calibration_seconds, 2),
        "calibration": {"orderings": CALIBRATION_ORDERINGS, "selection_se": config.selection_se,
                        "stop_thresholds": list(config.thresholds),
                        "verifier_model": config.verifier_model},
        "calibrated_per_fold": [{
            "stop_rule": s.rule.model_dump(mode="json"),
            "tiers": [t.model_dump(by_alias=True, mode="json", exclude_none=True)
                      for t in s.policy.tiers]} for s in fitted.solutions],
        "estimator_on_held_out": quality,
        "verdict": verdict["checks"],
    })  # fmt: skip
    return document


def default_target(suite: SuiteResult) -> dict[str, Any]:
    """Issue 17's first target for the default policy: within ``DEFAULT_GAP_POINTS`` of
    maj@N_max (or one paired standard error, whichever is larger), and fewer mean samples
    than the cheapest of Adaptive-Consistency, ESC and the margin rule at its accuracy
    (each family's frontier, linear between its points; these baselines draw one sample
    a wave, so their waves are their samples), in no more mean waves."""
    row = next(c for c in compare_policies(suite) if c["policy"] == "ponder-default")
    default = suite.by_name("ponder-default")
    tolerance = max(DEFAULT_GAP_POINTS, row["gap_points_paired_se"])
    need = {f: samples_at_accuracy(suite.family(f), default.accuracy)
            for f in BASELINE_FAMILIES}  # fmt: skip
    reaching = {f: n for f, n in need.items() if n is not None}
    cheapest = min(reaching, key=lambda f: reaching[f]) if reaching else None
    samples = reaching[cheapest] if cheapest is not None else None
    waves = default.mean_waves or 0.0
    fewer = samples is None or default.mean_samples < samples
    return {"gap_points": row["gap_points"], "tolerance_points": round(tolerance, 3),
            "within": row["gap_points"] <= tolerance,
            "cheapest_baseline": cheapest,
            "baseline_samples": None if samples is None else round(samples, 3),
            "default_samples": round(default.mean_samples, 3),
            "default_waves": round(waves, 3),
            "fewer_samples": fewer,
            "no_more_waves": samples is None or waves <= samples}  # fmt: skip


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def judge(suite: SuiteResult, name: str, replay_seconds: float,
          dataset: Dataset) -> dict[str, Any]:  # fmt: skip
    """The calibrated policy and its curve against the targets: each check with its numbers."""
    ponder = suite.by_name(name)
    top = suite.by_name(f"maj@{suite.max_samples}")
    row = next(c for c in compare_policies(suite) if c["policy"] == name)
    gap = row["gap_points"]
    reduction = row["sample_reduction_vs_maj_max"]
    ac_need = row["ac_samples_at_equal_accuracy"]
    curve = [*suite.family("ponder-curve"), ponder]
    along = compare_along_curve(suite, curve)
    verdicts = _verdicts(along)
    margin_along = compare_along_curve(suite, suite.family("margin"))
    margin_verdicts = _verdicts(margin_along)
    within = [r for r in curve if 100 * (top.accuracy - r.accuracy) <= TARGET_GAP_POINTS]
    cheapest = min(within, key=lambda r: r.mean_samples) if within else None
    checks: dict[str, Any] = {
        "match_maj_max": {"gap_points": gap, "paired_se_points": row["gap_points_paired_se"],
                          "sample_reduction": reduction,
                          "verifier_calls": round(ponder.mean_verifier_calls, 3),
                          "met": gap <= TARGET_GAP_POINTS
                          and reduction >= TARGET_SAMPLE_REDUCTION},
        "match_maj_max_along_the_curve": None if cheapest is None else {
            "policy": cheapest.name, "accuracy": round(cheapest.accuracy, 5),
            "mean_samples": round(cheapest.mean_samples, 3),
            "sample_reduction": round(top.mean_samples / cheapest.mean_samples, 2),
            "verifier_calls": round(cheapest.mean_verifier_calls, 3),
            "note": "the cheapest cross-fitted curve point within the gap; its budget is "
                    "picked after seeing the results, so it shows what the policy family "
                    "reaches, not a pre-registered policy"},
        "fewer_samples_than_ac_at_equal_accuracy": {
            "ponder_samples": round(ponder.mean_samples, 3), "ac_samples": ac_need,
            "met": bool(row["fewer_samples_than_ac_at_equal_accuracy"])},
        "fewer_samples_than_ac_along_the_curve": {
            "rows": along, "ponder_fewer_at": verdicts["ponder"], "tie_at": verdicts["tie"],
            "ac_fewer_at": verdicts["baseline"], "ponder_never_reaches": verdicts["never"],
            "met": not verdicts["baseline"] and not verdicts["never"]},
        "margin_rule_fewer_samples_than_ac_along_the_curve": {
            "note": "the router's margin stopping rule alone: one vote tier up to all "
                    "samples, one sample at a time, leads 1-5, no difficulty prior and "
                    "no calibration, on the footing of Adaptive-Consistency's own rows",
            "rows": margin_along, "margin_fewer_at": margin_verdicts["ponder"],
            "tie_at": margin_verdicts["tie"], "ac_fewer_at": margin_verdicts["baseline"],
            "margin_never_reaches": margin_verdicts["never"],
            "met": not margin_verdicts["baseline"] and not margin_verdicts["never"]},
    }  # fmt: skip
    if suite.problems == 500 and suite.max_samples == 40:
        checks["replay_500x40x50_seconds"] = {"value": round(replay_seconds, 3),
                                              "met": replay_seconds < TARGET_REPLAY_SECONDS}
    ac_text = "AC never reaches it" if ac_need is None else f"AC needs {ac_need:.2f}"
    verifier = f" (+{ponder.mean_verifier_calls:.2f} verifier calls)" \
        if ponder.mean_verifier_calls else ""  # fmt: skip
    lines = [
        f"target: within {TARGET_GAP_POINTS} points of {top.name} with >= "
        f"{TARGET_SAMPLE_REDUCTION:g}x fewer samples: gap {gap:+.2f} "
        f"(paired se {row['gap_points_paired_se']:.2f}), {reduction:.1f}x{verifier} "
        f"[{'met' if checks['match_maj_max']['met'] else 'MISSED'}]",
    ]
    if cheapest is not None:
        extra = f", +{cheapest.mean_verifier_calls:.2f} verifier calls" \
            if cheapest.mean_verifier_calls else ""  # fmt: skip
        lines.append(f"  along the curve: cheapest point within {TARGET_GAP_POINTS} points: "
                     f"{cheapest.name} {100 * cheapest.accuracy:.2f}% with "
                     f"{cheapest.mean_samples:.2f} samples "
                     f"({top.mean_samples / cheapest.mean_samples:.1f}x{extra}; budget "
                     "picked after the fact)")
    lines.append(
        f"target: fewer samples than Adaptive-Consistency at equal accuracy: Ponder "
        f"calibrated {ponder.mean_samples:.2f}, {ac_text} "
        f"[{'met' if checks['fewer_samples_than_ac_at_equal_accuracy']['met'] else 'MISSED'}]")
    along_met = checks["fewer_samples_than_ac_along_the_curve"]["met"]
    lines.append("target: fewer samples than Adaptive-Consistency along the curve, at each "
                 f"AC threshold's accuracy [{'met' if along_met else 'MISSED'}]")
    lines.extend(_along_lines(along, "Ponder"))
    margin_met = checks["margin_rule_fewer_samples_than_ac_along_the_curve"]["met"]
    lines.append("the margin stopping rule alone (one vote tier, no calibration) against "
                 "Adaptive-Consistency along the curve "
                 f"[{'fewer everywhere' if margin_met else 'not everywhere fewer'}]")
    lines.extend(_along_lines(margin_along, "margin"))
    if "replay_500x40x50_seconds" in checks:
        c = checks["replay_500x40x50_seconds"]
        lines.append(f"target: replay 500x40x50 < {TARGET_REPLAY_SECONDS:g} s: "
                     f"{c['value']:.2f} s [{'met' if c['met'] else 'MISSED'}]")
    if suite.max_samples * 1.0 / TARGET_SAMPLE_REDUCTION < 2.0:
        cap = suite.max_samples / TARGET_SAMPLE_REDUCTION
        lines.append(f"note: with {suite.max_samples} samples a problem, "
                     f"{TARGET_SAMPLE_REDUCTION:g}x fewer means <= {cap:.1f} samples "
                     "on average, below the 2 any vote needs: only single samples, or "
                     "best-of-n stopped by its verifier, can get there")
    return {"checks": checks, "lines": lines}


def _verdicts(along: list[dict[str, Any]]) -> dict[str, list[str]]:
    """The AC points at which ``compare_along_curve``'s curve needs fewer samples, as many,
    more, or never gets there."""
    return {kind: [r["baseline"] for r in along if r["fewer"] == kind]
            for kind in ("ponder", "tie", "baseline", "never")}  # fmt: skip


def _along_lines(along: list[dict[str, Any]], who: str) -> list[str]:
    """One line per AC threshold: the samples ``who``'s curve needs at its accuracy."""
    lines = []
    for r in along:
        need = r["ponder_samples_at_equal_accuracy"]
        head = (f"  at {r['baseline']}'s accuracy {100 * r['accuracy']:.2f}%: AC "
                f"{r['baseline_samples']:.2f} samples, {who} ")
        same = r["ponder_accuracy_at_equal_samples"]
        dual = "" if same is None else (
            f"; with AC's samples {who} reaches {100 * same:.2f}% "
            f"({100 * (same - r['accuracy']):+.2f} points)")
        if need is None:
            t = r["ponder_top"]
            lines.append(head + f"never reaches it (tops at {100 * t['accuracy']:.2f}% with "
                         f"{t['mean_samples']:.2f}, {t['gap_points']:.2f} points below, "
                         f"paired se {t['gap_points_paired_se']:.2f}){dual} [AC better]")
        else:
            verdict = {"ponder": f"{who} fewer", "tie": "tie",
                       "baseline": "AC fewer"}[r["fewer"]]  # fmt: skip
            lines.append(head + f"{need:.2f}{dual} [{verdict}]")
    return lines


def cascade(folder: Path, orderings: int, seed: int) -> dict[str, Any]:
    """Small model with more samples vs escalating to the large one, per bin."""
    small, _ = load_source("standin-math500", folder, skill=SMALL_SKILL)
    large, _ = load_source("standin-math500", folder, skill=LARGE_SKILL)
    small = dataclasses.replace(small, name="standin-small")
    large = dataclasses.replace(large, name="standin-large")
    models = [ModelData("serving", small, SMALL_PRICE), ModelData("large", large, LARGE_PRICE)]
    config = CalibrationConfig(orderings=CALIBRATION_ORDERINGS, seed=seed, cost_unit="cost")
    table = build_table(models, config)
    fitted = cross_fit(table, config, name=f"cascade ({FOLDS}-fold)", folds=FOLDS,
                       orderings=orderings)  # fmt: skip
    rows = []
    for label, dataset, price in (("small", small, SMALL_PRICE), ("large", large, LARGE_PRICE)):
        suite = run_suite(dataset, config=SuiteConfig(orderings=orderings, seed=seed,
                                                      price_per_token=price),
                          include_default=False)  # fmt: skip
        for name in ("maj@1", "adaptive-consistency@0.95", f"maj@{suite.max_samples}"):
            r = suite.by_name(name)
            rows.append({"policy": f"{label} {name}", "accuracy": r.accuracy,
                         "mean_samples": r.mean_samples, "mean_cost": r.mean_cost})
    r = fitted.result
    rows.append({"policy": r.name, "accuracy": r.accuracy, "mean_samples": r.mean_samples,
                 "mean_cost": r.mean_cost})
    print(f"\n== cascade on the stand-in: small (skill {SMALL_SKILL:+g}, {SMALL_PRICE:g}/token) "
          f"vs large (skill {LARGE_SKILL:+g}, {LARGE_PRICE:g}/token) ==")
    print(f"{'policy':<36} {'acc %':>7} {'samples':>8} {'cost/request':>13}")
    for row in rows:
        print(f"{row['policy']:<36} {100 * row['accuracy']:7.2f} {row['mean_samples']:8.2f} "
              f"{row['mean_cost']:13.1f}")
    escalated = [[t.name for t in s.policy.tiers if t.escalate_to] for s in fitted.solutions]
    print(f"escalating tiers per fold: {escalated}")
    return {"rows": rows, "escalating_tiers_per_fold": escalated,
            "per_fold_policies": [s.policy.model_dump(by_alias=True, mode="json",
                                                      exclude_none=True)
                                  for s in fitted.solutions]}  # fmt: skip


def summary(documents: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """One row per set: maj@1, maj@N_max, the default policy against AC@0.95 (accuracy,
    samples, waves) and each signal's AUROC at the policy's first wave; the AUROC target."""
    rows = []
    for name, doc in documents.items():
        results = {r["name"]: r for r in doc["results"]}
        top = results[f"maj@{doc['max_samples']}"]
        auroc = doc["difficulty_signals"]["auroc"]
        rows.append({
            "set": name, "simulated": doc["simulated"], "problems": doc["problems"],
            "max_samples": doc["max_samples"],
            **{key: _point(results[policy]) for key, policy in (
                ("maj_1", "maj@1"), ("maj_max", top["name"]),
                ("ponder_default", "ponder-default"),
                ("ac_paper", "adaptive-consistency@0.95"), ("esc_paper", "esc@5"))},
            "auroc": {s: auroc[s][POLICY_WAVE] if s in auroc else None
                      for s in SUMMARY_SIGNALS},
            "combined_95_interval":
                doc["difficulty_signals"]["combined_auroc_95_interval"],
        })  # fmt: skip
    for row in rows:
        row["default_target"] = documents[row["set"]].get("default_target")
    reached = [r["set"] for r in rows if not r["simulated"]
               and (r["auroc"][COMBINED] or 0.0) >= TARGET_AUROC]  # fmt: skip
    return {"rows": rows, "combined_auroc_target": {
        "target": TARGET_AUROC, "real_sets_reaching_it": reached, "met": len(reached) >= 2}}


def _point(result: dict[str, Any]) -> dict[str, Any]:
    return {"accuracy": result["accuracy"], "mean_samples": result["mean_samples"],
            "mean_waves": result["mean_waves"]}  # fmt: skip


def print_summary(table: dict[str, Any]) -> None:
    short = {ROUTER_PRIOR: "prior", TRAFFIC_PRIOR: "text", LEARNED_PRIOR: "learn",
             "disagreement": "agree",
             "unconfidence": "conf", "length": "len", "low score": "score",
             COMBINED: "comb"}  # fmt: skip
    head = (f"{'set':<22} {'NxN':>8} {'maj@1':>6} {'maj@N':>6} {'default':>7} {'gap':>6} "
            f"{'smp':>6} {'wv':>5} {'AC.95':>6} {'smp':>6} {'wv':>5} "
            + " ".join(f"{short[s]:>5}" for s in SUMMARY_SIGNALS))  # fmt: skip
    print(f"\n== all sets side by side (accuracy %, mean samples, mean waves; AUROC for "
          f"'the first sample is wrong' at the default policy's first wave) ==\n{head}")
    for r in table["rows"]:
        d, ac = r["ponder_default"], r["ac_paper"]
        gap = 100 * (r["maj_max"]["accuracy"] - d["accuracy"])
        aurocs = " ".join(f"{'-' if v is None else f'{v:.2f}':>5}" for v in r["auroc"].values())
        if r["combined_95_interval"]:
            aurocs += " [{:.2f}-{:.2f}]".format(*r["combined_95_interval"])
        label = r["set"] + (" (sim)" if r["simulated"] else "")
        print(f"{label:<22} {r['problems']:>4}x{r['max_samples']:<3} "
              f"{100 * r['maj_1']['accuracy']:6.2f} {100 * r['maj_max']['accuracy']:6.2f} "
              f"{100 * d['accuracy']:7.2f} {gap:+6.2f} {d['mean_samples']:6.2f} "
              f"{d['mean_waves']:5.2f} {100 * ac['accuracy']:6.2f} {ac['mean_samples']:6.2f} "
              f"{ac['mean_waves']:5.2f} {aurocs}")
    for r in table["rows"]:
        t = r["default_target"]
        if t is None:
            continue
        base = "no baseline reaches its accuracy" if t["cheapest_baseline"] is None else \
            f"cheapest baseline there {t['cheapest_baseline']} {t['baseline_samples']:.2f}"
        met = t["within"] and t["fewer_samples"] and t["no_more_waves"]
        print(f"target (default): {r['set']}: gap {t['gap_points']:+.2f} (allowed "
              f"{t['tolerance_points']:.2f}), {t['default_samples']:.2f} samples in "
              f"{t['default_waves']:.2f} waves; {base} [{'met' if met else 'MISSED'}]")
    target = table["combined_auroc_target"]
    print(f"target: combined in-flight AUROC >= {target['target']:g} on at least two real "
          f"sets: {', '.join(target['real_sets_reaching_it']) or 'none'} "
          f"[{'met' if target['met'] else 'MISSED'}]")
    print("gap: maj@N_max minus the default policy, points; prior: the router's prompt "
          "estimator; text: hashed n-gram prior learned (cross-fitted) from the other "
          "problems' vote margins, no references; learn: the router's own prompt prior "
          "trained online on the other problems' replayed requests (where the checkout "
          "has it); agree/conf/len/score: the first wave's "
          "disagreement, unconfidence, length, low verifier score; comb: all of them, "
          "cross-fitted logistic model [its 95 % interval, problems resampled]")


def plot_signals(reports: dict[str, SignalReport], path: Path) -> bool:
    """AUROC by signal (bars) and set (groups); False without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, ax = plt.subplots(figsize=(11, 4.6))
    width = 0.8 / len(SUMMARY_SIGNALS)
    for j, signal in enumerate(SUMMARY_SIGNALS):
        values = [r.auroc.get(signal, {}).get(POLICY_WAVE) for r in reports.values()]
        xs = [i + j * width for i, v in enumerate(values) if v is not None]
        ax.bar(xs, [v for v in values if v is not None], width, label=signal)
    ax.axhline(0.5, color="grey", linewidth=0.8)
    ax.axhline(TARGET_AUROC, color="black", linestyle="--", linewidth=0.8)
    ax.set_xticks([i + 0.4 - width / 2 for i in range(len(reports))], list(reports),
                  fontsize=8)  # fmt: skip
    ax.set_ylim(0.3, 1.0)
    ax.set_ylabel("AUROC, first sample wrong (cross-fitted)")
    ax.legend(fontsize=7, ncol=len(SUMMARY_SIGNALS), loc="upper center",
              bbox_to_anchor=(0.5, -0.08))  # fmt: skip
    ax.set_title("Difficulty signals at the default policy's first wave", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orderings", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    parser.add_argument("--datasets", default=",".join(DATASETS))
    parser.add_argument("--calibrate", default="qwen25math-100x8",
                        help="sets to calibrate and cross-fit (slow; 'all' for every set)")
    parser.add_argument("--cascade", action="store_true",
                        help="also the two-model cascade on the stand-in (slow)")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    names = [n.strip() for n in args.datasets.split(",") if n.strip()]
    calibrated = set(names) if args.calibrate == "all" \
        else {n.strip() for n in args.calibrate.split(",") if n.strip()}  # fmt: skip
    report: dict[str, Any] = {
        "settings": {"orderings": args.orderings, "seed": args.seed, "folds": FOLDS,
                     "calibration_orderings": CALIBRATION_ORDERINGS,
                     "budget_sweep_samples": list(BUDGET_SWEEP),
                     "calibrated_sets": sorted(calibrated & set(names)),
                     "signal_orderings": SIGNAL_ORDERINGS},
        "targets": {"gap_points": TARGET_GAP_POINTS,
                    "sample_reduction": TARGET_SAMPLE_REDUCTION,
                    "replay_seconds_500x40x50": TARGET_REPLAY_SECONDS,
                    "combined_auroc": TARGET_AUROC},
        "datasets": {},
    }  # fmt: skip
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="ponder-bench-") as tmp:
        for name in names:
            report["datasets"][name] = evaluate_dataset(name, Path(tmp), args.orderings,
                                                        args.seed, args.out,
                                                        name in calibrated)  # fmt: skip
        if args.cascade:
            report["cascade"] = cascade(Path(tmp), args.orderings, args.seed)
    report["summary"] = summary(report["datasets"])
    print_summary(report["summary"])
    report["elapsed_seconds"] = round(time.perf_counter() - started, 1)
    (args.out / "evaluate.json").write_text(json.dumps(report, indent=2) + "\n")
    plot_signals({n: _report_of(d) for n, d in report["datasets"].items()},
                 args.out / "evaluate_signals.png")  # fmt: skip
    print(f"\nwrote {args.out / 'evaluate.json'}, evaluate_<dataset>.png and "
          f"evaluate_signals.png in {report['elapsed_seconds']:.0f} s")
    return 0


def _report_of(document: dict[str, Any]) -> SignalReport:
    """Enough of a ``SignalReport`` to plot, from its JSON form."""
    signals = document["difficulty_signals"]
    return SignalReport(dataset=signals["dataset"], problems=signals["problems"],
                        rows=signals["rows"], first_wrong_share=signals["first_wrong_share"],
                        waves=tuple(signals["first_waves"]), auroc=signals["auroc"],
                        next_sample=signals["auroc_next_sample"],
                        next_sample_rows=signals["next_sample_rows"],
                        combined_inputs=tuple(signals["combined_inputs"]))  # fmt: skip


if __name__ == "__main__":
    raise SystemExit(main())

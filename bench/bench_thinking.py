"""Thinking budgets benchmark: answer at the cap, stop when the answer has settled.

On the Gemma-4-12B thinking traces (150 MMLU-Pro and GPQA-Diamond questions x 10 traces,
each probed for its answer at every tenth of its tokens; read in place from
``$PONDER_DATA_DIR``), side by side, per trace (``ponder_tools.evaluation.thinking``):

- the full traces (no cap);
- a hard token cap at 25/50/75 % of the mean trace length and at the median length, a
  longer trace cut off and abstaining (``max_tokens`` without forcing);
- the same caps with budget forcing (the answer at the cap, cap + 32 answer tokens);
- forcing at 25/50/75 % of each trace's own length (an oracle: the issue's yardstick);
- probe exits, agreeing k = 2, 3, 4 times at the data's probe points (8 tokens a probe),
  without and with a confidence floor (0.8, 0.9) on each agreeing probe (as ``ProbeConfig``);
- the thinking budget ``ponder calibrate`` picks (smallest cap with forcing within half
  a point of the full traces) and the probe setting it picks (fewest tokens within half a
  point), each chosen on one half of the questions and scored on the other (2-fold
  cross-fitting: the fixed settings above are chosen in-sample by whoever reads the table);

Beside them, Dynasor-style certaindex as far as the data allow (an APPROXIMATION, labelled
so wherever it is printed). Dynasor (hao-ai-lab/Dynasor at 0d2f1b9) probes every 32 or 64
tokens and exits once its last k probed answers are equal, non-empty and free of hedging
words: ``dynasor/core/cot.py`` ``effort_level`` gives (k, interval) = mild (8, 64), low
(5, 64), mid (3, 64; ``dynasor-chat``'s default), high (2, 64), crazy (2, 32), and
``dynasor/cli/openai_server.py``'s ``--dynasor-saving-effort`` defaults to (2, 32), as
``vllm_server.py``'s ``certainty_window``/``token_interval`` do. (Its servers' check,
``dynasor/core/entropy.py`` ``should_early_exit``, ends in ``return True`` after the
agreement test, so as served it exits once k probes exist and the latest has no hedging
word, agreeing or not; the replay follows the rule as ``cot.py`` applies it.) The data
hold one probe point per tenth of a trace and no probe texts, so the closest replay probes
every 10 % of the trace and exits when the last k probed answers agree; the hedging-word
check cannot be replayed (without confidence), or is stood in for by the answer's
probability at each agreeing probe (with confidence). Each published setting is reported
twice: with the tenth-point probes' cost, and with the cost of probing at its own interval
up to that exit (exit tokens // interval probes). And the whole curve: agreement k = 1..9
(every count the 9 probe points allow) without and with a confidence floor.

And the router's default policy replayed over the 10 traces a question (``ponder
evaluate``), forcing off versus on. Accuracy is per trace (each question weighs the
same), with the majority vote over a question's 10 traces beside it; tokens are thinking
tokens per trace, probes included. Questions were chosen in three equal cohorts, so
overthinking is over-represented (``trajectories.GEMMA_CAVEAT``; printed with every
table).

Prints the table and a verdict on the issue's targets, writes
``bench/results/thinking.json`` and ``bench/results/thinking.png``.

    .venv/bin/python bench/bench_thinking.py [--out bench/results]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from ponder_router.forcing import ForcingConfig
from ponder_tools.evaluation.dataset import parse_lines
from ponder_tools.evaluation.suite import SuiteConfig, run_suite
from ponder_tools.evaluation.thinking import (
    SampleRun,
    ThinkingResult,
    ThinkingSample,
    choose_cap,
    choose_probe,
    from_trace,
    run_cap,
    run_fraction,
    run_full,
    run_probe_exit,
    summarise,
)
from ponder_tools.evaluation.trajectories import (
    GEMMA_CAVEAT,
    convert_gemma_thinking,
    load_gemma_traces,
)

Rule = Callable[[ThinkingSample], Any]
SHARES = (0.25, 0.5, 0.75)
AGREE = (2, 3, 4)
FLOORS = (0.0, 0.8, 0.9)
PROBE_TOKENS = 8
TOLERANCE = 0.005
DYNASOR_SETTINGS = (("mild", 8, 64), ("low", 5, 64), ("mid", 3, 64), ("high", 2, 64),
                    ("crazy / server default", 2, 32))  # fmt: skip
"""Dynasor's published (name, agreement k, probe interval tokens): hao-ai-lab/Dynasor at
0d2f1b9, ``dynasor/core/cot.py`` ``effort_level`` and ``dynasor/cli/openai_server.py``'s
``--dynasor-saving-effort`` default ``2,32``."""
CURVE_AGREE = tuple(range(1, 10))
"""Every agreement count the data's 9 probe points (10 % .. 90 % of a trace) allow."""
CURVE_FLOORS = (0.0, 0.5, 0.8, 0.9)
DYNASOR_FLOOR = 0.8
"""The confidence floor that stands in for Dynasor's hedging-word check (not replayable)."""


def rules_for(samples: list[ThinkingSample]) -> tuple[dict[str, Rule], dict[str, dict[str, Any]]]:
    """Every rule of the module docstring, by name, with its parameters."""
    mean = float(np.mean([s.tokens for s in samples]))
    median = float(np.median([s.tokens for s in samples]))
    rules: dict[str, Rule] = {"full traces": run_full}
    params: dict[str, dict[str, Any]] = {"full traces": {"family": "full"}}
    caps = [(f"{int(share * 100)}% of mean", share * mean) for share in SHARES]
    for label, cap in [*caps, ("median", median)]:
        for forcing in (False, True):
            name = f"cap {label} ({round(cap)}), {'forced' if forcing else 'truncated'}"
            rules[name] = lambda s, c=cap, f=forcing: run_cap(s, c, forcing=f)
            params[name] = {"family": "forced" if forcing else "truncated",
                            "cap_tokens": round(cap), "label": label}  # fmt: skip
    for share in SHARES:
        name = f"{int(share * 100)}% of each trace, forced (oracle)"
        rules[name] = lambda s, f=share: run_fraction(s, f)
        params[name] = {"family": "oracle", "share": share}
    for floor in FLOORS:
        for agree in AGREE:
            name = f"probe exit, agree {agree}" + (f", conf >= {floor:g}" if floor else "")
            rules[name] = lambda s, k=agree, c=floor: run_probe_exit(
                s, k, confidence_floor=c, probe_tokens=PROBE_TOKENS)
            params[name] = {"family": "probe", "agree": agree, "confidence_floor": floor,
                            "probe_tokens": PROBE_TOKENS}  # fmt: skip
    return rules, params


def calibrated_rule(samples: list[ThinkingSample]) -> tuple[Rule, list[int]]:
    """The thinking cap chosen on one half of the questions, applied to the other."""
    fold = {s.question_id: int(hashlib.sha256(s.question_id.encode()).hexdigest(), 16) % 2
            for s in samples}  # fmt: skip
    caps = [choose_cap([s for s in samples if fold[s.question_id] != f],
                       tolerance=TOLERANCE).cap_tokens for f in (0, 1)]  # fmt: skip
    return (lambda s: run_cap(s, caps[fold[s.question_id]], forcing=True)), caps


def calibrated_probe(samples: list[ThinkingSample]) -> tuple[Rule, list[dict[str, object]]]:
    """The probe setting (agreement, confidence floor) chosen on one half of the questions
    (``thinking.choose_probe``), applied to the other."""
    fold = {s.question_id: int(hashlib.sha256(s.question_id.encode()).hexdigest(), 16) % 2
            for s in samples}  # fmt: skip
    chosen = [choose_probe([s for s in samples if fold[s.question_id] != f], tolerance=TOLERANCE,
                           probe_tokens=PROBE_TOKENS) for f in (0, 1)]  # fmt: skip

    def rule(s: ThinkingSample) -> Any:
        c = chosen[fold[s.question_id]]
        return run_probe_exit(s, c.agreement, confidence_floor=c.confidence_floor,
                              probe_tokens=PROBE_TOKENS)  # fmt: skip

    return rule, [{"agreement": c.agreement, "confidence_floor": c.confidence_floor}
                  for c in chosen]  # fmt: skip


def at_interval(rule: Rule, interval_tokens: int) -> Rule:
    """``rule``'s exit, with its probes charged as if sent every ``interval_tokens`` up to
    that exit (a sample that never settles is probed to its end)."""

    def charged(sample: ThinkingSample) -> SampleRun:
        run = rule(sample)
        probes = int(run.thinking_tokens // interval_tokens)
        return SampleRun(run.answer, run.thinking_tokens, probes * PROBE_TOKENS)

    return charged


def certaindex_rules() -> tuple[dict[str, Rule], dict[str, dict[str, Any]]]:
    """Dynasor-style certaindex, approximated at the data's tenth-point probes (module
    docstring): its published settings, then the whole curve of agreement counts."""
    rules: dict[str, Rule] = {}
    params: dict[str, dict[str, Any]] = {}
    for floor in (0.0, DYNASOR_FLOOR):
        for level, agree, interval in DYNASOR_SETTINGS:
            exit_rule = partial(run_probe_exit, agree=agree, confidence_floor=floor,
                                probe_tokens=PROBE_TOKENS)  # fmt: skip
            conf = f", conf >= {floor:g}" if floor else ""
            for cost in ("tenths", "interval"):
                name = (f"~Dynasor {level} (k={agree}, every {interval} tok){conf}, "
                        f"probes {'at tenths' if cost == 'tenths' else 'charged at interval'}")
                rules[name] = exit_rule if cost == "tenths" else at_interval(exit_rule, interval)
                params[name] = {"family": "dynasor", "level": level, "agree": agree,
                                "interval_tokens": interval, "confidence_floor": floor,
                                "probe_cost": cost, "probe_tokens": PROBE_TOKENS,
                                "approximation": "probes at each 10 % of the trace"}  # fmt: skip
    for floor in CURVE_FLOORS:
        for agree in CURVE_AGREE:
            name = f"~certaindex curve, agree {agree}" + (f", conf >= {floor:g}" if floor else "")
            rules[name] = partial(run_probe_exit, agree=agree, confidence_floor=floor,
                                  probe_tokens=PROBE_TOKENS)  # fmt: skip
            params[name] = {"family": "certaindex", "agree": agree, "confidence_floor": floor,
                            "probe_tokens": PROBE_TOKENS,
                            "approximation": "probes at each 10 % of the trace"}  # fmt: skip
    return rules, params


def ponder_default(forcing: bool) -> dict[str, Any]:
    """The router's default policy over the 10 traces a question (``ponder evaluate``)."""
    dataset = parse_lines([json.dumps(r) for r in convert_gemma_thinking()], mode="text",
                          name="gemma4-12b-thinking")  # fmt: skip
    config = SuiteConfig(orderings=20, forcing=ForcingConfig(enabled=forcing), audit_checks=0,
                         ac_thresholds=(), esc_windows=(), margins=())  # fmt: skip
    suite = run_suite(dataset, config=config)
    result, maj = suite.by_name("ponder-default"), suite.by_name(f"maj@{suite.max_samples}")
    return {"forcing": forcing, "accuracy": round(result.accuracy, 5),
            "mean_samples": round(result.mean_samples, 3),
            "mean_tokens": round(result.mean_tokens or 0.0, 1),
            "maj_all_accuracy": round(maj.accuracy, 5)}  # fmt: skip


def verdict(results: list[ThinkingResult]) -> list[str]:
    by = {r.name: r for r in results}
    full = by["full traces"]
    lines = []

    forced = [r for r in results if r.params.get("family") in ("forced", "oracle")
              and r.params.get("label") != "median"]  # fmt: skip
    probes = [r for r in results if r.params.get("family") == "probe"]
    for how, reaches in (
            ("within 0.5 points or one paired SE",
             lambda r: r.delta >= -max(0.005, r.paired_se)),
            ("within 0.5 points", lambda r: r.delta >= -0.005)):  # fmt: skip
        good = sorted((r for r in probes if reaches(r)), key=lambda r: r.mean_tokens)
        if not good:
            lines.append(f"[MISS] no probe-exit setting reaches the full traces' accuracy {how}")
            continue
        best = good[0]
        cheaper = all(best.mean_tokens < r.mean_tokens for r in forced if reaches(r))
        lines.append(f"[{'PASS' if cheaper and best.saved >= 0.5 else 'MISS'}] cheapest probe "
                     f"exit reaching the full traces' accuracy ({how}): {best.name}, "
                     f"{best.delta * 100:+.2f} ± {best.paired_se * 100:.2f} points, "
                     f"{best.saved:.0%} fewer tokens (target >= 50%); fewer than every forced "
                     f"cap (25/50/75 % of the mean or of each trace) that reaches it: "
                     f"{cheaper}")  # fmt: skip
    median = [r for r in results if r.params.get("label") == "median"]
    cut = next(r for r in median if r.params["family"] == "truncated")
    kept = next(r for r in median if r.params["family"] == "forced")
    recovered = (kept.accuracy - cut.accuracy) / (full.accuracy - cut.accuracy)
    lines.append(f"[{'PASS' if recovered >= 0.8 else 'MISS'}] forcing at the median length "
                 f"(cuts half the traces) recovers {recovered:.0%} of the accuracy truncation "
                 f"loses (target >= 80%): {cut.accuracy:.1%} -> {kept.accuracy:.1%} "
                 f"(full {full.accuracy:.1%})")  # fmt: skip
    return lines


def plot(results: list[ThinkingResult], path: Path,
         certaindex: Sequence[ThinkingResult] = ()) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, ax = plt.subplots(figsize=(8, 5))
    styles = {"full": ("k*", "full traces"), "truncated": ("rx", "hard cap (abstains)"),
              "forced": ("bo", "cap with forcing"), "oracle": ("c^", "share of trace (oracle)"),
              "probe": ("gs", "probe exit"), "calibrated": ("mD", "calibrated cap"),
              "calibrated-probe": ("yP", "probe exit, calibrated")}  # fmt: skip
    for family, (style, label) in styles.items():
        points = [r for r in results if r.params.get("family") == family]
        if points:
            ax.plot([r.mean_tokens for r in points], [r.accuracy * 100 for r in points], style,
                    label=label)  # fmt: skip
    for floor, color in zip(CURVE_FLOORS, ("0.2", "0.4", "0.6", "0.8"), strict=True):
        curve = [r for r in certaindex if r.params.get("family") == "certaindex"
                 and r.params["confidence_floor"] == floor]  # fmt: skip
        label = "~certaindex k=1..9" + (f", conf >= {floor:g}" if floor else "")
        ax.plot([r.mean_tokens for r in curve], [r.accuracy * 100 for r in curve], "-",
                color=color, lw=0.8, label=label)  # fmt: skip
    dynasor = [r for r in certaindex if r.params.get("probe_cost") == "interval"]
    if dynasor:
        ax.plot([r.mean_tokens for r in dynasor], [r.accuracy * 100 for r in dynasor], "kv",
                mfc="none", label="~Dynasor settings, probes at their interval")  # fmt: skip
    ax.set_xlabel("thinking tokens per trace (probes included)")
    ax.set_ylabel("accuracy per trace (%)")
    ax.set_title("Gemma-4-12B traces; cohorts over-represent overthinking", fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    started = time.perf_counter()
    samples = [from_trace(t) for t in load_gemma_traces()]
    rules, params = rules_for(samples)
    calibrated, caps = calibrated_rule(samples)
    rules["calibrated cap, forced (2-fold)"] = calibrated
    params["calibrated cap, forced (2-fold)"] = {"family": "calibrated", "fold_caps": caps,
                                                 "tolerance": TOLERANCE}  # fmt: skip
    probe, settings = calibrated_probe(samples)
    rules["probe exit, calibrated (2-fold)"] = probe
    params["probe exit, calibrated (2-fold)"] = {"family": "calibrated-probe",
                                                 "fold_settings": settings}  # fmt: skip
    results = summarise(samples, rules, params)
    print(f"Note: {GEMMA_CAVEAT}.")
    print(f"{len(samples)} traces, mean {np.mean([s.tokens for s in samples]):.0f} tokens\n")
    print(f"{'rule':52s} {'acc %':>6s} {'vote %':>6s} {'tokens':>7s} {'saved':>6s} "
          f"{'delta':>6s} {'± se':>5s}")  # fmt: skip
    for r in results:
        print(f"{r.name:52s} {r.accuracy * 100:6.2f} {r.vote_accuracy * 100:6.2f} "
              f"{r.mean_tokens:7.0f} {r.saved:6.1%} {r.delta * 100:+6.2f} "
              f"{r.paired_se * 100:5.2f}")  # fmt: skip
    crules, cparams = certaindex_rules()
    certaindex = summarise(samples, crules, cparams)
    print(f"\nDynasor-style certaindex, APPROXIMATED (probes at each 10 % of a trace, not every "
          f"32/64 tokens; no hedging-word check: 'conf' stands in for it), {PROBE_TOKENS} "
          f"tokens a probe:")  # fmt: skip
    for r in certaindex:
        print(f"{r.name:80s} {r.accuracy * 100:6.2f} {r.vote_accuracy * 100:6.2f} "
              f"{r.mean_tokens:7.0f} {r.saved:6.1%} {r.delta * 100:+6.2f} "
              f"{r.paired_se * 100:5.2f}")  # fmt: skip
    policy = [ponder_default(False), ponder_default(True)]
    print("\nponder-default over 10 traces a question (ponder evaluate, 20 orders):")
    for row in policy:
        print(f"  forcing {'on ' if row['forcing'] else 'off'}: {row['accuracy']:.1%} with "
              f"{row['mean_samples']:.2f} samples, {row['mean_tokens']:.0f} tokens "
              f"(maj@10 {row['maj_all_accuracy']:.1%})")  # fmt: skip
    checks = verdict(results)
    print("\n" + "\n".join(checks))
    print(f"(Note: {GEMMA_CAVEAT}.)")
    elapsed = time.perf_counter() - started
    print(f"\n{elapsed:.1f} s")
    document = {"caveat": GEMMA_CAVEAT, "traces": len(samples),
                "results": [r.as_dict() for r in results],
                "certaindex_approximation": {
                    "source": "hao-ai-lab/Dynasor@0d2f1b9 dynasor/core/cot.py effort_level, "
                              "dynasor/cli/openai_server.py --dynasor-saving-effort 2,32",
                    "replay": "probes at each 10 % of the trace; no hedging-word check "
                              "(confidence floor stands in)",
                    "results": [r.as_dict() for r in certaindex]},
                "ponder_default": policy,
                "verdict": checks, "elapsed_seconds": round(elapsed, 2)}  # fmt: skip
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "thinking.json").write_text(json.dumps(document, indent=2) + "\n")
    wrote = plot(results, args.out / "thinking.png", certaindex)
    print(f"wrote {args.out / 'thinking.json'}" + (" and thinking.png" if wrote else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

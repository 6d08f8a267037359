"""Later-wave sizing: the default policy's samples against its waves, method by method.

For every set ``bench_evaluate.py`` reads (the real per-sample sets and the stand-in), it
replays the router's default budget policy in 50 random sample orders under each
``stopping.laterWaves`` method (``ponder_router.waves``: minimal, first-wave, doubling,
lookahead) through the router's own ``plan_next_wave`` and ``should_stop``
(``ponder_tools.evaluation``), and prints, per method, accuracy, mean samples, tokens and
waves (sequential rounds of launches, the latency cost) with issue 17's verdict for the
default (``bench_evaluate.default_target``: within 0.5 points of maj@N_max, fewer mean
samples than the cheapest of Adaptive-Consistency, ESC and the margin rule at its
accuracy, no more mean waves than they need).

In a replay every finished sample is checked by the stop rule as it finishes, in the
same order whatever the wave sizes, so the method changes the samples launched (those
still running at the stop are cancelled, and charged) and the rounds, never the answer.

Writes ``bench/results/waves.json``.

    PYTHONPATH=operator:router:tools:localstack .venv/bin/python bench/bench_waves.py \\
        [--orderings 50] [--datasets llama2-13b-gsm8k-pot,...]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from bench_evaluate import DATASETS, default_target, load_source
from ponder_router.aggregate import StopRule
from ponder_router.budgets import default_policy
from ponder_router.waves import WaveSizing
from ponder_tools.evaluation.replay import DecisionCache, build_replay_set
from ponder_tools.evaluation.suite import NamedPolicy, SuiteConfig, replay_ponder, run_suite


def compare_methods(name: str, folder: Path, orderings: int, seed: int) -> dict[str, Any]:
    """The default policy under every sizing method on one set, beside the baselines."""
    dataset, _ = load_source(name, folder)
    config = SuiteConfig(orderings=orderings, seed=seed)
    suite = run_suite(dataset, config=config)
    replay_set = build_replay_set(dataset, orderings=orderings, seed=seed)
    rows: dict[str, Any] = {}
    for sizing in WaveSizing:
        method = dataclasses.replace(config, stop_rule=StopRule(later_waves=sizing))
        result = replay_ponder(dataset, replay_set, NamedPolicy("ponder-default",
                                                                default_policy()),
                               method, cache=DecisionCache())  # fmt: skip
        suite.results = [r for r in suite.results if r.name != "ponder-default"] + [result]
        rows[sizing.value] = {"accuracy": round(result.accuracy, 5),
                              "mean_samples": round(result.mean_samples, 3),
                              "mean_tokens": None if result.mean_tokens is None
                              else round(result.mean_tokens, 1),
                              "mean_waves": round(result.mean_waves or 0.0, 3),
                              "target": default_target(suite)}  # fmt: skip
    return {"problems": suite.problems, "max_samples": suite.max_samples, "methods": rows}


def print_set(name: str, document: dict[str, Any]) -> None:
    print(f"\n== {name}: {document['problems']} problems, up to {document['max_samples']} "
          "samples ==")
    print(f"{'laterWaves':12} {'acc %':>7} {'samples':>8} {'waves':>7} {'tokens':>9}  verdict")
    for method, row in document["methods"].items():
        target = row["target"]
        tokens = "-" if row["mean_tokens"] is None else f"{row['mean_tokens']:.0f}"
        baseline = ("no baseline reaches it" if target["cheapest_baseline"] is None
                    else f"{target['cheapest_baseline']} needs {target['baseline_samples']:.2f}")
        verdict = "met" if target["within"] and target["fewer_samples"] \
            and target["no_more_waves"] else "MISSED"  # fmt: skip
        print(f"{method:12} {100 * row['accuracy']:7.2f} {row['mean_samples']:8.2f} "
              f"{row['mean_waves']:7.2f} {tokens:>9}  gap {target['gap_points']:+.2f} "
              f"(allowed {target['tolerance_points']:.2f}); {baseline} [{verdict}]")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orderings", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    parser.add_argument("--datasets", default=",".join(DATASETS))
    args = parser.parse_args()
    started = time.perf_counter()
    report: dict[str, Any] = {"settings": {"orderings": args.orderings, "seed": args.seed,
                                           "default": StopRule().later_waves.value},
                              "datasets": {}}  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="ponder-waves-") as tmp:
        for name in (n.strip() for n in args.datasets.split(",") if n.strip()):
            report["datasets"][name] = compare_methods(name, Path(tmp), args.orderings,
                                                       args.seed)  # fmt: skip
            print_set(name, report["datasets"][name])
    report["elapsed_seconds"] = round(time.perf_counter() - started, 1)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "waves.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwrote {args.out / 'waves.json'} in {report['elapsed_seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

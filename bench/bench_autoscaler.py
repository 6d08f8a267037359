"""Autoscaler benchmark: Ponder vs HPA vs KEDA on real request traces.

Replays each public trace (Azure 2023 conversation and code, Mooncake conversation; read
in place from ``$PONDER_DATA_DIR``, default ``shared/data`` beside the checkout) through the
simulator in
``ponder_tools.sim`` with every policy on the same per-replica capacity target, prints
one table per trace and a verdict on the targets, and writes
``bench/results/autoscaler.json`` and ``bench/results/autoscaler_<scenario>.png``.

The extra scenario ``azure-conv-mixshift`` keeps the Azure conversation arrivals but
alternates easy and hard problems every 10 minutes (synthetic; reported separately).

    .venv/bin/python bench/bench_autoscaler.py [--startup-seconds 60] [--out bench/results]
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from ponder_tools.sim import (
    PolicySummary,
    ReplicaModel,
    SimConfig,
    build_workload,
    format_table,
    gpu_hourly_price,
    load_problems,
    load_trace,
    plot_timelines,
    run_comparison,
)
from ponder_tools.sim.cli import comparison_document

SCENARIOS: tuple[tuple[str, str, float | None], ...] = (
    # (scenario, trace, mix shift period in seconds)
    ("azure-conv", "azure-conv", None),
    ("azure-code", "azure-code", None),
    ("mooncake", "mooncake", None),
    ("azure-conv-mixshift", "azure-conv", 600.0),
)
TARGET_SLO = 0.99
TARGET_ORACLE_RATIO = 1.25
TARGET_SAVING_VS_PEERS = 0.25
TARGET_REPLAY_SECONDS = 10.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--startup-seconds", type=float, default=60.0)
    parser.add_argument("--slo-wait-seconds", type=float, default=2.0)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--scenarios", default=",".join(s for s, _, _ in SCENARIOS))
    args = parser.parse_args()
    wanted = {name.strip() for name in args.scenarios.split(",")}

    price = gpu_hourly_price("H100")
    problems = load_problems()
    config = SimConfig(
        replica=replace(ReplicaModel(), startup_seconds=args.startup_seconds),
        slo_queue_wait_seconds=args.slo_wait_seconds,
    )
    args.out.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {
        "settings": {
            "startup_seconds": args.startup_seconds,
            "slo_queue_wait_seconds": args.slo_wait_seconds,
            "seed": args.seed,
            "replica_model": vars(config.replica),
            "gpu_capacity": config.gpu_capacity,
            "gpu_hourly_price_usd": price,
            "price_source": "prices/gpu_price_summary.csv: median H100 ondemand_per_gpu_median",
        },
        "targets": {
            "slo_attainment": TARGET_SLO,
            "oracle_ratio": TARGET_ORACLE_RATIO,
            "gpu_hours_saving_vs_hpa_and_keda": TARGET_SAVING_VS_PEERS,
            "replay_seconds_all_policies": TARGET_REPLAY_SECONDS,
        },
        "scenarios": {},
    }
    for scenario, trace_name, shift in SCENARIOS:
        if scenario not in wanted:
            continue
        started = time.perf_counter()
        trace = load_trace(trace_name)
        workload = build_workload(trace, problems, seed=args.seed, mix_shift_seconds=shift)
        comparison = run_comparison(workload, config, gpu_hourly_price=price)
        replay_seconds = time.perf_counter() - started
        print(f"\n== {scenario}: {trace.requests} requests over {trace.duration_seconds:.0f}s, "
              f"start-up {args.startup_seconds:.0f}s, SLO queue wait <= "
              f"{args.slo_wait_seconds:g}s, H100 ${price:.2f}/GPU-h ==")
        print(format_table(comparison.summaries, comparison.oracle, price))
        verdicts = judge(comparison.summaries, comparison.oracle.gpu_hours, replay_seconds)
        for line in verdicts["lines"]:
            print(line)
        document = comparison_document(comparison, price, settings={"trace": trace_name,
                                                                     "mix_shift_seconds": shift})
        document["replay_seconds_all_policies"] = replay_seconds
        document["verdict"] = verdicts["checks"]
        report["scenarios"][scenario] = document
        plot_timelines(comparison.results, comparison.oracle,
                       args.out / f"autoscaler_{scenario}.png",
                       f"{scenario}: start-up {args.startup_seconds:.0f}s")
    (args.out / "autoscaler.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwrote {args.out / 'autoscaler.json'} and autoscaler_<scenario>.png")
    return 0


def judge(
    summaries: tuple[PolicySummary, ...], oracle_gpu_hours: float, replay_seconds: float
) -> dict[str, Any]:
    """Ponder against the targets: each check with its numbers, met or not.

    Beside each saving against a peer stands the most any scaler could save against it:
    down to the oracle's GPU-hours (clairvoyant, zero start-up). When that is below the
    target saving, the target cannot be met on this trace by any policy.
    """
    by_name = {s.policy: s for s in summaries}
    ponder = by_name["ponder"]
    checks: dict[str, Any] = {
        "slo": {"value": ponder.slo_attainment, "met": ponder.slo_attainment >= TARGET_SLO},
        "oracle_ratio": {"value": ponder.oracle_ratio,
                         "met": ponder.oracle_ratio <= TARGET_ORACLE_RATIO},
        "replay_seconds": {"value": replay_seconds,
                           "met": replay_seconds < TARGET_REPLAY_SECONDS},
    }
    for peer in ("hpa", "keda"):
        other = by_name[peer]
        saving = 1.0 - ponder.gpu_hours / other.gpu_hours if other.gpu_hours else 0.0
        checks[f"vs_{peer}"] = {
            "gpu_hours_saving": saving,
            "oracle_saving": (1.0 - oracle_gpu_hours / other.gpu_hours
                              if other.gpu_hours else 0.0),
            "slo_delta": ponder.slo_attainment - other.slo_attainment,
            "met": saving >= TARGET_SAVING_VS_PEERS
                   and ponder.slo_attainment >= other.slo_attainment,
        }
    lines = [
        f"target SLO >= {TARGET_SLO:.0%}: {ponder.slo_attainment:.2%} "
        f"[{'met' if checks['slo']['met'] else 'MISSED'}]",
        f"target GPU-h <= {TARGET_ORACLE_RATIO:.2f}x oracle: {ponder.oracle_ratio:.2f}x "
        f"[{'met' if checks['oracle_ratio']['met'] else 'MISSED'}]",
    ]
    for peer in ("hpa", "keda"):
        check = checks[f"vs_{peer}"]
        lines.append(
            f"target >= {TARGET_SAVING_VS_PEERS:.0%} fewer GPU-h than {peer} at >= SLO: "
            f"{check['gpu_hours_saving']:+.1%} GPU-h saved, SLO {check['slo_delta']:+.2%} "
            f"[{'met' if check['met'] else 'MISSED'}] (the oracle would save "
            f"{check['oracle_saving']:+.1%})")
    replay_met = "met" if checks["replay_seconds"]["met"] else "MISSED"
    lines.append(f"target replay < {TARGET_REPLAY_SECONDS:.0f}s for all policies: "
                 f"{replay_seconds:.2f}s [{replay_met}]")
    return {"checks": checks, "lines": lines}


if __name__ == "__main__":
    raise SystemExit(main())

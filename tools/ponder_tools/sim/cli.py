"""``ponder simulate``: replay a public trace against every autoscaler and compare.

Role: the command-line face of ``compare``; ``ponder_tools.cli`` registers it through
``add_simulate_parser``. Prints the comparison table; with ``--out`` also writes
``simulate_<trace>.json`` and ``simulate_<trace>.png`` there.

    ponder simulate --trace azure-conv --startup-seconds 60 --out DIR
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from ponder_tools.data import shared_data_dir

from .compare import POLICY_NAMES, Comparison, run_comparison
from .engine import ReplicaModel, SimConfig
from .errors import SimulationError
from .report import format_table, gpu_hourly_price, plot_timelines
from .traces import TRACE_FILES, load_trace
from .workload import build_workload, load_problems


def add_simulate_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``simulate`` on the ``ponder`` command's ``subparsers``."""
    parser = subparsers.add_parser(
        "simulate",
        help="replay a request trace against Ponder's autoscaler, HPA and KEDA",
        description="Replay a public LLM request trace, each request budgeted by the "
                    "router's policy, against Ponder's autoscaler, its request-count variant, "
                    "HPA and KEDA; report SLO attainment, latency, GPU-hours and cost "
                    "against a clairvoyant oracle.",
    )
    parser.add_argument("--trace", choices=sorted(TRACE_FILES), default="azure-conv",
                        help="which trace to replay (default: azure-conv)")
    parser.add_argument("--startup-seconds", type=float, default=60.0,
                        help="seconds from scheduling a replica to it serving (default: 60)")
    parser.add_argument("--out", type=Path, default=None,
                        help="folder for the JSON results and the PNG plot")
    parser.add_argument("--policies", default=",".join(POLICY_NAMES),
                        help=f"comma-separated subset of {','.join(POLICY_NAMES)}")
    parser.add_argument("--slo-wait-seconds", type=float, default=2.0,
                        help="queue-wait target a request must meet (default: 2)")
    parser.add_argument("--gpu-capacity", type=int, default=64,
                        help="GPUs the cluster can give the pool (default: 64)")
    parser.add_argument("--max-replicas", type=int, default=64,
                        help="max replicas for every policy (default: 64)")
    parser.add_argument("--utilization", type=float, default=0.75,
                        help="target share of a replica's sequence slots (default: 0.75)")
    parser.add_argument("--duration-seconds", type=float, default=None,
                        help="replay only the first this many seconds of the trace")
    parser.add_argument("--mix-shift-seconds", type=float, default=None,
                        help="alternate easy and hard problems in periods of this length")
    parser.add_argument("--seed", type=int, default=0, help="problem-assignment seed")
    parser.add_argument("--accelerator", default="H100",
                        help="GPU whose median on-demand price costs the runs (default: H100)")
    parser.set_defaults(run=run_simulate)


def run_simulate(args: argparse.Namespace) -> int:
    """Run the comparison ``args`` describe; 0 on success, 2 on bad input."""
    try:
        names = [name.strip() for name in args.policies.split(",") if name.strip()]
        unknown = sorted(set(names) - set(POLICY_NAMES))
        if unknown or not names:
            raise SimulationError(f"--policies: unknown {unknown}; known: {POLICY_NAMES}")
        started = time.perf_counter()
        trace = load_trace(args.trace)
        if args.duration_seconds is not None:
            trace = trace.head(args.duration_seconds)
        workload = build_workload(trace, load_problems(), seed=args.seed,
                                  mix_shift_seconds=args.mix_shift_seconds)
        price = gpu_hourly_price(args.accelerator)
        config = SimConfig(
            replica=replace(ReplicaModel(), startup_seconds=args.startup_seconds),
            gpu_capacity=args.gpu_capacity,
            slo_queue_wait_seconds=args.slo_wait_seconds,
        )
        comparison = run_comparison(
            workload, config, gpu_hourly_price=price, names=names,
            utilization=args.utilization, max_replicas=args.max_replicas,
        )
        elapsed = time.perf_counter() - started
    except (SimulationError, ValueError, OSError) as exc:
        print(f"ponder simulate: {exc}", file=sys.stderr)
        return 2
    print(f"trace {args.trace}: {trace.requests} requests over {trace.duration_seconds:.0f}s, "
          f"start-up {args.startup_seconds:.0f}s, SLO queue wait <= {args.slo_wait_seconds:g}s, "
          f"{args.accelerator} at ${price:.2f}/GPU-h")
    print(format_table(comparison.summaries, comparison.oracle, price))
    print(f"replayed in {elapsed:.2f}s (data {shared_data_dir()})")
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        stem = f"simulate_{args.trace}"
        document = comparison_document(comparison, price, settings=vars(args))
        (args.out / f"{stem}.json").write_text(json.dumps(document, indent=2, default=str) + "\n")
        if plot_timelines(comparison.results, comparison.oracle, args.out / f"{stem}.png",
                          f"{args.trace}: start-up {args.startup_seconds:.0f}s"):
            print(f"wrote {args.out / stem}.json and .png")
        else:
            print(f"wrote {args.out / stem}.json (no plot: matplotlib is not installed; "
                  "pip install 'ponder[tools]')")
    return 0


def comparison_document(
    comparison: Comparison, gpu_hourly_price: float, settings: dict[str, Any]
) -> dict[str, Any]:
    """A JSON-ready record of one comparison: settings, target, oracle and summaries."""
    oracle = comparison.oracle
    return {
        "settings": {key: value for key, value in settings.items() if key != "run"},
        "gpu_hourly_price_usd": gpu_hourly_price,
        "capacity_target": asdict(comparison.target),
        "oracle": {
            "interval_seconds": oracle.interval_seconds,
            "gpu_hours": oracle.gpu_hours,
            "fluid_gpu_hours": oracle.fluid_gpu_hours,
            "cost_usd": oracle.gpu_hours * gpu_hourly_price,
            "peak_replicas": int(oracle.replicas.max(initial=0)),
        },
        "policies": [summary.as_dict() for summary in comparison.summaries],
    }

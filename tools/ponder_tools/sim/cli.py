"""``ponder simulate``: replay a public trace against every autoscaler and compare.

Role: the command-line face of ``compare``; ``ponder_tools.cli`` registers it through
``add_simulate_parser``. Prints the comparison table; with ``--out`` also writes
``simulate_<trace>.json`` and ``simulate_<trace>.png`` there. With ``--fleet`` it runs
``fleet_compare`` instead (recorded samples decided by the router's plan, accuracy and
dollars per 1,000 correct answers) and writes ``fleet.json`` and ``fleet.png``.

    ponder simulate --trace azure-conv --startup-seconds 60 --out DIR
    ponder simulate --fleet --trace azure-conv --minutes 5 --dataset llama2 --out DIR
    ponder simulate --fleet --trace servegen-r1 --day-minutes 30 --mean-rate-rps 5 \
        --minutes 30 --dataset standin-tracelen --out DIR
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
from .fleet import format_fleet_table, format_quota_rows
from .fleet_compare import DATASET_NAMES, load_samples, plot_fleet, run_fleet_comparison
from .report import format_table, gpu_hourly_price, plot_timelines
from .traces import (
    SERVEGEN_POOLS,
    SERVEGEN_WINDOW_SECONDS,
    TRACE_NAMES,
    Trace,
    load_trace,
    servegen_trace,
)
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
    parser.add_argument("--trace", choices=sorted(TRACE_NAMES), default="azure-conv",
                        help="which trace to replay (default: azure-conv)")
    parser.add_argument("--day-minutes", type=float, default=None,
                        help="servegen-r1 only: compress its day into this many minutes "
                             "(default: real time, 24 h)")
    parser.add_argument("--mean-rate-rps", type=float, default=None,
                        help="servegen-r1 only: scale its rates to this mean (default: the "
                             "real rates, 16 requests/s)")
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
    parser.add_argument("--spot", action="store_true",
                        help="cost the runs at the GPU's median spot price instead "
                             "(preemptible capacity)")
    fleet = parser.add_argument_group(
        "fleet", "--fleet replays recorded samples through the router's plan on the pool "
                 "(accuracy, $ per 1,000 correct answers); --policies, --gpu-capacity, "
                 "--max-replicas, --utilization and --mix-shift-seconds do not apply")
    fleet.add_argument("--fleet", action="store_true",
                       help="compare budget policies (maj@N, Adaptive-Consistency, Ponder) "
                            "on the fleet instead of autoscalers alone")
    fleet.add_argument("--dataset", choices=DATASET_NAMES, default="llama2",
                       help="recorded per-sample data set (default: llama2)")
    fleet.add_argument("--minutes", type=float, default=5.0,
                       help="replay the first this many minutes of the trace (default: 5)")
    parser.set_defaults(run=run_simulate)


def pricing(args: argparse.Namespace) -> str:
    """Which of the GPU's prices ``args`` cost the runs at."""
    return "spot" if getattr(args, "spot", False) else "on-demand"


def read_trace(args: argparse.Namespace) -> Trace:
    """The trace ``args.trace`` names; a ServeGen day drawn under ``args.seed``, compressed
    into ``day_minutes`` and scaled to ``mean_rate_rps`` where ``args`` set them."""
    day_minutes = getattr(args, "day_minutes", None)
    mean_rate = getattr(args, "mean_rate_rps", None)
    if args.trace not in SERVEGEN_POOLS:
        if day_minutes is not None or mean_rate is not None:
            raise SimulationError("--day-minutes and --mean-rate-rps apply to "
                                  f"{', '.join(SERVEGEN_POOLS)} only")  # fmt: skip
        return load_trace(args.trace)
    windows = 86_400.0 / SERVEGEN_WINDOW_SECONDS
    window = (SERVEGEN_WINDOW_SECONDS if day_minutes is None
              else 60.0 * day_minutes / windows)  # fmt: skip
    return servegen_trace(args.trace, window_seconds=window, mean_rate_rps=mean_rate,
                          seed=args.seed)  # fmt: skip


def run_simulate(args: argparse.Namespace) -> int:
    """Run the comparison ``args`` describe; 0 on success, 2 on bad input."""
    if getattr(args, "fleet", False):
        return run_simulate_fleet(args)
    try:
        names = [name.strip() for name in args.policies.split(",") if name.strip()]
        unknown = sorted(set(names) - set(POLICY_NAMES))
        if unknown or not names:
            raise SimulationError(f"--policies: unknown {unknown}; known: {POLICY_NAMES}")
        started = time.perf_counter()
        trace = read_trace(args)
        if args.duration_seconds is not None:
            trace = trace.head(args.duration_seconds)
        workload = build_workload(trace, load_problems(), seed=args.seed,
                                  mix_shift_seconds=args.mix_shift_seconds)
        price = gpu_hourly_price(args.accelerator, spot=args.spot)
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
          f"{args.accelerator} at ${price:.2f}/GPU-h {pricing(args)}")
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


def run_simulate_fleet(args: argparse.Namespace) -> int:
    """Run ``fleet_compare`` as ``args`` describe (``trace``, ``minutes``, ``dataset``,
    ``seed``, ``slo_wait_seconds``, ``startup_seconds``, ``accelerator``, ``out``); print
    the table, and with ``out`` write ``<stem>.json`` and ``<stem>.png`` (``stem``: ``fleet``
    unless ``args`` says). 0, or 2 on bad input."""
    try:
        started = time.perf_counter()
        dataset = load_samples(args.dataset)
        trace = read_trace(args).head(60.0 * args.minutes)
        comparison = run_fleet_comparison(
            trace, dataset, seed=args.seed, slo_wait_seconds=args.slo_wait_seconds,
            startup_seconds=args.startup_seconds, accelerator=args.accelerator,
            spot=getattr(args, "spot", False))  # fmt: skip
        elapsed = time.perf_counter() - started
    except (SimulationError, ValueError, OSError) as exc:
        print(f"ponder simulate --fleet: {exc}", file=sys.stderr)
        return 2
    print(f"fleet: {args.trace} first {args.minutes:g} min ({trace.requests} requests), "
          f"{dataset.name} ({len(dataset.problems)} problems), {args.accelerator} "
          f"${comparison.gpu_hourly_price:.2f}/GPU-h {pricing(args)}, SLO queue wait <= "
          f"{args.slo_wait_seconds:g} s, start-up {args.startup_seconds:g} s, seed {args.seed}")
    print(format_fleet_table(comparison.summaries))
    print(comparison.format_oracle())
    print(f"quota scenario: pool capped at {comparison.quota_replicas} replicas for "
          f"ponder-default, half the oracle's mean need of each policy (Ponder's "
          f"unconstrained peak {comparison.peak_replicas})")
    print(format_quota_rows(comparison.summaries))
    print(f"wall {elapsed:.1f} s")
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        settings = {"trace": args.trace, "minutes": args.minutes, "requests": trace.requests,
                    "day_minutes": getattr(args, "day_minutes", None),
                    "mean_rate_rps": getattr(args, "mean_rate_rps", None),
                    "dataset": dataset.name, "seed": args.seed,
                    "slo_queue_wait_seconds": args.slo_wait_seconds,
                    "startup_seconds": args.startup_seconds, "accelerator": args.accelerator,
                    "pricing": pricing(args), "wall_seconds": round(elapsed, 2)}  # fmt: skip
        document = comparison.document(settings)
        stem = getattr(args, "stem", "fleet")
        (args.out / f"{stem}.json").write_text(json.dumps(document, indent=2) + "\n")
        drawn = plot_fleet(comparison, args.out / f"{stem}.png")
        print(f"wrote {args.out / stem}.json" + (" and .png" if drawn else
              " (no plot: matplotlib is not installed)"))  # fmt: skip
    return 0

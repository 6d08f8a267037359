"""Demand learning under the GPU quota: the learned demand model against the static prior.

Replays the first minutes of the Azure conversation trace through ``sim.fleet`` with
Ponder's default policy on Ponder's autoscaler, the pool capped at the quota of
``fleet_compare`` (about half of what the policy's work needs), load shrinking at the
ceiling; demand learning (``spec.budgets.demandLearning``) off and on, each with the
router's load horizon (``capacity.horizonSeconds``, 30 s) and with one of the SLO's wait.
Same arrivals, problem draws and sample orders in every run. Prints one line per run,
with each tier's learned (token fill, extra sample share), and writes
``bench/results/demand_learning_<dataset>.json``.

    PYTHONPATH=operator:router:tools:localstack .venv/bin/python \\
        bench/bench_demand_learning.py [--dataset standin-tracelen] [--minutes 5]
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

from ponder_router.budgets import default_policy
from ponder_router.demand_learning import DemandLearningConfig
from ponder_tools.sim import fleet_compare as fc
from ponder_tools.sim.compare import ponder_spec
from ponder_tools.sim.fleet import (
    FleetPolicy,
    FleetResult,
    ShrinkTrigger,
    calibration_workload,
    draw_fleet,
    simulate_fleet,
    summarize_fleet,
)
from ponder_tools.sim.fleet_target import measure_capacity_target
from ponder_tools.sim.oracle import compute_oracle
from ponder_tools.sim.traces import load_trace


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", choices=fc.DATASET_NAMES, default="standin-tracelen")
    parser.add_argument("--trace", default="azure-conv")
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--slo-wait-seconds", type=float, default=2.0)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()

    trace = load_trace(args.trace).head(60.0 * args.minutes)
    draw = draw_fleet(trace, fc.load_samples(args.dataset).problems, seed=args.seed)
    config = fc.SimConfig(replica=fc.ReplicaModel(startup_seconds=60.0),
                          gpu_capacity=fc.MAX_REPLICAS,
                          slo_queue_wait_seconds=args.slo_wait_seconds)  # fmt: skip
    price = fc.gpu_hourly_price("H100")
    ponder = default_policy()
    need = compute_oracle(calibration_workload(draw, FleetPolicy("ponder", budget_policy=ponder)),
                          config.replica, fc.ORACLE_INTERVAL_SECONDS)  # fmt: skip
    quota = fc.quota_for(need, trace.duration_seconds)

    def run(policy: FleetPolicy) -> FleetResult:
        workload = calibration_workload(draw, policy)
        oracle = compute_oracle(workload, config.replica, fc.ORACLE_INTERVAL_SECONDS)
        target = measure_capacity_target(
            draw, policy, fc.derive_capacity_target(workload, config.replica), config,
            workload, max(1, int(oracle.replicas.max())))  # fmt: skip
        head = oracle.replicas[: int(fc.WARM_START_SECONDS // fc.ORACLE_INTERVAL_SECONDS)]
        start = min(max(1, int(head.max()) if len(head) else 1), quota)
        local = replace(config, initial_replicas=start, gpu_capacity=quota)
        scaler = fc.PonderAutoscaler(ponder_spec(target, local, quota))
        return simulate_fleet(draw, policy, scaler, local, workload=workload,
                              max_replicas=quota)  # fmt: skip

    rows = []
    print(f"{args.dataset} on {args.trace}, first {args.minutes:g} min; quota {quota} GPUs")
    for horizon in (30.0, args.slo_wait_seconds):
        for learning in (False, True):
            name = f"horizon {horizon:g}s, learning {'on' if learning else 'off'}"
            policy = FleetPolicy(name, budget_policy=ponder, shrink=ShrinkTrigger.CEILING,
                                 demand_learning=DemandLearningConfig(enabled=learning),
                                 load_horizon_seconds=horizon)  # fmt: skip
            result = run(policy)
            summary = summarize_fleet(result, gpu_hourly_price=price,
                                      slo_queue_wait_seconds=args.slo_wait_seconds)  # fmt: skip
            learned = {tier: [round(m.token_fill_ratio, 3), round(m.extra_sample_ratio, 3)]
                       for tier, m in result.demand_models.items()}  # fmt: skip
            rows.append({**summary.as_dict(), "load_horizon_seconds": horizon,
                         "demand_learning": learning, "learned": learned})  # fmt: skip
            print(f"{name:32s} accuracy {summary.accuracy:.4f}  SLO {summary.slo_attainment:.4f}"
                  f"  $/1k correct {summary.usd_per_1k_correct:.3f}"
                  f"  samples {summary.mean_samples:.2f}  shrunk {summary.shrunk_share:.3f}"
                  f"  learned {learned}")  # fmt: skip
    args.out.mkdir(parents=True, exist_ok=True)
    document = {"dataset": args.dataset, "trace": args.trace, "minutes": args.minutes,
                "seed": args.seed, "quota_replicas": quota, "runs": rows}  # fmt: skip
    path = args.out / f"demand_learning_{args.dataset}.json"
    path.write_text(json.dumps(document, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

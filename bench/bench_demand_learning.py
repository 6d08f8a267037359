"""Load shrinking under the GPU quota: which demand model, which pressure signal, which order.

Replays the first minutes of the Azure conversation trace through ``sim.fleet`` with
Ponder's default policy on Ponder's autoscaler, the pool capped at the quota of
``fleet_compare`` (about half of what the policy's work needs), load shrinking at the
ceiling, once per seed (different problem draws and sample orders; every run of a seed
shares them). Per seed, side by side:

- ``noshrink``: no shrinking (the reference accuracy and the queue blow-up);
- ``prior, open demand``: the static demand prior and the open demand alone as the
  pressure (the router before demand learning and the offered load were its defaults);
- ``learned, open demand``: demand learning on, the open demand alone;
- ``learned, offered`` (the default): demand learning on, the pressure the larger of the
  open demand and the offered load (``ponder_router.offered``);
- the same with the agreement step first (the stopping rule needs a smaller lead).

Prints one line per run and a mean per configuration; writes
``bench/results/demand_learning_<dataset>.json``.

    PYTHONPATH=operator:router:tools:localstack .venv/bin/python \\
        bench/bench_demand_learning.py [--dataset standin-tracelen] [--minutes 5] [--seeds 3]
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

from ponder_router.budgets import (
    AGREEMENT_FLOOR,
    BudgetPolicy,
    ShrinkResource,
    ShrinkStep,
    default_policy,
)
from ponder_router.demand_learning import DemandLearningConfig
from ponder_tools.sim import fleet_compare as fc
from ponder_tools.sim.compare import ponder_spec
from ponder_tools.sim.fleet import (
    FleetDraw,
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


def agreement_first(policy: BudgetPolicy) -> BudgetPolicy:
    """``policy`` with the agreement shrink step before its own steps."""
    first = ShrinkStep(resource=ShrinkResource.AGREEMENT, floor=AGREEMENT_FLOOR)
    return policy.model_copy(update={"shrink_order": (first, *policy.shrink_order)})


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", choices=fc.DATASET_NAMES, default="standin-tracelen")
    parser.add_argument("--trace", default="azure-conv")
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--slo-wait-seconds", type=float, default=2.0)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()

    trace = load_trace(args.trace).head(60.0 * args.minutes)
    problems = fc.load_samples(args.dataset).problems
    config = fc.SimConfig(replica=fc.ReplicaModel(startup_seconds=60.0),
                          gpu_capacity=fc.MAX_REPLICAS,
                          slo_queue_wait_seconds=args.slo_wait_seconds)  # fmt: skip
    price = fc.gpu_hourly_price("H100")
    ponder = default_policy()
    off, on = DemandLearningConfig(enabled=False), DemandLearningConfig(enabled=True)
    configurations = (
        ("noshrink", ponder, ShrinkTrigger.OFF, on, True),
        ("prior, open demand", ponder, ShrinkTrigger.CEILING, off, False),
        ("learned, open demand", ponder, ShrinkTrigger.CEILING, on, False),
        ("learned, offered", ponder, ShrinkTrigger.CEILING, on, True),
        ("learned, offered, agreement first", agreement_first(ponder), ShrinkTrigger.CEILING,
         on, True),
    )  # fmt: skip
    rows = []
    print(f"{args.dataset} on {args.trace}, first {args.minutes:g} min")
    for seed in range(args.seeds):
        draw = draw_fleet(trace, problems, seed=seed)
        ponder_work = calibration_workload(draw, FleetPolicy("ponder", budget_policy=ponder))
        need = compute_oracle(ponder_work, config.replica, fc.ORACLE_INTERVAL_SECONDS)
        quota = fc.quota_for(need, trace.duration_seconds)

        def run(policy: FleetPolicy, draw: FleetDraw = draw, quota: int = quota) -> FleetResult:
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

        for name, budget_policy, trigger, learning, offered in configurations:
            policy = FleetPolicy(name, budget_policy=budget_policy, shrink=trigger,
                                 demand_learning=learning, offered_load=offered)  # fmt: skip
            summary = summarize_fleet(run(policy), gpu_hourly_price=price,
                                      slo_queue_wait_seconds=args.slo_wait_seconds)  # fmt: skip
            rows.append({**summary.as_dict(), "seed": seed, "quota_replicas": quota})
            print(f"seed {seed} quota {quota:3d}  {name:32s} accuracy {summary.accuracy:.4f}"
                  f"  SLO {summary.slo_attainment:.4f}  wait p99 {summary.wait_p99_seconds:6.1f} s"
                  f"  samples {summary.mean_samples:5.2f}")  # fmt: skip
    means = []
    for name, *_ in configurations:
        mine = [r for r in rows if r["policy"] == name]
        mean = {key: sum(float(r[key]) for r in mine) / len(mine)
                for key in ("accuracy", "slo_attainment", "mean_samples")}  # fmt: skip
        worst = min(float(r["slo_attainment"]) for r in mine)
        means.append({"policy": name, **mean, "worst_slo_attainment": worst})
        print(f"mean {name:32s} accuracy {mean['accuracy']:.4f}  SLO {mean['slo_attainment']:.4f}"
              f" (worst {worst:.4f})  samples {mean['mean_samples']:5.2f}")  # fmt: skip
    args.out.mkdir(parents=True, exist_ok=True)
    document = {"dataset": args.dataset, "trace": args.trace, "minutes": args.minutes,
                "seeds": args.seeds, "runs": rows, "means": means}  # fmt: skip
    path = args.out / f"demand_learning_{args.dataset}.json"
    path.write_text(json.dumps(document, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

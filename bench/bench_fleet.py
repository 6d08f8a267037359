"""Fleet benchmark: accuracy, latency, SLO and dollars per 1,000 correct answers, per policy.

Replays the first minutes of a public trace (default: Azure 2023 conversation) through
``ponder_tools.sim.fleet``: every request gets a problem from a recorded per-sample data
set, the router's ``RequestPlan`` decides its samples, the replica pool decodes them and
an autoscaler sizes the pool. All policies run on the same arrivals, problem draws, sample
orders and sample lengths:

- fixed maj@1, maj@5, maj@16 and Adaptive-Consistency (beta 0.95, one sample at a time,
  up to 16) on the HPA (outstanding requests per pod, calibrated on each policy's own
  work, as a load test would);
- Ponder's default budget policy on the HPA and on Ponder's autoscaler;
- the GPU-quota scenario: Ponder on its autoscaler with the pool capped at half the peak
  it reached unconstrained, with load-aware shrinking off and on.

Prints a table, writes ``bench/results/fleet.json`` and ``bench/results/fleet.png``
(matplotlib, when installed).

    PYTHONPATH=operator:router:tools:localstack .venv/bin/python bench/bench_fleet.py \\
        [--trace azure-conv] [--minutes 5] [--dataset llama2|gpt4|qwen] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from ponder_router.budgets import default_policy
from ponder_tools.data import shared_data_dir
from ponder_tools.evaluation.dataset import (
    Dataset,
    convert_qwen25math,
    load_dataset,
    write_jsonl,
)
from ponder_tools.sim import (
    Autoscaler,
    HpaAutoscaler,
    PonderAutoscaler,
    ReplicaModel,
    SimConfig,
    derive_capacity_target,
    gpu_hourly_price,
    load_trace,
    ponder_spec,
)
from ponder_tools.sim.fleet import (
    FleetPolicy,
    FleetResult,
    FleetSummary,
    calibration_workload,
    draw_fleet,
    format_fleet_table,
    simulate_fleet,
    summarize_fleet,
)
from ponder_tools.sim.oracle import compute_oracle

DATASETS = {
    "llama2": "mot_llama2_13b_gsm8k_pot_400x48.jsonl",
    "gpt4": "mot_gpt4_gsm8k_cot_1319x6.jsonl",
}
MAX_REPLICAS = 64
WARM_START_SECONDS = 180.0


def load_samples(name: str) -> Dataset:
    if name == "qwen":
        with tempfile.TemporaryDirectory() as folder:
            return load_dataset(write_jsonl(convert_qwen25math(), Path(folder) / "qwen.jsonl"))
    return load_dataset(shared_data_dir() / "samples" / DATASETS[name])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trace", default="azure-conv")
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--dataset", choices=(*DATASETS, "qwen"), default="llama2")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--slo-wait-seconds", type=float, default=2.0)
    parser.add_argument("--startup-seconds", type=float, default=60.0)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    started = time.perf_counter()
    dataset = load_samples(args.dataset)
    trace = load_trace(args.trace).head(60.0 * args.minutes)
    draw = draw_fleet(trace, dataset.problems, seed=args.seed)
    config = SimConfig(replica=ReplicaModel(startup_seconds=args.startup_seconds),
                       gpu_capacity=MAX_REPLICAS,
                       slo_queue_wait_seconds=args.slo_wait_seconds)  # fmt: skip
    price = gpu_hourly_price("H100")
    ponder = default_policy()

    def run(policy: FleetPolicy, scaler: str, max_replicas: int = MAX_REPLICAS) -> FleetResult:
        workload = calibration_workload(draw, policy)
        target = derive_capacity_target(workload, config.replica)
        oracle = compute_oracle(workload, config.replica, 10.0)
        head = oracle.replicas[: int(WARM_START_SECONDS // 10.0)]
        start = min(max(1, int(head.max()) if len(head) else 1), max_replicas)
        local = replace(config, initial_replicas=start, gpu_capacity=max_replicas)
        autoscaler: Autoscaler = (
            HpaAutoscaler(target.requests_per_replica, max_replicas=max_replicas)
            if scaler == "hpa" else
            PonderAutoscaler(ponder_spec(target, local, max_replicas)))  # fmt: skip
        return simulate_fleet(draw, policy, autoscaler, local, workload=workload,
                              max_replicas=max_replicas)  # fmt: skip

    runs: list[tuple[FleetPolicy, str, int]] = [
        (FleetPolicy("maj@1", fixed_samples=1), "hpa", MAX_REPLICAS),
        (FleetPolicy("maj@5", fixed_samples=5), "hpa", MAX_REPLICAS),
        (FleetPolicy("maj@16", fixed_samples=16), "hpa", MAX_REPLICAS),
        (FleetPolicy("adaptive-consistency", ac_threshold=0.95), "hpa", MAX_REPLICAS),
        (FleetPolicy("ponder-default", budget_policy=ponder), "hpa", MAX_REPLICAS),
        (FleetPolicy("ponder-default", budget_policy=ponder), "ponder", MAX_REPLICAS),
    ]
    results = [run(policy, scaler, cap) for policy, scaler, cap in runs]
    peak = int(max(results[-1].timeline[2].max(), 2))
    quota = max(1, peak // 2)
    for shrink in (False, True):
        name = f"ponder-quota{quota}-" + ("shrink" if shrink else "noshrink")
        policy = FleetPolicy(name, budget_policy=ponder, load_aware=shrink)
        results.append(run(policy, "ponder", quota))
    summaries = [summarize_fleet(r, gpu_hourly_price=price,
                                 slo_queue_wait_seconds=args.slo_wait_seconds)
                 for r in results]  # fmt: skip
    elapsed = time.perf_counter() - started
    print(f"fleet: {args.trace} first {args.minutes:g} min ({trace.requests} requests), "
          f"{dataset.name} ({len(dataset.problems)} problems), H100 ${price:.2f}/GPU-h, "
          f"SLO queue wait <= {args.slo_wait_seconds:g} s, start-up "
          f"{args.startup_seconds:g} s, seed {args.seed}")  # fmt: skip
    print(format_fleet_table(summaries))
    print(f"quota scenario: pool capped at {quota} replicas (half of Ponder's peak {peak}); "
          f"shrunk share with shrinking on: {summaries[-1].shrunk_share:.1%}")
    print(f"wall {elapsed:.1f} s")
    args.out.mkdir(parents=True, exist_ok=True)
    document = {
        "trace": args.trace, "minutes": args.minutes, "requests": trace.requests,
        "dataset": dataset.name, "seed": args.seed, "gpu_hourly_price_usd": price,
        "slo_queue_wait_seconds": args.slo_wait_seconds, "quota_replicas": quota,
        "policies": [s.as_dict() for s in summaries], "wall_seconds": round(elapsed, 2),
    }  # fmt: skip
    (args.out / "fleet.json").write_text(json.dumps(document, indent=2) + "\n")
    plot(summaries, results, args.out / "fleet.png")
    return 0


def plot(summaries: list[FleetSummary], results: list[FleetResult], path: Path) -> bool:
    """Accuracy against $ per 1k correct, and replicas holding GPUs over time."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    figure, (left, right) = plt.subplots(1, 2, figsize=(13, 5))
    for s in summaries:
        label = f"{s.policy} ({s.autoscaler})"
        left.scatter(s.usd_per_1k_correct, 100 * s.accuracy, label=label)
    left.set_xlabel("$ per 1,000 correct answers")
    left.set_ylabel("accuracy %")
    left.legend(fontsize=7)
    for r in results:
        right.step(r.timeline[0], r.timeline[2], where="post", label=f"{r.policy} ({r.autoscaler})")
    right.set_xlabel("seconds")
    right.set_ylabel("replicas holding GPUs")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return True


if __name__ == "__main__":
    raise SystemExit(main())

"""The fleet comparison: every policy side by side on the same arrivals and problem draws.

Role: what ``ponder simulate --fleet`` (``cli``) and ``bench/bench_fleet.py`` both run. It
builds the runs (policy, autoscaler, replica ceiling), replays each through
``fleet.simulate_fleet`` on one ``fleet.FleetDraw``, and returns their summaries with a
JSON-ready document; ``plot_fleet`` draws accuracy against $ per 1,000 correct answers and
the replicas over time. The runs:

- fixed maj@1, maj@5, maj@16 and Adaptive-Consistency (beta 0.95, one sample at a time,
  up to 16) on the HPA (outstanding requests per pod, calibrated on each policy's own
  work, as a load test would), and maj@16 on KEDA;
- Ponder's default budget policy on the HPA, on KEDA and on Ponder's autoscaler, the last
  with each ``fleet.ShrinkTrigger``: off, at the ceiling, and while scale-up is in flight
  (this one on the HPA too);
- the GPU-quota scenario: Ponder on its autoscaler with the pool capped at K, half the peak
  it reached unconstrained (so demand reaches about 2x what K serve), with load-aware
  shrinking off, on (samples first, the default order) and on with tokens first.

Beside the runs, the oracle bound (``oracle.compute_oracle``: clairvoyant, instant
start-up, every request on time) of the fixed policies' and Ponder's work, costed at the
accuracy their HPA run reached.
"""

from __future__ import annotations

import tempfile
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from ponder_router.budgets import default_policy
from ponder_tools.data import shared_data_dir
from ponder_tools.evaluation.dataset import Dataset, convert_qwen25math, load_dataset, write_jsonl

from .baselines import HpaAutoscaler, KedaAutoscaler, PonderAutoscaler, derive_capacity_target
from .compare import ponder_spec
from .engine import Autoscaler, ReplicaModel, SimConfig
from .errors import SimulationError
from .fleet import (
    FleetPolicy,
    FleetResult,
    FleetSummary,
    ShrinkTrigger,
    calibration_workload,
    draw_fleet,
    simulate_fleet,
    summarize_fleet,
)
from .oracle import compute_oracle
from .report import gpu_hourly_price
from .traces import Trace

DATASETS = {
    "llama2": "mot_llama2_13b_gsm8k_pot_400x48.jsonl",
    "gpt4": "mot_gpt4_gsm8k_cot_1319x6.jsonl",
}
"""Recorded per-sample data sets in the shared data's ``samples``; ``qwen`` is built in."""
DATASET_NAMES = (*DATASETS, "qwen")
MAX_REPLICAS = 64
WARM_START_SECONDS = 180.0
ORACLE_INTERVAL_SECONDS = 10.0


def load_samples(name: str) -> Dataset:
    """The per-sample data set called ``name`` (one of ``DATASET_NAMES``)."""
    if name == "qwen":
        with tempfile.TemporaryDirectory() as folder:
            return load_dataset(write_jsonl(convert_qwen25math(), Path(folder) / "qwen.jsonl"))
    if name not in DATASETS:
        raise SimulationError(f"unknown data set {name!r}; known: {', '.join(DATASET_NAMES)}")
    return load_dataset(shared_data_dir() / "samples" / DATASETS[name])


@dataclass(frozen=True)
class OracleRow:
    """The oracle bound of one policy's work, at the accuracy of its HPA run."""

    policy: str
    gpu_hours: float
    cost_usd: float
    usd_per_1k_correct: float


@dataclass(frozen=True)
class FleetComparison:
    """Every run's result and summary, in run order, the oracle rows and the quota."""

    results: tuple[FleetResult, ...]
    summaries: tuple[FleetSummary, ...]
    oracles: tuple[OracleRow, ...]
    quota_replicas: int
    peak_replicas: int
    gpu_hourly_price: float

    def document(self, settings: dict[str, Any]) -> dict[str, Any]:
        """A JSON-ready record: ``settings``, the quota, each run's summary, the oracle."""
        return {
            **settings, "gpu_hourly_price_usd": self.gpu_hourly_price,
            "quota_replicas": self.quota_replicas, "peak_replicas": self.peak_replicas,
            "policies": [s.as_dict() for s in self.summaries],
            "oracle": [asdict(o) for o in self.oracles],
        }  # fmt: skip

    def format_oracle(self) -> str:
        """One line per oracle row, under the table."""
        return "\n".join(f"oracle bound {o.policy:<17} GPU-h {o.gpu_hours:.2f}  cost "
                         f"${o.cost_usd:.2f}  $/1k ok {o.usd_per_1k_correct:.2f}"
                         for o in self.oracles)  # fmt: skip


def run_fleet_comparison(trace: Trace, dataset: Dataset, *, seed: int = 0,
                         slo_wait_seconds: float = 2.0, startup_seconds: float = 60.0,
                         accelerator: str = "H100") -> FleetComparison:  # fmt: skip
    """Replay ``trace`` with ``dataset``'s problems under every run (module docstring)."""
    draw = draw_fleet(trace, dataset.problems, seed=seed)
    config = SimConfig(replica=ReplicaModel(startup_seconds=startup_seconds),
                       gpu_capacity=MAX_REPLICAS,
                       slo_queue_wait_seconds=slo_wait_seconds)  # fmt: skip
    price = gpu_hourly_price(accelerator)
    ponder = default_policy()
    tokens_first = ponder.model_copy(update={"shrink_order": tuple(reversed(ponder.shrink_order))})

    def run(policy: FleetPolicy, scaler: str, max_replicas: int = MAX_REPLICAS) -> FleetResult:
        workload = calibration_workload(draw, policy)
        target = derive_capacity_target(workload, config.replica)
        oracle = compute_oracle(workload, config.replica, ORACLE_INTERVAL_SECONDS)
        head = oracle.replicas[: int(WARM_START_SECONDS // ORACLE_INTERVAL_SECONDS)]
        start = min(max(1, int(head.max()) if len(head) else 1), max_replicas)
        local = replace(config, initial_replicas=start, gpu_capacity=max_replicas)
        per_pod = target.requests_per_replica
        autoscaler: Autoscaler
        if scaler == "hpa":
            autoscaler = HpaAutoscaler(per_pod, max_replicas=max_replicas)
        elif scaler == "keda":
            autoscaler = KedaAutoscaler(per_pod, max_replicas=max_replicas)
        else:
            autoscaler = PonderAutoscaler(ponder_spec(target, local, max_replicas))
        return simulate_fleet(draw, policy, autoscaler, local, workload=workload,
                              max_replicas=max_replicas)  # fmt: skip

    def oracle_row(policy: FleetPolicy, result: FleetResult) -> OracleRow:
        bound = compute_oracle(calibration_workload(draw, policy), config.replica,
                               ORACLE_INTERVAL_SECONDS)  # fmt: skip
        cost = bound.gpu_hours * price
        correct = int(result.correct.sum())
        return OracleRow(policy.name, bound.gpu_hours, cost,
                         1000.0 * cost / correct if correct else float("inf"))  # fmt: skip

    maj16 = FleetPolicy("maj@16", fixed_samples=16)
    default = FleetPolicy("ponder-default", budget_policy=ponder)
    scale_up = FleetPolicy("ponder-shrink-scaleup", budget_policy=ponder,
                           shrink=ShrinkTrigger.SCALE_UP)
    runs: list[tuple[FleetPolicy, str]] = [
        (FleetPolicy("maj@1", fixed_samples=1), "hpa"),
        (FleetPolicy("maj@5", fixed_samples=5), "hpa"),
        (maj16, "hpa"),
        (maj16, "keda"),
        (FleetPolicy("adaptive-consistency", ac_threshold=0.95), "hpa"),
        (default, "hpa"),
        (scale_up, "hpa"),
        (default, "keda"),
        (FleetPolicy("ponder-shrink-ceiling", budget_policy=ponder,
                     shrink=ShrinkTrigger.CEILING), "ponder"),
        (scale_up, "ponder"),
        (default, "ponder"),
    ]  # fmt: skip
    results = [run(policy, scaler) for policy, scaler in runs]
    oracles = tuple(oracle_row(policy, result) for (policy, scaler), result
                    in zip(runs, results, strict=True)
                    if scaler == "hpa" and policy.name in ("maj@1", "maj@16", default.name))
    peak = int(max(results[-1].timeline[2].max(), 2))
    quota = max(1, peak // 2)
    for name, budget_policy, trigger in (
        ("noshrink", ponder, ShrinkTrigger.OFF),
        ("shrink", ponder, ShrinkTrigger.CEILING),
        ("shrink-tokens1st", tokens_first, ShrinkTrigger.CEILING),
    ):
        policy = FleetPolicy(f"ponder-quota{quota}-{name}", budget_policy=budget_policy,
                             shrink=trigger)  # fmt: skip
        results.append(run(policy, "ponder", quota))
    summaries = tuple(summarize_fleet(r, gpu_hourly_price=price,
                                      slo_queue_wait_seconds=slo_wait_seconds)
                      for r in results)  # fmt: skip
    return FleetComparison(tuple(results), summaries, oracles, quota, peak, price)


def plot_fleet(comparison: FleetComparison, path: Path) -> bool:
    """Accuracy against $ per 1k correct, and replicas holding GPUs over time; False
    when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    figure, (left, right) = plt.subplots(1, 2, figsize=(13, 5))
    for s in comparison.summaries:
        left.scatter(s.usd_per_1k_correct, 100 * s.accuracy, label=f"{s.policy} ({s.autoscaler})")
    left.set_xlabel("$ per 1,000 correct answers")
    left.set_ylabel("accuracy %")
    left.legend(fontsize=7)
    for r in comparison.results:
        right.step(r.timeline[0], r.timeline[2], where="post", label=f"{r.policy} ({r.autoscaler})")
    right.set_xlabel("seconds")
    right.set_ylabel("replicas holding GPUs")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return True


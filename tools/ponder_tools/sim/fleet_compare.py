"""The fleet comparison: every policy side by side on the same arrivals and problem draws.

Role: what ``ponder simulate --fleet`` (``cli``) and ``bench/bench_fleet.py`` both run. It
builds the runs (policy, autoscaler, replica ceiling), replays each through
``fleet.simulate_fleet`` on one ``fleet.FleetDraw``, and returns their summaries with a
JSON-ready document; ``plot_fleet`` draws accuracy against $ per 1,000 correct answers and
the replicas over time. The runs:

- fixed maj@1, maj@5, maj@16 and Adaptive-Consistency (beta 0.95, one sample at a time,
  up to 16) on the HPA (outstanding requests per pod, calibrated on each policy's own
  work, as a load test would: ``fleet_target.measure_capacity_target``, for every
  autoscaler and policy), and maj@16 on KEDA and on Ponder's autoscaler (so the
  autoscaler's share of a difference is seen apart from the policy's);
- Ponder's default budget policy on the HPA, on KEDA and on Ponder's autoscaler, the last
  with each ``fleet.ShrinkTrigger``: off, at the ceiling, and while scale-up is in flight
  (this one on the HPA too);
- Ponder's calibrated policies (``calibrate_for_fleet``: ``ponder calibrate`` on the
  other half of the problems), one matching maj@all-samples and one aiming at maj@16's
  accuracy, on Ponder's autoscaler with shrinking while scale-up is in flight. With
  ``calibrate`` on, every run draws its problems from the held-out half only, so no
  policy is measured on the problems it was fitted to;
- the GPU-quota scenario: Ponder's default policy, and the first calibrated one (whose
  demand model is fitted, so its pressure reads the load right), each on its autoscaler
  with the pool capped at K, half the replicas the oracle needs on average for that
  policy's work over the trace (``quota_for``; whole replicas, so about 2x), with
  load-aware shrinking off, on in the policy's order (the default: samples, then
  tokens), on with the agreement step first (the stopping rule needs a smaller lead) and
  on with tokens first. (Half the peak the autoscaler reached unconstrained
  was the earlier choice: the autoscaler holds well above the need, so that K was never
  overloaded.)

Beside the runs, the oracle bound (``oracle.compute_oracle``: clairvoyant, instant
start-up, every request on time) of the fixed policies' and Ponder's work, costed at the
accuracy their HPA run reached (the calibrated policies' at their own run's).
"""

from __future__ import annotations

import math
import tempfile
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from ponder_router.aggregate import StopRule
from ponder_router.budgets import (
    AGREEMENT_FLOOR,
    BudgetPolicy,
    ShrinkResource,
    ShrinkStep,
    default_policy,
)
from ponder_tools.data import shared_data_dir
from ponder_tools.evaluation.calibrate import (
    CalibrationConfig,
    ModelData,
    build_table,
    solve,
    split_ids,
)
from ponder_tools.evaluation.dataset import (
    Dataset,
    EvalProblem,
    convert_qwen25math,
    generate,
    load_dataset,
    write_jsonl,
)
from ponder_tools.evaluation.replay import build_replay_set, replay_fixed

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
from .fleet_target import measure_capacity_target
from .oracle import OracleBound, compute_oracle
from .report import gpu_hourly_price
from .traces import Trace

DATASETS = {
    "llama2": "mot_llama2_13b_gsm8k_pot_400x48.jsonl",
    "gpt4": "mot_gpt4_gsm8k_cot_1319x6.jsonl",
}
"""Recorded per-sample data sets in the shared data's ``samples``; ``qwen`` is built in and
``standin`` is generated: the stand-in LLM's own sampling code over MATH-500
(``generate("standin-math500")``, deterministic under its seed, 40 samples a problem);
``standin-tracelen`` is the same answers with the trace's lengths, as ``qwen`` has (the
stand-in writes about 60 tokens a sample, so its own lengths fit the whole trace on a few
replicas, where the cost ratios move a whole replica at a time)."""
DATASET_NAMES = (*DATASETS, "qwen", "standin", "standin-tracelen")
STANDIN_SAMPLES_PER_PROBLEM = 40
MAX_REPLICAS = 64
WARM_START_SECONDS = 180.0
ORACLE_INTERVAL_SECONDS = 10.0


def load_samples(name: str) -> Dataset:
    """The per-sample data set called ``name`` (one of ``DATASET_NAMES``)."""
    if name == "qwen":
        with tempfile.TemporaryDirectory() as folder:
            return load_dataset(write_jsonl(convert_qwen25math(), Path(folder) / "qwen.jsonl"))
    if name in ("standin", "standin-tracelen"):
        rows = generate("standin-math500", samples_per_problem=STANDIN_SAMPLES_PER_PROBLEM)
        with tempfile.TemporaryDirectory() as folder:
            standin = load_dataset(write_jsonl(rows, Path(folder) / "standin-math500.jsonl"))
        if name == "standin":
            return standin
        return replace(standin, name=f"{standin.name}-tracelen",
                       problems=tuple(replace(p, tokens=None) for p in standin.problems))
    if name not in DATASETS:
        raise SimulationError(f"unknown data set {name!r}; known: {', '.join(DATASET_NAMES)}")
    return load_dataset(shared_data_dir() / "samples" / DATASETS[name])


@dataclass(frozen=True)
class CalibratedPolicy:
    """A policy ``ponder calibrate`` fitted on ``train_ids``, to run on the other problems."""

    name: str
    policy: BudgetPolicy
    rule: StopRule
    train_accuracy: float
    """What the calibration aimed at on the train half (maj@all, or maj@16's accuracy)."""


@dataclass(frozen=True)
class Calibration:
    """The split and the calibrated policies; ``held_out`` are the problems runs draw."""

    policies: tuple[CalibratedPolicy, ...]
    held_out: tuple[EvalProblem, ...]
    train_problems: int


CALIBRATION_ORDERINGS = 5
CALIBRATION_TEST_FRACTION = 0.5
CALIBRATION_GRID = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64)
CALIBRATION_THRESHOLDS = (0.8, 0.9, 0.95, 0.99)
CALIBRATION_MARGINS = (2, 3, 4)
"""A coarser candidate grid than ``ponder calibrate``'s, so the benchmark calibrates in
seconds; the policy is still chosen by ``calibrate.solve``."""


def calibrate_for_fleet(dataset: Dataset, *, seed: int = 0) -> Calibration:
    """``ponder calibrate`` on a seeded half of ``dataset``: the least-compute policy that
    matches maj@all-samples there, and the one that aims at maj@16's accuracy there."""
    config = CalibrationConfig(seed=seed, test_fraction=CALIBRATION_TEST_FRACTION,
                               orderings=CALIBRATION_ORDERINGS, sample_grid=CALIBRATION_GRID,
                               thresholds=CALIBRATION_THRESHOLDS,
                               margins=CALIBRATION_MARGINS)  # fmt: skip
    table = build_table([ModelData("model", dataset)], config)
    train_ids, _ = split_ids(table.ids, config.test_fraction, seed)
    train = np.array([pid in train_ids for pid in table.ids])
    train_problems = [p for p in dataset.problems if p.problem_id in train_ids]
    maj16 = replay_fixed(build_replay_set(dataset, orderings=CALIBRATION_ORDERINGS, seed=seed,
                                          problems=train_problems), 16)  # fmt: skip
    maj16_accuracy = float(maj16.correct.mean())
    policies = []
    for name, target in (("ponder-calibrated", None), ("ponder-calibrated-maj16", maj16_accuracy)):
        solution = solve(table, train, replace(config, target_accuracy=target))
        policies.append(CalibratedPolicy(name, solution.policy, solution.rule,
                                         target if target is not None
                                         else solution.reference_accuracy))  # fmt: skip
    held_out = tuple(p for p in dataset.problems if p.problem_id not in train_ids)
    return Calibration(tuple(policies), held_out, len(train_problems))


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
    calibration: Calibration | None = None

    def document(self, settings: dict[str, Any]) -> dict[str, Any]:
        """A JSON-ready record: ``settings``, the quota, each run's summary, the oracle."""
        return {
            **settings, "gpu_hourly_price_usd": self.gpu_hourly_price,
            "quota_replicas": self.quota_replicas, "peak_replicas": self.peak_replicas,
            "policies": [s.as_dict() for s in self.summaries],
            "oracle": [asdict(o) for o in self.oracles],
            "calibration": None if self.calibration is None else {
                "train_problems": self.calibration.train_problems,
                "held_out_problems": len(self.calibration.held_out),
                "policies": [{"name": c.name, "train_accuracy": round(c.train_accuracy, 5),
                              "stop_rule": c.rule.model_dump(mode="json"),
                              "tiers": [t.model_dump(mode="json", by_alias=True)
                                        for t in c.policy.tiers]}
                             for c in self.calibration.policies]},
        }  # fmt: skip

    def format_oracle(self) -> str:
        """One line per oracle row, under the table."""
        return "\n".join(f"oracle bound {o.policy:<17} GPU-h {o.gpu_hours:.2f}  cost "
                         f"${o.cost_usd:.2f}  $/1k ok {o.usd_per_1k_correct:.2f}"
                         for o in self.oracles)  # fmt: skip


def run_fleet_comparison(trace: Trace, dataset: Dataset, *, seed: int = 0,
                         slo_wait_seconds: float = 2.0, startup_seconds: float = 60.0,
                         accelerator: str = "H100", calibrate: bool = True,
                         spot: bool = False) -> FleetComparison:  # fmt: skip
    """Replay ``trace`` with ``dataset``'s problems under every run (module docstring),
    its GPUs at ``accelerator``'s median on-demand price, or with ``spot`` its spot one."""
    calibration = calibrate_for_fleet(dataset, seed=seed) if calibrate else None
    problems = calibration.held_out if calibration is not None else dataset.problems
    draw = draw_fleet(trace, problems, seed=seed)
    config = SimConfig(replica=ReplicaModel(startup_seconds=startup_seconds),
                       gpu_capacity=MAX_REPLICAS,
                       slo_queue_wait_seconds=slo_wait_seconds)  # fmt: skip
    price = gpu_hourly_price(accelerator, spot=spot)
    ponder = default_policy()

    def run(policy: FleetPolicy, scaler: str, max_replicas: int = MAX_REPLICAS) -> FleetResult:
        workload = calibration_workload(draw, policy)
        oracle = compute_oracle(workload, config.replica, ORACLE_INTERVAL_SECONDS)
        target = measure_capacity_target(draw, policy,
                                         derive_capacity_target(workload, config.replica),
                                         config, workload, max(1, int(oracle.replicas.max())))
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
        (maj16, "ponder"),
        (FleetPolicy("adaptive-consistency", ac_threshold=0.95), "hpa"),
        (default, "hpa"),
        (scale_up, "hpa"),
        (default, "keda"),
        (FleetPolicy("ponder-shrink-ceiling", budget_policy=ponder,
                     shrink=ShrinkTrigger.CEILING), "ponder"),
        (scale_up, "ponder"),
        (default, "ponder"),
        *[(FleetPolicy(c.name, budget_policy=c.policy, stop_rule=c.rule,
                       shrink=ShrinkTrigger.SCALE_UP), "ponder")
          for c in (calibration.policies if calibration is not None else ())],
    ]  # fmt: skip
    results = [run(policy, scaler) for policy, scaler in runs]
    calibrated = {c.name for c in calibration.policies} if calibration is not None else set()
    oracles = tuple(oracle_row(policy, result) for (policy, scaler), result
                    in zip(runs, results, strict=True)
                    if (scaler == "hpa" and policy.name in ("maj@1", "maj@16", default.name))
                    or policy.name in calibrated)  # fmt: skip
    peak = int(max(results[runs.index((default, "ponder"))].timeline[2].max(), 2))
    quotas = [("ponder", default.budget_policy or ponder, StopRule())]
    if calibration is not None:  # the first calibrated policy, its demand model fitted
        first = calibration.policies[0]
        quotas.append((first.name, first.policy, first.rule))
    quota = 0
    for prefix, budget_policy, rule in quotas:
        need = compute_oracle(calibration_workload(draw, FleetPolicy(
            prefix, budget_policy=budget_policy, stop_rule=rule)), config.replica,
            ORACLE_INTERVAL_SECONDS)  # fmt: skip
        cap = quota_for(need, trace.duration_seconds)
        quota = quota or cap
        own = budget_policy.shrink_order
        caps = tuple(s for s in own if s.resource is not ShrinkResource.AGREEMENT)
        agreement = ShrinkStep(resource=ShrinkResource.AGREEMENT, floor=AGREEMENT_FLOOR)
        for name, order, trigger in (
            ("noshrink", own, ShrinkTrigger.OFF),
            ("shrink", own, ShrinkTrigger.CEILING),
            ("shrink-agreement1st", (agreement, *caps), ShrinkTrigger.CEILING),
            ("shrink-tokens1st", tuple(reversed(caps)), ShrinkTrigger.CEILING),
        ):
            policy = FleetPolicy(f"{prefix}-quota{cap}-{name}", stop_rule=rule, shrink=trigger,
                                 budget_policy=budget_policy.model_copy(
                                     update={"shrink_order": order}))  # fmt: skip
            results.append(run(policy, "ponder", cap))
    summaries = tuple(summarize_fleet(r, gpu_hourly_price=price,
                                      slo_queue_wait_seconds=slo_wait_seconds)
                      for r in results)  # fmt: skip
    return FleetComparison(tuple(results), summaries, oracles, quota, peak, price, calibration)


QUOTA_OVERLOAD = 2.0
"""Demand over what the quota's replicas serve, in the GPU-quota scenario."""


def quota_for(oracle: OracleBound, duration_seconds: float) -> int:
    """K: the oracle's mean replicas over the trace's ``duration_seconds``, divided by
    ``QUOTA_OVERLOAD`` (at least one)."""
    intervals = max(1, math.ceil(duration_seconds / oracle.interval_seconds))
    need = oracle.replicas[:intervals]
    return max(1, round(float(need.mean()) / QUOTA_OVERLOAD)) if len(need) else 1


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


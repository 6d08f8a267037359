"""Every autoscaler on one workload, side by side, on the same capacity target.

Role: the orchestration the ``ponder simulate`` CLI and ``bench/bench_autoscaler.py``
share: derive the common ``CapacityTarget``, build the four autoscalers, replay each
(``engine``), compute the ``oracle`` and summarise (``report``).

Ponder's own settings here are its defaults for a GPU pool, not fitted to a trace: a
10 s scale-up window (two reads agree), a 120 s scale-down window, scale-down by at most
20 % (at least one replica) per 30 s, scale to zero after 300 s idle (as KEDA's cooldown).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from ponder_operator.policy.scaling import ScalingSpec

from .baselines import (
    CapacityTarget,
    HpaAutoscaler,
    KedaAutoscaler,
    PonderAutoscaler,
    derive_capacity_target,
)
from .engine import Autoscaler, SimConfig, SimResult, simulate
from .oracle import OracleBound, compute_oracle
from .report import PolicySummary, summarize
from .workload import Workload

POLICY_NAMES = ("ponder", "ponder-requests", "hpa", "keda")


@dataclass(frozen=True)
class Comparison:
    """The replays, the oracle and the summaries of one workload."""

    target: CapacityTarget
    oracle: OracleBound
    results: tuple[SimResult, ...]
    summaries: tuple[PolicySummary, ...]


def ponder_spec(target: CapacityTarget, config: SimConfig, max_replicas: int) -> ScalingSpec:
    """Ponder's ScalingSpec for ``target`` with its default damping (module docstring)."""
    return ScalingSpec(
        min_replicas=1,
        max_replicas=max_replicas,
        gpus_per_replica=config.replica.gpus_per_replica,
        scale_to_zero=True,
        idle_window_seconds=300.0,
        target_drain_seconds=target.drain_seconds,
        queue_per_replica=target.requests_per_replica,
        samples_per_replica=target.sequences_per_replica,
        throughput_prior_tokens_per_second=target.tokens_per_second_per_replica,
        scale_up_stabilization_seconds=10.0,
        scale_down_stabilization_seconds=300.0,
        scale_down_max_step_replicas=1,
        scale_down_max_step_percent=20.0,
        scale_down_period_seconds=30.0,
    )


def build_autoscalers(
    target: CapacityTarget,
    config: SimConfig,
    *,
    max_replicas: int = 64,
    names: Sequence[str] = POLICY_NAMES,
) -> list[Autoscaler]:
    """The named autoscalers, all on ``target``."""
    spec = ponder_spec(target, config, max_replicas)
    per_pod = target.requests_per_replica
    build: dict[str, Autoscaler] = {
        "ponder": PonderAutoscaler(spec),
        "ponder-requests": PonderAutoscaler(
            spec, name="ponder-requests", tokens_per_request=target.tokens_per_request,
            samples_per_request=target.samples_per_request),
        "hpa": HpaAutoscaler(per_pod, min_replicas=1, max_replicas=max_replicas),
        "keda": KedaAutoscaler(per_pod, max_replicas=max_replicas),
    }
    unknown = sorted(set(names) - set(build))
    if unknown:
        raise ValueError(f"unknown policies {unknown}; known: {', '.join(build)}")
    return [build[name] for name in names]


def run_comparison(
    workload: Workload,
    config: SimConfig,
    *,
    gpu_hourly_price: float,
    names: Sequence[str] = POLICY_NAMES,
    utilization: float = 0.75,
    max_replicas: int = 64,
    oracle_interval_seconds: float = 10.0,
    warm_start_seconds: float | None = 180.0,
) -> Comparison:
    """Replay ``workload`` under each named policy.

    With ``warm_start_seconds`` every replay starts with the oracle's largest pool of that
    first stretch of the trace (a pool already sized for the load, as if the service had
    been running before the trace starts) instead of ``config.initial_replicas``.
    """
    target = derive_capacity_target(workload, config.replica, utilization)
    oracle = compute_oracle(workload, config.replica, oracle_interval_seconds)
    if warm_start_seconds is not None and len(oracle.replicas):
        head = oracle.replicas[: max(1, int(warm_start_seconds // oracle_interval_seconds))]
        config = replace(config, initial_replicas=max(1, int(head.max())))
    results = tuple(
        simulate(workload, autoscaler, config)
        for autoscaler in build_autoscalers(target, config, max_replicas=max_replicas,
                                            names=names)
    )
    summaries = tuple(summarize(r, oracle, gpu_hourly_price) for r in results)
    return Comparison(target, oracle, results, summaries)

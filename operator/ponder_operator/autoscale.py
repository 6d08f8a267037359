"""The autoscaler's loop body: read signals, ask the policy, scale, account, report.

One ``tick`` per ReasoningService every ``spec.scaling.intervalSeconds`` (the kopf daemon
in ``handlers`` calls it). I/O only, and little of it: the children's state comes from the
watches' in-memory indexes (``views``), the signals from one shared Prometheus batch
(``adapters.prometheus.SignalCache``); the decision is ``policy.scaling``'s, the status is
``policy.status``'s, the cost is ``policy.cost``'s. The status is written only when it
changed (the GPU-seconds counter every ``cost_write_interval_seconds``: 30 s, longer when
many services share the operator).

- No Prometheus configured, or a failed or stale read, holds the replicas and sets
  ``Degraded``.
- ``spec.scaling.paused`` hands the replica count to the user: ``kubectl scale rsvc``
  writes ``spec.scaling.replicas``, which this loop applies.
- Each change of replicas is an Event and ``lastScaleTime``/``lastScaleReason``; a change
  of ``atCeiling`` is re-published to the router through its ConfigMap.
- GPU-seconds accumulate from ready replicas between ticks, resuming from the status, and
  are exported as ``ponder_gpu_seconds_total`` / ``ponder_cost_total`` (``metrics``).
- Before scaling, each Triton pod's ``pod-deletion-cost`` follows its load (``pod_costs``),
  so a scale-down removes the idlest pod.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import kopf

from ponder_operator import pod_costs
from ponder_operator.api.spec import ReasoningServiceSpec, parse_spec
from ponder_operator.api.status import (
    Condition,
    ConditionType,
    Reason,
    ReasoningServiceStatus,
    with_condition,
)
from ponder_operator.context import OperatorContext
from ponder_operator.errors import SpecError
from ponder_operator.policy import cost as cost_policy
from ponder_operator.policy import status as status_policy
from ponder_operator.policy.scaling import (
    ScaleDecision,
    ScalingSpec,
    ScalingState,
    Signals,
    compute_desired_replicas,
)
from ponder_operator.reconcile import Capacity, apply_router_config, owner_of, write_status
from ponder_operator.render import router_name, triton_name, triton_selector
from ponder_operator.settings import OperatorSettings
from ponder_operator.views import service_view

log = logging.getLogger(__name__)
COST_WRITE_SECONDS = 30.0
COST_WRITES_PER_SECOND = 5.0
"""The GPU-seconds in status are persisted every ``COST_WRITE_SECONDS``, but across all
services at most this often: a status write is an API write and a watch event for every
client, and at 1,000 services a 30-second cadence alone was 33 writes/s."""


def cost_write_interval_seconds(services: int) -> float:
    """How often one service persists its GPU-seconds when ``services`` share the operator."""
    return max(COST_WRITE_SECONDS, services / COST_WRITES_PER_SECOND)


@dataclass(frozen=True)
class LoopState:
    """What one service's loop remembers between ticks (lost on restart, by design)."""

    scaling: ScalingState | None = None
    last_tick_seconds: float | None = None
    last_cost_write_seconds: float = 0.0
    written: ReasoningServiceStatus | None = None


def interval_seconds(body: Mapping[str, Any]) -> float:
    scaling = (body.get("spec") or {}).get("scaling") or {}
    return float(scaling.get("intervalSeconds") or 5)


def scaling_spec(spec: ReasoningServiceSpec, settings: OperatorSettings) -> ScalingSpec:
    """The policy's view of the CRD's scaling block."""
    s = spec.scaling
    return ScalingSpec(
        min_replicas=s.min_replicas,
        max_replicas=s.max_replicas,
        max_gpus=s.max_gpus,
        gpus_per_replica=spec.resources.gpus_per_replica,
        scale_to_zero=s.scale_to_zero.enabled,
        idle_window_seconds=s.scale_to_zero.idle_window_seconds,
        target_drain_seconds=s.target_drain_seconds,
        queue_per_replica=s.target_queue_per_replica,
        throughput_prior_tokens_per_second=s.throughput_prior_tokens_per_second,
        scale_up_stabilization_seconds=s.scale_up_stabilization_seconds,
        scale_down_stabilization_seconds=s.scale_down_stabilization_seconds,
        scale_down_max_step_replicas=s.scale_down_max_step,
        scale_down_max_step_percent=float(s.scale_down_max_step_percent),
        scale_down_period_seconds=float(s.scale_down_period_seconds),
        samples_per_replica=(float(s.target_samples_per_replica)
                             if s.target_samples_per_replica is not None else None),
        metrics_max_age_seconds=settings.metrics_max_age_seconds,
        paused=s.paused,
    )


def _signals(
    context: OperatorContext, namespace: str, name: str, now_seconds: float
) -> Signals:
    cache = context.signals
    if cache is None:
        return Signals(read_ok=False, error="no Prometheus configured (PONDER_PROMETHEUS_URL)")
    return cache.signals(namespace, name, now_seconds)


def scaling_conditions(
    status: ReasoningServiceStatus, decision: ScaleDecision, current: int, desired: int,
    generation: int, now: datetime,
) -> tuple[Condition, ...]:
    def cond(type_: ConditionType, state: bool, reason: Reason, message: str) -> Condition:
        return Condition(type=type_, status="True" if state else "False", reason=reason,
                         message=message, last_transition_time=now,
                         observed_generation=generation)

    conditions = with_condition(status.conditions, cond(
        ConditionType.SCALING, desired != current, decision.reason,
        decision.message or f"{current} → {desired} replicas"))
    return with_condition(conditions, cond(
        ConditionType.DEGRADED, decision.degraded,
        decision.degraded_reason or Reason.AS_EXPECTED,
        decision.message if decision.degraded else "metrics are fresh"))


def _price(spec: ReasoningServiceSpec, context: OperatorContext) -> float | None:
    try:
        return cost_policy.gpu_hourly_price(spec, context.prices)
    except cost_policy.PricingError as exc:
        log.warning("no GPU price: %s", exc)
        return None


def _comparable(status: ReasoningServiceStatus) -> dict[str, Any]:
    """The status without the fields that change every tick (the cost counters)."""
    return status.model_dump(exclude={"gpu_seconds_total", "gpu_hours", "cost"})


def tick(
    body: kopf.Body, context: OperatorContext, indexes: Mapping[str, Any], loop: LoopState
) -> LoopState:
    """One pass of the loop; returns the memory for the next one."""
    kube, settings = context.kube, context.settings
    try:
        spec = parse_spec(body)
    except SpecError as exc:
        raise kopf.PermanentError(str(exc)) from exc
    owner = owner_of(body)
    view = service_view(indexes, owner.namespace, triton_name(owner), router_name(owner),
                        owner.name, spec.resources.gpu_product)
    if view.triton is None:
        return loop  # not reconciled yet, or not seen by the watch yet
    generation = int(body["metadata"].get("generation") or 0)
    now_seconds = time.time()
    now = datetime.fromtimestamp(now_seconds, UTC)
    seen = status_policy.observe(generation, view.triton, view.router, view.pods,
                                 view.gpu_product_known)
    current = seen.desired_replicas
    state = (loop.scaling or ScalingState(current_replicas=current)).model_copy(update={
        "current_replicas": current, "ready_replicas": seen.triton_ready,
        "pending_unschedulable_replicas": seen.unschedulable_pods,
    })
    signals = _signals(context, owner.namespace, owner.name, now_seconds)
    decision = compute_desired_replicas(scaling_spec(spec, settings), signals, state,
                                        now_seconds)
    desired = decision.desired_replicas
    if spec.scaling.paused and spec.scaling.replicas is not None:
        desired = spec.scaling.replicas  # the user's manual override (kubectl scale rsvc)

    previous = loop.written or ReasoningServiceStatus.model_validate(body.get("status") or {})
    status = status_policy.compute_status(previous, seen, triton_selector(owner), now)
    updates: dict[str, Any] = {
        "desired_replicas": desired, "at_ceiling": decision.at_ceiling,
        "conditions": scaling_conditions(status, decision, current, desired, generation, now),
    }
    loads = context.signals.pod_loads(owner.namespace) if context.signals is not None else None
    pod_costs.refresh(kube, owner.namespace, view.pods, loads)  # before a scale-down picks
    if desired != current:
        kube.scale_deployment(owner.namespace, triton_name(owner), desired)
        reason = Reason.PAUSED if spec.scaling.paused else decision.reason
        updates.update(last_scale_time=now, last_scale_reason=f"{reason}: {current} → {desired}")
        kopf.event(body, type="Normal", reason="Scaled",
                   message=f"{current} → {desired} Triton replicas ({reason}) "
                           f"{decision.message}".strip())
    elapsed = 0.0 if loop.last_tick_seconds is None else now_seconds - loop.last_tick_seconds
    updates.update(cost_policy.accumulate(
        previous, spec, ready_replicas=seen.triton_ready, elapsed_seconds=elapsed,
        price=_price(spec, context)).as_status_updates())
    new_status = status.model_copy(update=updates)

    last_cost_write = loop.last_cost_write_seconds
    cost_interval = cost_write_interval_seconds(len(indexes["services"]))
    cost_due = now_seconds - last_cost_write >= cost_interval
    persisted = (cost_due or loop.written is None
                 or _comparable(new_status) != _comparable(loop.written))
    if persisted:
        write_status(kube, owner, new_status)
        last_cost_write = now_seconds
    context.metrics.observe(owner.namespace, owner.name, spec, previous, new_status,
                            persisted=persisted, signals=signals)
    if bool(previous.at_ceiling) != decision.at_ceiling:
        apply_router_config(kube, owner, spec, Capacity(decision.at_ceiling, seen.triton_ready))
    return LoopState(scaling=decision.new_state, last_tick_seconds=now_seconds,
                     last_cost_write_seconds=last_cost_write, written=new_status)

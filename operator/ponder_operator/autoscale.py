"""The autoscaler's loop body: read signals, ask the policy, scale, account, report.

One ``tick`` per ReasoningService every ``spec.scaling.intervalSeconds`` (the kopf daemon
in ``handlers`` calls it). I/O only: the decision is ``policy.scaling``'s, the status is
``policy.status``'s, the cost is ``policy.cost``'s.

- Signals come from Prometheus (``adapters.prometheus``); no Prometheus configured, or a
  failed read, holds the replicas and sets ``Degraded``.
- ``spec.scaling.paused`` hands the replica count to the user: ``kubectl scale rsvc``
  writes ``spec.scaling.replicas``, which this loop applies.
- Each change of replicas is an Event and ``lastScaleTime``/``lastScaleReason``; a change
  of ``atCeiling`` is re-published to the router through its ConfigMap.
- GPU-seconds accumulate from ready replicas between ticks into the status (so the
  counters resume after a restart) and the ``ponder_gpu_seconds_total`` metric.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import kopf

from ponder_operator.adapters import prometheus as prom
from ponder_operator.adapters.kube import Kube
from ponder_operator.api.spec import ReasoningServiceSpec, parse_spec
from ponder_operator.api.status import (
    Condition,
    ConditionType,
    Reason,
    ReasoningServiceStatus,
    with_condition,
)
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
from ponder_operator.reconcile import (
    Capacity,
    apply_router_config,
    observe_children,
    owner_of,
    write_status,
)
from ponder_operator.render import triton_name, triton_selector
from ponder_operator.settings import OperatorSettings

log = logging.getLogger(__name__)


@dataclass
class LoopState:
    """What one service's loop remembers between ticks (lost on restart, by design)."""

    scaling: ScalingState | None = None
    last_tick_seconds: float | None = None
    prometheus: Any = field(default=None, repr=False)


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
        metrics_max_age_seconds=settings.metrics_max_age_seconds,
        paused=s.paused,
    )


def _read_signals(
    settings: OperatorSettings, loop: LoopState, namespace: str, name: str, now: float
) -> Signals:
    if not settings.prometheus_url:
        return Signals(read_ok=False, error="no Prometheus configured (PONDER_PROMETHEUS_URL)")
    if loop.prometheus is None:
        loop.prometheus = prom.connect(settings.prometheus_url,
                                       settings.prometheus_timeout_seconds)
    query = prom.SignalQuery(namespace, name, settings.metrics_max_age_seconds)
    return prom.fetch_signals(loop.prometheus, query, now)


def _conditions(
    status: ReasoningServiceStatus, decision: ScaleDecision, current: int, generation: int,
    now: datetime,
) -> tuple[Condition, ...]:
    def cond(type_: ConditionType, state: bool, reason: str, message: str) -> Condition:
        return Condition(type=type_, status="True" if state else "False", reason=reason,
                         message=message, last_transition_time=now,
                         observed_generation=generation)

    scaling = decision.desired_replicas != current
    conditions = with_condition(status.conditions, cond(
        ConditionType.SCALING, scaling, decision.reason,
        decision.message or f"{current} → {decision.desired_replicas} replicas"))
    conditions = with_condition(conditions, cond(
        ConditionType.DEGRADED, decision.degraded,
        decision.reason if decision.degraded else Reason.AS_EXPECTED,
        decision.message if decision.degraded else "metrics are fresh"))
    return conditions


def _price(spec: ReasoningServiceSpec, memo: Any) -> float | None:
    try:
        return cost_policy.gpu_hourly_price(spec, memo.get("prices"))
    except cost_policy.PricingError as exc:
        log.warning("no GPU price: %s", exc)
        return None


def tick(body: kopf.Body, memo: Any, loop: LoopState) -> LoopState:
    """One pass of the loop; returns the memory for the next one."""
    kube: Kube = memo["kube"]
    settings: OperatorSettings = memo["settings"]
    try:
        spec = parse_spec(body)
    except SpecError as exc:
        raise kopf.PermanentError(str(exc)) from exc
    owner = owner_of(body)
    generation = int(body["metadata"].get("generation") or 0)
    now_seconds = time.time()
    now = datetime.fromtimestamp(now_seconds, UTC)
    seen = observe_children(kube, owner, spec, generation)
    if kube.get("apps/v1", "Deployment", triton_name(owner), owner.namespace) is None:
        return loop  # not reconciled yet
    current = seen.desired_replicas
    previous_state = loop.scaling or ScalingState(current_replicas=current)
    state = previous_state.model_copy(update={
        "current_replicas": current, "ready_replicas": seen.triton_ready,
        "pending_unschedulable_replicas": seen.unschedulable_pods,
    })
    signals = _read_signals(settings, loop, owner.namespace, owner.name, now_seconds)
    decision = compute_desired_replicas(scaling_spec(spec, settings), signals, state,
                                        now_seconds)
    desired = decision.desired_replicas
    if spec.scaling.paused and spec.scaling.replicas is not None:
        desired = spec.scaling.replicas  # the user's manual override (kubectl scale rsvc)
    previous = ReasoningServiceStatus.model_validate(body.get("status") or {})
    status = status_policy.compute_status(previous, seen, triton_selector(owner), now)
    updates: dict[str, Any] = {
        "desired_replicas": desired,
        "at_ceiling": decision.at_ceiling,
        "selector": triton_selector(owner),
        "conditions": _conditions(status, decision, current, generation, now),
    }
    if desired != current:
        kube.scale_deployment(owner.namespace, triton_name(owner), desired)
        reason = decision.reason if not spec.scaling.paused else Reason.PAUSED
        updates.update(last_scale_time=now, last_scale_reason=f"{reason}: {current} → {desired}")
        kopf.info(body, reason="Scaled",
                  message=f"{current} → {desired} Triton replicas ({reason}) "
                          f"{decision.message}".strip())
    elapsed = 0.0 if loop.last_tick_seconds is None else now_seconds - loop.last_tick_seconds
    updates.update(cost_policy.accumulate(
        status, spec, ready_replicas=seen.triton_ready, elapsed_seconds=elapsed,
        price=_price(spec, memo)).as_status_updates())
    write_status(kube, owner, status.model_copy(update=updates))
    if bool(previous.at_ceiling) != decision.at_ceiling:
        apply_router_config(kube, owner, spec,
                            Capacity(decision.at_ceiling, seen.triton_ready))
    return LoopState(scaling=decision.new_state, last_tick_seconds=now_seconds,
                     prometheus=loop.prometheus)

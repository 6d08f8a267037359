"""Demand → replicas: the autoscaler's pure policy.

Role: the operator's autoscale timer reads the router's and Triton's metrics (adapter
``adapters.prometheus``), observes the Deployment's replicas (adapter ``adapters.kube``),
and calls ``compute_desired_replicas`` here; the trace-replay simulator (``ponder simulate``)
calls the same function. Pure: no clock (``now_seconds`` is an argument), no I/O, no logging.

The rule, in order:

1. ``paused`` holds the current replica count.
2. A failed, stale or contradictory read holds the current replica count (clamped only by the
   spec's own bounds) and reports what is wrong in ``degraded_reason`` (``MetricsUnavailable``,
   ``MetricsStale``, ``MetricsContradictory``): missing metrics never mean "no load", so a
   failed read never scales down and never scales to zero.
3. Raw recommendation: the replicas that drain the difficulty-weighted ``demand_tokens``
   within ``target_drain_seconds`` at the per-replica throughput (measured when the adapter
   has a measurement, the spec's prior otherwise), and at least the queue floor
   ``ceil(queued requests / queue_per_replica)`` and the batch floor
   ``ceil(in-flight samples / samples_per_replica)`` (the samples running now must keep
   fitting at the target batch size).
4. From zero, any queued demand activates the pool at once (no stabilization). With
   ``scale_to_zero``, a pool with no demand for ``idle_window_seconds`` goes to zero, even
   above ``min_replicas`` (which is the floor while the pool is active); with
   ``min_replicas`` 0 it may also reach zero through the ordinary scale-down.
5. Stabilization as Kubernetes' HPA does it: the result is the current count pulled up to
   the *minimum* raw recommendation of the (short) scale-up window and down to the *maximum*
   of the (long) scale-down window. Only recommendations made with an empty queue are
   remembered: a backlog is drained once, it is not load that recurs, so the replicas
   bought to drain it are not held for a whole window after it is gone. Scale-down then
   moves at most ``max(scale_down_max_step_replicas, scale_down_max_step_percent % of
   current)`` replicas per ``scale_down_period_seconds`` (counted from the last change);
   scale-up is not rate limited.
6. Clamps: ``min_replicas``, ``max_replicas`` and the GPU quota ``max_gpus``.
7. GPU capacity: while pods are Pending-Unschedulable the pool does not grow past what it
   already asked for, and unschedulable pods that demand no longer needs go first and at
   once (they hold no GPU, so removing them loses no capacity). Growth resumes when the
   pending pods schedule.

Every reason is a member of ``api.conditions.Reason``: ``ScaleDecision.reason`` is the Scaling
condition's, ``degraded_reason`` the Degraded condition's. ``ScaleDecision.at_ceiling`` tells
the router the pool cannot grow (max replicas, GPU quota or unschedulable pods), so its
load-aware budgets know shrinking budgets is the only relief.
"""

from __future__ import annotations

import math
from typing import Final

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ponder_operator.api.conditions import Reason

_EPSILON: Final = 1e-9


class ScalingSpec(BaseModel):
    """How one pool scales: bounds, targets and damping (mirrors the CRD's autoscaling block)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    min_replicas: int = Field(1, ge=0, description="floor while the pool is active")
    max_replicas: int = Field(8, ge=1)
    max_gpus: int | None = Field(None, ge=1, description="GPU quota of the pool; None = none")
    gpus_per_replica: int = Field(1, ge=1)
    scale_to_zero: bool = Field(False, description="go to zero after idle_window_seconds idle")
    idle_window_seconds: float = Field(300.0, ge=0.0)
    target_drain_seconds: float = Field(30.0, gt=0.0, description="time to drain the demand")
    queue_per_replica: float = Field(8.0, gt=0.0, description="queued requests per replica")
    samples_per_replica: float | None = Field(
        None, gt=0.0, description="target concurrent samples per replica; None = no floor"
    )
    throughput_prior_tokens_per_second: float = Field(
        2000.0, gt=0.0,
        description="per-replica throughput when the signals carry no measured one",
    )
    scale_up_stabilization_seconds: float = Field(0.0, ge=0.0)
    scale_down_stabilization_seconds: float = Field(300.0, ge=0.0)
    scale_down_max_step_replicas: int = Field(1, ge=1)
    scale_down_max_step_percent: float = Field(0.0, ge=0.0, le=100.0)
    scale_down_period_seconds: float = Field(60.0, ge=0.0)
    metrics_max_age_seconds: float = Field(60.0, gt=0.0, description="older reads are stale")
    paused: bool = False

    @model_validator(mode="after")
    def _bounds_agree(self) -> ScalingSpec:
        if self.min_replicas > self.max_replicas:
            raise ValueError(
                f"min_replicas ({self.min_replicas}) exceeds max_replicas ({self.max_replicas})"
            )
        if self.max_gpus is not None and self.max_gpus < self.gpus_per_replica:
            raise ValueError(
                f"max_gpus ({self.max_gpus}) cannot fit one replica of "
                f"{self.gpus_per_replica} GPUs"
            )
        return self

    @property
    def ceiling_replicas(self) -> int:
        """The most replicas the spec allows: ``max_replicas`` or the GPU quota if lower."""
        if self.max_gpus is None:
            return self.max_replicas
        return min(self.max_replicas, self.max_gpus // self.gpus_per_replica)


class Signals(BaseModel):
    """One read of the load metrics, as the adapter got it (failures included).

    Counts are not bounded here on purpose: a negative or non-finite value is a
    contradictory read the policy must see and hold on, not a reason to fail the loop.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    demand_tokens: float | None = Field(None, description="ponder_router_demand_tokens")
    router_queue_depth: float | None = Field(None, description="ponder_router_queue_depth")
    inflight_samples: float | None = Field(None, description="ponder_router_inflight_samples")
    triton_pending_requests: float | None = Field(
        None, description="requests waiting in the Triton pods, summed over pods: "
                          "nv_inference_pending_request_count plus the vLLM engines' "
                          "vllm:num_requests_waiting"
    )
    measured_tokens_per_second_per_replica: float | None = Field(
        None, description="observed per-replica capacity while saturated (the vLLM "
                          "engines' generation-token rate while requests wait in them); "
                          "None = use the prior"
    )
    sampled_at_seconds: float | None = Field(None, description="when the values were sampled")
    read_ok: bool = Field(True, description="False when the query failed")
    stale: bool = Field(False, description="True when the source marked the series stale")
    error: str = Field("", description="what went wrong, when read_ok is False")


class ScalingState(BaseModel):
    """What the policy remembers between calls, plus the replicas observed now."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    current_replicas: int = Field(ge=0, description="the scale target's spec.replicas")
    ready_replicas: int = Field(0, ge=0)
    pending_unschedulable_replicas: int = Field(0, ge=0)
    recommendations: tuple[tuple[float, int], ...] = Field(
        (), description="(time_seconds, raw replicas) inside the stabilization windows"
    )
    last_scale_time_seconds: float | None = None
    last_active_time_seconds: float | None = None


class ScaleDecision(BaseModel):
    """The policy's answer: how many replicas, why, and what to tell the router and status."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    desired_replicas: int = Field(ge=0)
    raw_replicas: int = Field(ge=0, description="recommendation before damping and clamps")
    reason: Reason = Field(description="the Scaling condition's reason")
    message: str = ""
    degraded_reason: Reason | None = Field(
        None, description="the Degraded condition's reason while the metrics cannot be trusted")
    unschedulable: bool = False
    at_ceiling: bool = False
    new_state: ScalingState

    @property
    def degraded(self) -> bool:
        """Whether the replicas are held because the metrics cannot be trusted."""
        return self.degraded_reason is not None


_DEGRADED_REASONS: Final = {
    Reason.HELD_MISSING_METRICS: Reason.METRICS_UNAVAILABLE,
    Reason.HELD_STALE_METRICS: Reason.METRICS_STALE,
    Reason.HELD_CONTRADICTORY_METRICS: Reason.METRICS_CONTRADICTORY,
}
"""What is wrong with the metrics (Degraded) for each way of holding on them (Scaling)."""


def compute_desired_replicas(
    spec: ScalingSpec, signals: Signals, state: ScalingState, now_seconds: float
) -> ScaleDecision:
    """The replicas the pool should run now; see the module docstring for the rule."""
    current = state.current_replicas
    pending = min(state.pending_unschedulable_replicas, current)
    unschedulable = pending > 0
    ceiling = spec.ceiling_replicas

    if spec.paused:
        return ScaleDecision(
            desired_replicas=current, raw_replicas=current, reason=Reason.PAUSED,
            message="autoscaling is paused", unschedulable=unschedulable,
            at_ceiling=current >= ceiling or unschedulable, new_state=state,
        )

    problem = _signal_problem(spec, signals, now_seconds)
    if problem is not None:
        reason, message = problem
        held = current if current == 0 else min(max(current, spec.min_replicas), ceiling)
        return ScaleDecision(
            desired_replicas=held, raw_replicas=held, reason=reason, message=message,
            degraded_reason=_DEGRADED_REASONS[reason], unschedulable=unschedulable,
            at_ceiling=held >= ceiling or unschedulable,
            # Unknown load counts as activity: the idle clock must not run through an outage.
            new_state=_next_state(spec, state, held, now_seconds, active=True, record=None),
        )

    demand = signals.demand_tokens or 0.0
    queued = (signals.router_queue_depth or 0.0) + (signals.triton_pending_requests or 0.0)
    active = demand > 0.0 or queued > 0.0 or (signals.inflight_samples or 0.0) > 0.0
    throughput = signals.measured_tokens_per_second_per_replica
    if throughput is None or throughput <= 0.0:
        throughput = spec.throughput_prior_tokens_per_second
    demand_replicas = _ceil(demand / (throughput * spec.target_drain_seconds))
    queue_replicas = _ceil(queued / spec.queue_per_replica)
    batch_replicas = (
        0 if spec.samples_per_replica is None
        else _ceil((signals.inflight_samples or 0.0) / spec.samples_per_replica)
    )
    raw = max(demand_replicas, queue_replicas, batch_replicas)
    load = f"demand of {demand:.0f} tokens and {queued:.0f} queued"

    def decide(desired: int, reason: Reason, message: str) -> ScaleDecision:
        return ScaleDecision(
            desired_replicas=desired, raw_replicas=raw, reason=reason, message=message,
            unschedulable=unschedulable,
            at_ceiling=desired >= ceiling or (unschedulable and raw >= desired),
            new_state=_next_state(spec, state, desired, now_seconds, active=active,
                                  record=raw if queued <= 0.0 else None),
        )

    if current == 0 and active:
        desired = min(max(raw, spec.min_replicas, 1), ceiling)
        return decide(desired, Reason.ACTIVATE_FROM_ZERO, f"{load}; activating {desired}")
    if current == 0 and (spec.scale_to_zero or spec.min_replicas == 0):
        return decide(0, Reason.STABLE, "idle at zero replicas")
    if current < spec.min_replicas:
        return decide(spec.min_replicas, Reason.AT_MIN_REPLICAS,
                      f"below min_replicas; raising to {spec.min_replicas}")
    last_active = state.last_active_time_seconds
    idle_seconds = math.inf if last_active is None else now_seconds - last_active
    if (spec.scale_to_zero and not active and not unschedulable
            and idle_seconds >= spec.idle_window_seconds):
        return decide(0, Reason.SCALE_TO_ZERO,
                      f"no demand for {spec.idle_window_seconds:.0f}s; scaling to zero")

    stabilized = stabilize_recommendation(
        state.recommendations, raw, current, now_seconds,
        up_window_seconds=spec.scale_up_stabilization_seconds,
        down_window_seconds=spec.scale_down_stabilization_seconds,
    )
    floor = max(spec.min_replicas, 1 if active else 0)  # running work keeps one replica
    desired = min(max(stabilized, floor), ceiling)
    capped_reason = (
        Reason.AT_GPU_QUOTA if spec.max_gpus is not None and ceiling < spec.max_replicas
        else Reason.AT_MAX_REPLICAS
    )

    if unschedulable:
        if desired >= current:
            return decide(current, Reason.UNSCHEDULABLE,
                          f"{pending} replicas Pending-Unschedulable; not growing until they fit")
        # Unschedulable pods hold no GPU: the ones demand no longer needs go at once, before
        # any running replica is touched.
        needed = min(max(raw, floor), ceiling)
        without_spare_pending = max(needed, current - pending)
        stepped = without_spare_pending
        if desired < current - pending:
            stepped = _step_down(spec, state, current, desired, now_seconds,
                                 start=without_spare_pending)
        return decide(stepped, Reason.UNSCHEDULABLE,
                      f"{pending} replicas Pending-Unschedulable; {load} need {needed}")

    if current > ceiling:
        return decide(ceiling, capped_reason, f"above the ceiling of {ceiling} replicas")
    if desired > current:
        if stabilized > ceiling:
            return decide(desired, capped_reason, f"{load} need {stabilized}; capped at {ceiling}")
        reason = Reason.QUEUE_FLOOR if queue_replicas > demand_replicas else Reason.DEMAND_INCREASE
        return decide(desired, reason, f"{load} need {desired}")
    if desired < current:
        stepped = _step_down(spec, state, current, desired, now_seconds, start=current)
        if stepped == current:
            return decide(current, Reason.STABLE, f"scale-down to {desired} waits for its step")
        if stepped == 0:
            return decide(0, Reason.SCALE_TO_ZERO, "no demand and min_replicas is 0")
        return decide(stepped, Reason.DEMAND_DECREASE, f"{load} need {desired}; now {stepped}")
    if raw > ceiling:
        return decide(current, capped_reason, f"{load} need {raw}; capped at {ceiling}")
    return decide(current, Reason.STABLE, f"{current} replicas match the {load}")


def stabilize_recommendation(
    history: tuple[tuple[float, int], ...],
    recommendation: int,
    current_replicas: int,
    now_seconds: float,
    *,
    up_window_seconds: float,
    down_window_seconds: float,
) -> int:
    """HPA's stabilization: ``current`` pulled into [min of up window, max of down window].

    ``history`` holds earlier raw recommendations as ``(time_seconds, replicas)``; the new
    ``recommendation`` takes part too. As in kube-controller-manager, scaling up follows the
    lowest recommendation of the last ``up_window_seconds`` and scaling down the highest of
    the last ``down_window_seconds``, so a brief dip or spike does not move the pool.
    """
    up_limit = recommendation
    down_limit = recommendation
    up_cutoff = now_seconds - up_window_seconds
    down_cutoff = now_seconds - down_window_seconds
    for time_seconds, replicas in history:
        if time_seconds > up_cutoff:
            up_limit = min(up_limit, replicas)
        if time_seconds > down_cutoff:
            down_limit = max(down_limit, replicas)
    return min(max(current_replicas, up_limit), down_limit)


def prune_recommendations(
    history: tuple[tuple[float, int], ...], now_seconds: float, keep_seconds: float
) -> tuple[tuple[float, int], ...]:
    """``history`` without entries older than ``keep_seconds`` (they can no longer count)."""
    cutoff = now_seconds - keep_seconds
    return tuple(entry for entry in history if entry[0] > cutoff)


def _signal_problem(
    spec: ScalingSpec, signals: Signals, now_seconds: float
) -> tuple[Reason, str] | None:
    """Why this read cannot be trusted, as ``(reason, message)``; None when it can."""
    if not signals.read_ok:
        detail = f": {signals.error}" if signals.error else ""
        return Reason.HELD_MISSING_METRICS, f"metrics read failed{detail}; holding replicas"
    if signals.demand_tokens is None or signals.router_queue_depth is None:
        return Reason.HELD_MISSING_METRICS, "demand or queue depth missing; holding replicas"
    if signals.stale or signals.sampled_at_seconds is None:
        return Reason.HELD_STALE_METRICS, "metrics marked stale; holding replicas"
    age = now_seconds - signals.sampled_at_seconds
    if age > spec.metrics_max_age_seconds:
        return Reason.HELD_STALE_METRICS, (
            f"metrics are {age:.0f}s old (limit {spec.metrics_max_age_seconds:.0f}s); "
            "holding replicas")
    values = (
        signals.demand_tokens, signals.router_queue_depth, signals.inflight_samples,
        signals.triton_pending_requests, signals.measured_tokens_per_second_per_replica,
    )
    if any(v is not None and (not math.isfinite(v) or v < 0.0) for v in values):
        return Reason.HELD_CONTRADICTORY_METRICS, "negative or non-finite metric; holding replicas"
    if signals.router_queue_depth > 0.0 and signals.demand_tokens <= 0.0:
        return Reason.HELD_CONTRADICTORY_METRICS, (
            "requests are queued but demand is zero; holding replicas")
    router_idle = (
        signals.demand_tokens <= 0.0 and signals.router_queue_depth <= 0.0
        and not signals.inflight_samples
    )
    if router_idle and (signals.triton_pending_requests or 0.0) > 0.0:
        return Reason.HELD_CONTRADICTORY_METRICS, (
            "router reports no load but Triton has pending requests; holding replicas")
    return None


def _step_down(
    spec: ScalingSpec, state: ScalingState, current: int, desired: int, now_seconds: float,
    *, start: int,
) -> int:
    """From ``start`` towards ``desired`` by at most one scale-down step, once per period."""
    last = state.last_scale_time_seconds
    if last is not None and now_seconds - last < spec.scale_down_period_seconds:
        return start
    step = max(spec.scale_down_max_step_replicas,
               _ceil(current * spec.scale_down_max_step_percent / 100.0))
    return max(desired, start - step)


def _next_state(
    spec: ScalingSpec, state: ScalingState, desired: int, now_seconds: float, *,
    active: bool, record: int | None,
) -> ScalingState:
    history = state.recommendations
    if record is not None:
        history = (*history, (now_seconds, record))
    keep_seconds = max(spec.scale_up_stabilization_seconds, spec.scale_down_stabilization_seconds)
    scaled = desired != state.current_replicas
    return state.model_copy(update={
        "current_replicas": desired,
        "recommendations": prune_recommendations(history, now_seconds, keep_seconds),
        "last_scale_time_seconds": now_seconds if scaled else state.last_scale_time_seconds,
        "last_active_time_seconds": now_seconds if active else state.last_active_time_seconds,
    })


def _ceil(value: float) -> int:
    """``ceil`` that ignores float noise (1.0000000001 is 1) and never goes below zero."""
    return max(0, math.ceil(value - _EPSILON))

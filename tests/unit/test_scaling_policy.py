"""The autoscaler's pure policy: every branch of ``compute_desired_replicas``, as a table.

Each case is a spec, one read of the metrics and the remembered state at a given time;
the expected outcome is the replica count, the reason and the flags the operator would
publish. Unless a case says otherwise, one replica drains 10,000 demand tokens in the
target time (1,000 tokens/s for 10 s), windows are off and scale-down may remove one
replica per call.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Any

import pytest
from pydantic import ValidationError

from ponder_operator.api.conditions import CONDITION_REASONS, ConditionType, Reason
from ponder_operator.api.spec import ReasoningServiceSpec
from ponder_operator.autoscale import scaling_spec
from ponder_operator.policy.scaling import (
    ScaleDecision,
    ScalingSpec,
    ScalingState,
    Signals,
    compute_desired_replicas,
    prune_recommendations,
    stabilize_recommendation,
)
from ponder_operator.settings import OperatorSettings

NOW = 10_000.0
SCALING_REASONS = CONDITION_REASONS[ConditionType.SCALING]
BASE_SPEC: dict[str, Any] = {
    "min_replicas": 1,
    "max_replicas": 10,
    "throughput_prior_tokens_per_second": 1000.0,
    "target_drain_seconds": 10.0,
    "queue_per_replica": 5.0,
    "scale_up_stabilization_seconds": 0.0,
    "scale_down_stabilization_seconds": 0.0,
    "scale_down_max_step_replicas": 1,
    "scale_down_period_seconds": 0.0,
    "idle_window_seconds": 300.0,
}
BASE_SIGNALS: dict[str, Any] = {
    "demand_tokens": 30_000.0,
    "router_queue_depth": 0.0,
    "inflight_samples": 12.0,
    "sampled_at_seconds": NOW,
}
BASE_STATE: dict[str, Any] = {
    "current_replicas": 3,
    "ready_replicas": 3,
    "last_active_time_seconds": NOW - 5.0,
}


@dataclass(frozen=True)
class Case:
    name: str
    desired: int
    reason: str
    spec: dict[str, Any] = field(default_factory=dict)
    signals: dict[str, Any] = field(default_factory=dict)
    state: dict[str, Any] = field(default_factory=dict)
    degraded: bool = False
    unschedulable: bool = False
    at_ceiling: bool = False


def decide(case: Case) -> ScaleDecision:
    return compute_desired_replicas(
        ScalingSpec(**{**BASE_SPEC, **case.spec}),
        Signals(**{**BASE_SIGNALS, **case.signals}),
        ScalingState(**{**BASE_STATE, **case.state}),
        NOW,
    )


CASES = [
    # -- steady state and growth --------------------------------------------------------
    Case("should hold when the demand needs exactly the current replicas", 3, Reason.STABLE),
    Case("should scale up to drain the demand within the target time", 5,
         Reason.DEMAND_INCREASE, signals={"demand_tokens": 45_000.0}),
    Case("should raise replicas to the queue floor when many requests wait", 6,
         Reason.QUEUE_FLOOR, signals={"demand_tokens": 30_000.0, "router_queue_depth": 28.0}),
    Case("should count Triton pending requests in the queue floor", 6, Reason.QUEUE_FLOOR,
         signals={"router_queue_depth": 20.0, "triton_pending_requests": 8.0}),
    Case("should keep the running samples at the target batch size", 4,
         Reason.DEMAND_INCREASE, spec={"samples_per_replica": 10.0},
         signals={"inflight_samples": 40.0}),
    Case("should use the measured throughput instead of the prior", 2, Reason.DEMAND_DECREASE,
         signals={"measured_tokens_per_second_per_replica": 2000.0}),
    Case("should ignore a measured throughput of zero and use the prior", 3, Reason.STABLE,
         signals={"measured_tokens_per_second_per_replica": 0.0}),
    # -- ceilings -----------------------------------------------------------------------
    Case("should stop at max replicas and say the pool is at its ceiling", 10,
         Reason.AT_MAX_REPLICAS, signals={"demand_tokens": 500_000.0}, at_ceiling=True),
    Case("should stop at the GPU quota when it is below max replicas", 4, Reason.AT_GPU_QUOTA,
         spec={"max_gpus": 8, "gpus_per_replica": 2}, signals={"demand_tokens": 90_000.0},
         at_ceiling=True),
    Case("should hold at the ceiling while the demand still exceeds it", 10,
         Reason.AT_MAX_REPLICAS, signals={"demand_tokens": 500_000.0},
         state={"current_replicas": 10}, at_ceiling=True),
    Case("should come down to a lowered max replicas at once", 4, Reason.AT_MAX_REPLICAS,
         spec={"max_replicas": 4}, state={"current_replicas": 7}, at_ceiling=True),
    # -- scale-down damping ---------------------------------------------------------------
    Case("should scale down one step when the demand falls", 5, Reason.DEMAND_DECREASE,
         state={"current_replicas": 6}),
    Case("should scale down by the step percent when it allows more than the step", 3,
         Reason.DEMAND_DECREASE, spec={"scale_down_max_step_percent": 50.0},
         state={"current_replicas": 6}),
    Case("should not scale down before the step period has passed", 6, Reason.STABLE,
         spec={"scale_down_period_seconds": 60.0},
         state={"current_replicas": 6, "last_scale_time_seconds": NOW - 30.0}),
    Case("should hold the highest recommendation of the scale-down window", 6, Reason.STABLE,
         spec={"scale_down_stabilization_seconds": 300.0},
         state={"current_replicas": 6, "recommendations": ((NOW - 200.0, 6),)}),
    Case("should scale down once the high recommendation leaves the window", 5,
         Reason.DEMAND_DECREASE, spec={"scale_down_stabilization_seconds": 300.0},
         state={"current_replicas": 6, "recommendations": ((NOW - 400.0, 6),)}),
    Case("should not scale down below min replicas", 2, Reason.STABLE,
         spec={"min_replicas": 2}, signals={"demand_tokens": 100.0},
         state={"current_replicas": 2}),
    # -- scale-up damping -----------------------------------------------------------------
    Case("should wait for the scale-up window to agree before scaling up", 3, Reason.STABLE,
         spec={"scale_up_stabilization_seconds": 30.0},
         signals={"demand_tokens": 80_000.0},
         state={"recommendations": ((NOW - 10.0, 3),)}),
    Case("should scale up to the lowest recommendation of the scale-up window", 6,
         Reason.DEMAND_INCREASE, spec={"scale_up_stabilization_seconds": 30.0},
         signals={"demand_tokens": 80_000.0},
         state={"recommendations": ((NOW - 10.0, 6), (NOW - 40.0, 3))}),
    # -- zero -----------------------------------------------------------------------------
    Case("should activate from zero as soon as a request is queued", 1,
         Reason.ACTIVATE_FROM_ZERO,
         signals={"demand_tokens": 500.0, "router_queue_depth": 1.0, "inflight_samples": 0.0},
         state={"current_replicas": 0, "ready_replicas": 0}),
    Case("should activate from zero straight to what the demand needs", 7,
         Reason.ACTIVATE_FROM_ZERO, spec={"scale_up_stabilization_seconds": 60.0},
         signals={"demand_tokens": 70_000.0, "router_queue_depth": 9.0},
         state={"current_replicas": 0, "ready_replicas": 0}),
    Case("should activate from zero to at least min replicas", 2, Reason.ACTIVATE_FROM_ZERO,
         spec={"min_replicas": 2, "scale_to_zero": True},
         signals={"demand_tokens": 500.0, "router_queue_depth": 1.0},
         state={"current_replicas": 0, "ready_replicas": 0}),
    Case("should stay at zero while idle when scale to zero is on", 0, Reason.STABLE,
         spec={"scale_to_zero": True},
         signals={"demand_tokens": 0.0, "inflight_samples": 0.0},
         state={"current_replicas": 0, "ready_replicas": 0}),
    Case("should stay at zero while idle when min replicas is zero", 0, Reason.STABLE,
         spec={"min_replicas": 0}, signals={"demand_tokens": 0.0, "inflight_samples": 0.0},
         state={"current_replicas": 0, "ready_replicas": 0}),
    Case("should raise an empty pool to min replicas when scale to zero is off", 1,
         Reason.AT_MIN_REPLICAS, signals={"demand_tokens": 0.0, "inflight_samples": 0.0},
         state={"current_replicas": 0, "ready_replicas": 0}),
    Case("should scale to zero after the idle window", 0, Reason.SCALE_TO_ZERO,
         spec={"scale_to_zero": True, "min_replicas": 2},
         signals={"demand_tokens": 0.0, "inflight_samples": 0.0},
         state={"current_replicas": 2, "last_active_time_seconds": NOW - 301.0}),
    Case("should not scale to zero inside the idle window", 2, Reason.STABLE,
         spec={"scale_to_zero": True, "min_replicas": 2},
         signals={"demand_tokens": 0.0, "inflight_samples": 0.0},
         state={"current_replicas": 2, "last_active_time_seconds": NOW - 100.0}),
    Case("should not scale to zero while samples still run", 1, Reason.STABLE,
         spec={"scale_to_zero": True},
         signals={"demand_tokens": 0.0, "inflight_samples": 2.0},
         state={"current_replicas": 1, "last_active_time_seconds": NOW - 900.0}),
    Case("should reach zero through scale-down when min replicas is zero", 0,
         Reason.SCALE_TO_ZERO, spec={"min_replicas": 0},
         signals={"demand_tokens": 0.0, "inflight_samples": 0.0},
         state={"current_replicas": 1}),
    Case("should keep one replica for running samples even with min replicas zero", 1,
         Reason.STABLE, spec={"min_replicas": 0},
         signals={"demand_tokens": 0.0, "inflight_samples": 3.0},
         state={"current_replicas": 1}),
    # -- GPU capacity -----------------------------------------------------------------------
    Case("should not grow while replicas are Pending-Unschedulable", 5, Reason.UNSCHEDULABLE,
         signals={"demand_tokens": 90_000.0},
         state={"current_replicas": 5, "ready_replicas": 3,
                "pending_unschedulable_replicas": 2},
         unschedulable=True, at_ceiling=True),
    Case("should drop unschedulable replicas the demand no longer needs at once", 3,
         Reason.UNSCHEDULABLE, spec={"scale_down_stabilization_seconds": 0.0},
         state={"current_replicas": 5, "pending_unschedulable_replicas": 2,
                "last_scale_time_seconds": NOW - 1.0},
         unschedulable=True, at_ceiling=True),
    Case("should keep unschedulable replicas the demand still needs", 4, Reason.UNSCHEDULABLE,
         signals={"demand_tokens": 40_000.0},
         state={"current_replicas": 5, "pending_unschedulable_replicas": 2},
         unschedulable=True, at_ceiling=True),
    Case("should drop every unschedulable replica, then step running ones down", 2,
         Reason.UNSCHEDULABLE, signals={"demand_tokens": 5_000.0},
         state={"current_replicas": 5, "pending_unschedulable_replicas": 2},
         unschedulable=True),
    Case("should resume growing once the pending replicas schedule", 9, Reason.DEMAND_INCREASE,
         signals={"demand_tokens": 90_000.0},
         state={"current_replicas": 5, "ready_replicas": 3,
                "pending_unschedulable_replicas": 0}),
    # -- fail safe --------------------------------------------------------------------------
    Case("should hold replicas when the metrics query failed", 3, Reason.HELD_MISSING_METRICS,
         signals={"read_ok": False, "error": "connection refused"}, degraded=True),
    Case("should hold replicas when the demand series is missing", 3,
         Reason.HELD_MISSING_METRICS, signals={"demand_tokens": None}, degraded=True),
    Case("should hold replicas when the queue series is missing", 3,
         Reason.HELD_MISSING_METRICS, signals={"router_queue_depth": None}, degraded=True),
    Case("should hold replicas when the source marks the series stale", 3,
         Reason.HELD_STALE_METRICS, signals={"stale": True}, degraded=True),
    Case("should hold replicas when the sample time is unknown", 3, Reason.HELD_STALE_METRICS,
         signals={"sampled_at_seconds": None}, degraded=True),
    Case("should hold replicas when the metrics are older than the limit", 3,
         Reason.HELD_STALE_METRICS, signals={"sampled_at_seconds": NOW - 61.0},
         degraded=True),
    Case("should hold replicas on a negative metric", 3, Reason.HELD_CONTRADICTORY_METRICS,
         signals={"router_queue_depth": -1.0}, degraded=True),
    Case("should hold replicas on a non-finite metric", 3, Reason.HELD_CONTRADICTORY_METRICS,
         signals={"demand_tokens": math.nan}, degraded=True),
    Case("should hold replicas when requests are queued but demand is zero", 3,
         Reason.HELD_CONTRADICTORY_METRICS,
         signals={"demand_tokens": 0.0, "router_queue_depth": 4.0}, degraded=True),
    Case("should hold replicas when the router is idle but Triton has pending work", 3,
         Reason.HELD_CONTRADICTORY_METRICS,
         signals={"demand_tokens": 0.0, "inflight_samples": 0.0,
                  "triton_pending_requests": 3.0}, degraded=True),
    Case("should never scale to zero on a failed read", 2, Reason.HELD_MISSING_METRICS,
         spec={"scale_to_zero": True},
         signals={"read_ok": False},
         state={"current_replicas": 2, "last_active_time_seconds": NOW - 3600.0},
         degraded=True),
    Case("should keep an empty pool empty on a failed read", 0, Reason.HELD_MISSING_METRICS,
         spec={"scale_to_zero": True}, signals={"read_ok": False},
         state={"current_replicas": 0, "ready_replicas": 0}, degraded=True),
    Case("should still respect a lowered max replicas on a failed read", 4,
         Reason.HELD_MISSING_METRICS, spec={"max_replicas": 4}, signals={"read_ok": False},
         state={"current_replicas": 6}, degraded=True, at_ceiling=True),
    # -- paused ---------------------------------------------------------------------------
    Case("should keep the current replicas while paused", 3, Reason.PAUSED,
         spec={"paused": True}, signals={"demand_tokens": 90_000.0}),
    Case("should keep the current replicas while paused even if the read failed", 3,
         Reason.PAUSED, spec={"paused": True}, signals={"read_ok": False}),
]


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_compute_desired_replicas(case: Case) -> None:
    decision = decide(case)
    assert (decision.desired_replicas, decision.reason) == (case.desired, case.reason)
    assert decision.degraded is case.degraded
    assert decision.unschedulable is case.unschedulable
    assert decision.at_ceiling is case.at_ceiling
    assert decision.reason in SCALING_REASONS
    assert decision.new_state.current_replicas == decision.desired_replicas


def test_every_reason_is_a_valid_kubernetes_condition_reason() -> None:
    import re

    pattern = re.compile(r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$")
    assert all(pattern.match(reason) for reason in SCALING_REASONS)
    assert len(set(SCALING_REASONS)) == len(SCALING_REASONS)


def test_every_reason_is_reached_by_some_case() -> None:
    assert {case.reason for case in CASES} == set(SCALING_REASONS)


def test_a_decision_records_its_raw_recommendation_for_the_windows() -> None:
    decision = decide(Case("", 5, "", spec={"scale_down_stabilization_seconds": 300.0},
                           signals={"demand_tokens": 45_000.0}))
    assert decision.raw_replicas == 5
    assert decision.new_state.recommendations[-1] == (NOW, 5)


def test_a_recommendation_made_while_requests_wait_is_not_remembered() -> None:
    decision = decide(Case("", 6, "", spec={"scale_down_stabilization_seconds": 300.0},
                           signals={"router_queue_depth": 28.0},
                           state={"recommendations": ((NOW - 60.0, 3),)}))
    assert decision.desired_replicas == 6
    assert decision.new_state.recommendations == ((NOW - 60.0, 3),)


def test_a_failed_read_records_no_recommendation_and_keeps_the_idle_clock_still() -> None:
    decision = decide(Case("", 3, "", signals={"read_ok": False}))
    assert decision.new_state.recommendations == ()
    assert decision.new_state.last_active_time_seconds == NOW


def test_the_scale_time_moves_only_when_the_replicas_change() -> None:
    held = decide(Case("", 3, "", state={"last_scale_time_seconds": 5.0}))
    grown = decide(Case("", 5, "", signals={"demand_tokens": 45_000.0},
                        state={"last_scale_time_seconds": 5.0}))
    assert held.new_state.last_scale_time_seconds == 5.0
    assert grown.new_state.last_scale_time_seconds == NOW


def test_the_idle_clock_starts_when_the_demand_stops() -> None:
    idle = decide(Case("", 1, "", signals={"demand_tokens": 0.0, "inflight_samples": 0.0},
                       state={"last_active_time_seconds": 42.0}))
    assert idle.new_state.last_active_time_seconds == 42.0


def test_old_recommendations_are_pruned_beyond_the_longest_window() -> None:
    state = {"recommendations": ((NOW - 500.0, 9), (NOW - 100.0, 4))}
    decision = decide(Case("", 4, "", spec={"scale_down_stabilization_seconds": 300.0},
                           state=state))
    assert [t for t, _ in decision.new_state.recommendations] == [NOW - 100.0, NOW]


def test_a_replay_scales_up_fast_and_down_slowly() -> None:
    spec = ScalingSpec(**{**BASE_SPEC, "scale_down_stabilization_seconds": 60.0,
                          "scale_down_period_seconds": 15.0})
    state = ScalingState(current_replicas=1, ready_replicas=1)
    replicas = []
    for second in range(0, 300, 5):
        demand = 80_000.0 if 20 <= second < 60 else 10_000.0
        signals = Signals(demand_tokens=demand, router_queue_depth=0.0,
                          inflight_samples=1.0, sampled_at_seconds=float(second))
        decision = compute_desired_replicas(spec, signals, state, float(second))
        state = decision.new_state
        replicas.append(decision.desired_replicas)
    assert replicas[:4] == [1] * 4
    assert replicas[4:23] == [8] * 19  # up at the first read, held 60 s past the burst
    assert replicas[23:26] == [7, 7, 7]  # then one step per 15 s
    assert replicas[-1] == 1
    assert all(b - a >= -1 for a, b in itertools.pairwise(replicas))


@pytest.mark.parametrize(
    ("history", "recommendation", "current", "expected"),
    [
        ((), 5, 3, 5),
        (((95.0, 2),), 5, 3, 3),  # the up window still holds a low recommendation
        (((50.0, 2),), 5, 3, 5),  # ... until it leaves the window
        (((95.0, 9),), 1, 6, 6),  # the down window holds at current
        (((95.0, 4),), 1, 6, 4),
    ],
    ids=[
        "should follow a recommendation with no history",
        "should not scale up while the up window holds a lower one",
        "should scale up once the lower one has left the up window",
        "should not scale down while the down window holds a higher one",
        "should scale down only to the highest of the down window",
    ],
)
def test_stabilize_recommendation(
    history: tuple[tuple[float, int], ...], recommendation: int, current: int, expected: int
) -> None:
    assert stabilize_recommendation(
        history, recommendation, current, 100.0, up_window_seconds=10.0,
        down_window_seconds=300.0,
    ) == expected


def test_prune_recommendations_keeps_only_the_window() -> None:
    history = ((1.0, 1), (50.0, 2), (99.0, 3))
    assert prune_recommendations(history, 100.0, 60.0) == ((50.0, 2), (99.0, 3))


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"min_replicas": 5, "max_replicas": 2}, "exceeds max_replicas"),
        ({"max_gpus": 1, "gpus_per_replica": 2}, "cannot fit one replica"),
    ],
    ids=["should reject min replicas above max", "should reject a quota below one replica"],
)
def test_scaling_spec_rejects_inconsistent_bounds(spec: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        ScalingSpec(**spec)


def test_the_ceiling_is_the_lower_of_max_replicas_and_the_gpu_quota() -> None:
    assert ScalingSpec(max_replicas=10).ceiling_replicas == 10
    assert ScalingSpec(max_replicas=10, max_gpus=9, gpus_per_replica=2).ceiling_replicas == 4
    assert ScalingSpec(max_replicas=3, max_gpus=100).ceiling_replicas == 3


def test_policy_models_are_frozen() -> None:
    spec = ScalingSpec()
    with pytest.raises(ValidationError):
        spec.max_replicas = 3


def test_the_crd_scaling_block_reaches_the_policy_knob_for_knob() -> None:
    """Every damping knob the simulator tunes is settable from a ReasoningService."""
    service = ReasoningServiceSpec.model_validate({
        "model": {"name": "tiny", "repository": {"configMap": {"name": "m"}}},
        "resources": {"gpusPerReplica": 2},
        "scaling": {
            "minReplicas": 2, "maxReplicas": 12, "maxGpus": 20, "targetDrainSeconds": 45,
            "targetQueuePerReplica": 6, "targetSamplesPerReplica": 48,
            "scaleUpStabilizationSeconds": 10, "scaleDownStabilizationSeconds": 240,
            "scaleDownMaxStep": 2, "scaleDownMaxStepPercent": 20,
            "scaleDownPeriodSeconds": 30,
        },
    })
    policy = scaling_spec(service, OperatorSettings(metrics_max_age_seconds=20.0))
    assert (policy.min_replicas, policy.max_replicas, policy.ceiling_replicas) == (2, 12, 10)
    assert policy.samples_per_replica == 48.0
    assert policy.scale_down_max_step_percent == 20.0
    assert policy.scale_down_period_seconds == 30.0
    assert policy.scale_down_max_step_replicas == 2
    assert policy.metrics_max_age_seconds == 20.0
    # Unset, running samples set no floor and the step and period keep their defaults.
    default = scaling_spec(ReasoningServiceSpec.model_validate({
        "model": {"name": "tiny", "repository": {"configMap": {"name": "m"}}}}),
        OperatorSettings())
    assert default.samples_per_replica is None
    assert (default.scale_down_max_step_percent, default.scale_down_period_seconds) == (0.0, 60.0)


def test_running_samples_above_the_crd_target_grow_the_pool() -> None:
    service = ReasoningServiceSpec.model_validate({
        "model": {"name": "tiny", "repository": {"configMap": {"name": "m"}}},
        "scaling": {"maxReplicas": 10, "targetSamplesPerReplica": 16},
    })
    policy = scaling_spec(service, OperatorSettings())
    signals = Signals(demand_tokens=0.0, router_queue_depth=0.0, inflight_samples=70.0,
                      sampled_at_seconds=NOW)
    decision = compute_desired_replicas(
        policy, signals, ScalingState(current_replicas=2, ready_replicas=2), NOW)
    assert decision.desired_replicas == 5  # ceil(70 / 16)

"""The condition vocabulary of a ReasoningService: its condition types and every reason.

The one list of reasons the operator sets. ``policy`` (which decides them), the handlers
(which write them) and ``hack/gen_crd_docs.py`` (which documents them, with the comment
on each member as its meaning) all use these names; ``tests/unit/test_condition_reasons.py``
checks that every reason documented is set by some code path and every one set is
documented. Standard library only, so the pure policy can import it.

Neighbours: ``status`` (the models that carry the conditions).
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Final


class ConditionType(StrEnum):
    """The condition types a ReasoningService carries."""

    READY = "Ready"                  # enough ready replicas to serve (or scaled to zero)
    SCALING = "Scaling"              # True while the pool changes size; the reason says why
    DEGRADED = "Degraded"            # the autoscaler cannot trust its metrics: replicas held
    UNSCHEDULABLE = "Unschedulable"  # Triton pods are Pending for want of a node


class Reason(StrEnum):
    """Machine-readable reasons, CamelCase as ``metav1.Condition`` requires."""

    REPLICAS_READY = "ReplicasReady"          # Triton and router replicas are ready to serve
    REPLICAS_NOT_READY = "ReplicasNotReady"   # no Triton or no router replica is ready yet
    SCALED_TO_ZERO = "ScaledToZero"           # no replicas wanted; the router holds requests
    INVALID_SPEC = "InvalidSpec"              # the operator refuses the spec (not retried)
    CHILD_REJECTED = "ChildRejected"          # the API server refused a child (retried)
    UNKNOWN_GPU_PRODUCT = "UnknownGpuProduct"  # no node offers the requested gpuProduct
    POD_FAILING = "PodFailing"                # a Triton container cannot start (image, crash)
    ACTIVATE_FROM_ZERO = "ActivateFromZero"   # demand arrived at zero replicas: started at once
    DEMAND_INCREASE = "DemandIncrease"        # more replicas to drain the token demand in time
    QUEUE_FLOOR = "QueueFloor"                # more replicas for the queued requests
    DEMAND_DECREASE = "DemandDecrease"        # fewer replicas, one scale-down step at a time
    SCALE_TO_ZERO = "ScaleToZero"             # no demand: to zero (idle window or minReplicas 0)
    AT_MIN_REPLICAS = "AtMinReplicas"         # below minReplicas: raised to it
    AT_MAX_REPLICAS = "AtMaxReplicas"         # demand wants more than maxReplicas
    AT_GPU_QUOTA = "AtGpuQuota"               # demand wants more than maxGpus allows
    UNSCHEDULABLE = "Unschedulable"           # not growing while Triton pods are Pending
    HELD_MISSING_METRICS = "HeldMissingMetrics"  # held: the read failed or a series is missing
    HELD_STALE_METRICS = "HeldStaleMetrics"   # held: the metrics are older than the limit
    HELD_CONTRADICTORY_METRICS = "HeldContradictoryMetrics"  # held: the metrics disagree
    PAUSED = "Paused"                         # spec.scaling.paused: the user sets the replicas
    STABLE = "Stable"                         # the replicas match the demand (or wait a step)
    METRICS_UNAVAILABLE = "MetricsUnavailable"  # no Prometheus, a failed query or no series
    METRICS_STALE = "MetricsStale"            # the newest sample is older than the limit
    METRICS_CONTRADICTORY = "MetricsContradictory"  # negative, non-finite or inconsistent
    AS_EXPECTED = "AsExpected"                # the metrics are fresh and consistent
    INSUFFICIENT_GPU = "InsufficientGPU"      # the scheduler finds no node for a Triton pod
    SCHEDULABLE = "Schedulable"               # every Triton pod is scheduled


CONDITION_REASONS: Final[Mapping[ConditionType, tuple[Reason, ...]]] = {
    ConditionType.READY: (
        Reason.REPLICAS_READY, Reason.REPLICAS_NOT_READY, Reason.SCALED_TO_ZERO,
        Reason.INVALID_SPEC, Reason.CHILD_REJECTED, Reason.UNKNOWN_GPU_PRODUCT,
        Reason.POD_FAILING,
    ),
    ConditionType.SCALING: (
        Reason.ACTIVATE_FROM_ZERO, Reason.DEMAND_INCREASE, Reason.QUEUE_FLOOR,
        Reason.DEMAND_DECREASE, Reason.SCALE_TO_ZERO, Reason.AT_MIN_REPLICAS,
        Reason.AT_MAX_REPLICAS, Reason.AT_GPU_QUOTA, Reason.UNSCHEDULABLE,
        Reason.HELD_MISSING_METRICS, Reason.HELD_STALE_METRICS,
        Reason.HELD_CONTRADICTORY_METRICS, Reason.PAUSED, Reason.STABLE,
    ),
    ConditionType.DEGRADED: (
        Reason.METRICS_UNAVAILABLE, Reason.METRICS_STALE, Reason.METRICS_CONTRADICTORY,
        Reason.AS_EXPECTED,
    ),
    ConditionType.UNSCHEDULABLE: (Reason.INSUFFICIENT_GPU, Reason.SCHEDULABLE),
}
"""The reasons each condition type can carry: the table in the reference is this one."""

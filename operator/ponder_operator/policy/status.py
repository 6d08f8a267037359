"""The ReasoningService status from what the children report: a pure function.

Input is what the adapters read (the Triton and router Deployments' status, the Triton
pods, whether any node offers the requested GPU product); output is the status the
operator writes. Conditions keep their ``lastTransitionTime`` while unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ponder_operator.api.status import (
    Condition,
    ConditionStatus,
    ConditionType,
    Reason,
    ReasoningServiceStatus,
    with_condition,
)

_POD_ERROR_REASONS = frozenset({
    "CreateContainerConfigError", "ImagePullBackOff", "ErrImagePull", "CrashLoopBackOff",
    "InvalidImageName", "CreateContainerError",
})


@dataclass(frozen=True)
class Observed:
    """What the adapters saw of the children."""

    generation: int
    triton_replicas: int
    triton_ready: int
    router_ready: int
    desired_replicas: int
    unschedulable_pods: int
    unschedulable_message: str
    gpu_product_known: bool
    pod_error: str | None = None


def _count(status: Mapping[str, Any] | None, key: str) -> int:
    return int((status or {}).get(key) or 0)


def observe(
    generation: int,
    triton: Mapping[str, Any] | None,
    router: Mapping[str, Any] | None,
    pods: Sequence[Mapping[str, Any]],
    gpu_product_known: bool,
) -> Observed:
    """Summarise the children's objects (as the API returns them) into ``Observed``."""
    triton_status = (triton or {}).get("status")
    unschedulable = []
    pod_error = None
    for pod in pods:
        for cond in pod.get("status", {}).get("conditions") or []:
            if cond.get("type") == "PodScheduled" and cond.get("reason") == "Unschedulable":
                unschedulable.append(cond.get("message") or "")
        for cs in pod.get("status", {}).get("containerStatuses") or []:
            waiting = (cs.get("state") or {}).get("waiting") or {}
            if waiting.get("reason") in _POD_ERROR_REASONS:
                pod_error = f"{waiting['reason']}: {waiting.get('message', '')}".strip()
    return Observed(
        generation=generation,
        triton_replicas=_count(triton_status, "replicas"),
        triton_ready=_count(triton_status, "readyReplicas"),
        router_ready=_count((router or {}).get("status"), "readyReplicas"),
        desired_replicas=int(((triton or {}).get("spec") or {}).get("replicas") or 0),
        unschedulable_pods=len(unschedulable),
        unschedulable_message=unschedulable[0] if unschedulable else "",
        gpu_product_known=gpu_product_known,
        pod_error=pod_error,
    )


def _condition(
    type_: ConditionType, status: ConditionStatus, reason: Reason, message: str,
    now: datetime, generation: int,
) -> Condition:
    return Condition(type=type_, status=status, reason=reason, message=message,
                     last_transition_time=now, observed_generation=generation)


def compute_status(
    previous: ReasoningServiceStatus, seen: Observed, selector: str, now: datetime
) -> ReasoningServiceStatus:
    """The new status: counts from the children, Ready and Unschedulable conditions."""
    gen = seen.generation
    if not seen.gpu_product_known:
        ready = _condition(ConditionType.READY, "False", Reason.UNKNOWN_GPU_PRODUCT,
                           "no node offers the requested nvidia.com/gpu.product", now, gen)
    elif seen.pod_error:
        ready = _condition(ConditionType.READY, "False", Reason.POD_FAILING, seen.pod_error,
                           now, gen)
    elif seen.desired_replicas == 0:
        ready = _condition(ConditionType.READY, "True", Reason.SCALED_TO_ZERO,
                           "no replicas wanted; the router holds requests until one starts",
                           now, gen)
    elif seen.triton_ready >= 1 and seen.router_ready >= 1:
        ready = _condition(ConditionType.READY, "True", Reason.REPLICAS_READY,
                           f"{seen.triton_ready}/{seen.desired_replicas} Triton replicas ready",
                           now, gen)
    else:
        ready = _condition(ConditionType.READY, "False", Reason.REPLICAS_NOT_READY,
                           f"{seen.triton_ready}/{seen.desired_replicas} Triton replicas ready, "
                           f"{seen.router_ready} router replicas ready", now, gen)
    if seen.unschedulable_pods:
        unschedulable = _condition(
            ConditionType.UNSCHEDULABLE, "True", Reason.INSUFFICIENT_GPU,
            f"{seen.unschedulable_pods} Triton pod(s) Pending: {seen.unschedulable_message}",
            now, gen)
    else:
        unschedulable = _condition(ConditionType.UNSCHEDULABLE, "False", Reason.SCHEDULABLE,
                                   "every Triton pod is scheduled", now, gen)
    conditions = with_condition(previous.conditions, ready)
    conditions = with_condition(conditions, unschedulable)
    return previous.model_copy(update={
        "observed_generation": gen,
        "replicas": seen.triton_replicas,
        "ready_replicas": seen.triton_ready,
        "selector": selector,
        "conditions": conditions,
    })

"""Reconcile one ReasoningService: apply its children, read them back, compute status.

The glue between the kopf handlers and the pure parts (``render``, ``policy.status``):
everything here is I/O through the ``Kube`` adapter, in the order the children depend
on each other, idempotent (server-side apply), safe to repeat after a crash mid-way.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ponder_operator.adapters.kube import AUTOSCALER_FIELD_MANAGER, Kube
from ponder_operator.api import API_VERSION, KIND
from ponder_operator.api.spec import ReasoningServiceSpec
from ponder_operator.api.status import ReasoningServiceStatus
from ponder_operator.policy import status as status_policy
from ponder_operator.render import (
    Owner,
    RenderOptions,
    render_router_config,
    render_router_configmap,
    render_router_deployment,
    render_router_rbac,
    render_router_service,
    render_service_monitor,
    render_triton_deployment,
    render_triton_pdb,
    render_triton_service,
    router_name,
    triton_name,
    triton_selector,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Capacity:
    """What the autoscaler publishes to the router through its ConfigMap."""

    at_ceiling: bool = False
    replicas: int = 0


def owner_of(body: Mapping[str, Any]) -> Owner:
    meta = body["metadata"]
    return Owner(name=meta["name"], namespace=meta["namespace"], uid=meta["uid"])


def escalation_urls(owner: Owner, spec: ReasoningServiceSpec) -> dict[str, str]:
    """In-cluster URLs of the routers of the services that tiers escalate to."""
    return {
        t.escalate_to: f"http://{t.escalate_to}-router.{owner.namespace}.svc"
        for t in spec.budgets.tiers if t.escalate_to
    }


def render_children(
    owner: Owner, spec: ReasoningServiceSpec, options: RenderOptions, capacity: Capacity
) -> list[dict[str, Any]]:
    """Every child, in apply order (config and RBAC before the pods that use them)."""
    config = render_router_config(
        owner, spec, at_ceiling=capacity.at_ceiling, replicas=capacity.replicas,
        escalation=escalation_urls(owner, spec),
    )
    children = [
        render_router_configmap(owner, spec, config),
        *render_router_rbac(owner, spec),
        render_triton_service(owner, spec),
        render_triton_deployment(owner, spec),
        render_triton_pdb(owner, spec),
        render_router_deployment(owner, spec, options),
        render_router_service(owner, spec),
    ]
    if options.service_monitor:
        children.append(render_service_monitor(owner, spec))
    return children


def initial_replicas(spec: ReasoningServiceSpec) -> int:
    """Replicas a new Triton Deployment starts with, before the autoscaler's first look."""
    scaling = spec.scaling
    if scaling.paused and scaling.replicas is not None:
        return scaling.replicas
    return scaling.min_replicas


def _autoscaler_owns_replicas(deployment: Mapping[str, Any]) -> bool:
    return any(
        entry.get("manager") == AUTOSCALER_FIELD_MANAGER
        for entry in deployment.get("metadata", {}).get("managedFields") or []
    )


def apply_children(
    kube: Kube, owner: Owner, spec: ReasoningServiceSpec, options: RenderOptions,
    capacity: Capacity = Capacity(),
) -> dict[tuple[str, str], dict[str, Any]]:
    """Server-side apply every child; give a new Triton Deployment its first replicas.

    Returns the children as the API server answered, keyed by (kind, name): fresher than
    the watches, so the status written right after needs no read of its own.
    """
    applied_children: dict[tuple[str, str], dict[str, Any]] = {}
    for child in render_children(owner, spec, options, capacity):
        applied = kube.apply(child)
        is_triton = child["kind"] == "Deployment" and child["metadata"]["name"] == triton_name(
            owner)
        if is_triton and not _autoscaler_owns_replicas(applied):
            applied = kube.scale_deployment(owner.namespace, triton_name(owner),
                                            initial_replicas(spec))
        applied_children[(child["kind"], child["metadata"]["name"])] = applied
    return applied_children


def apply_router_config(
    kube: Kube, owner: Owner, spec: ReasoningServiceSpec, capacity: Capacity
) -> None:
    """Re-render only the router ConfigMap (the autoscaler publishing its ceiling)."""
    config = render_router_config(
        owner, spec, at_ceiling=capacity.at_ceiling, replicas=capacity.replicas,
        escalation=escalation_urls(owner, spec),
    )
    kube.apply(render_router_configmap(owner, spec, config))


def status_after_apply(
    owner: Owner, applied: Mapping[tuple[str, str], Mapping[str, Any]],
    pods: Sequence[Mapping[str, Any]], gpu_product_known: bool, generation: int,
    previous: ReasoningServiceStatus, now: datetime | None = None,
) -> ReasoningServiceStatus:
    """The status from the Deployments just applied and the Triton pods the watch holds."""
    seen = status_policy.observe(
        generation, applied.get(("Deployment", triton_name(owner))),
        applied.get(("Deployment", router_name(owner))), pods, gpu_product_known)
    return status_policy.compute_status(
        previous, seen, triton_selector(owner), now or datetime.now(UTC)
    )


def status_patch(status: ReasoningServiceStatus) -> dict[str, Any]:
    """The status as the API expects it (camelCase JSON, no nulls)."""
    dumped: dict[str, Any] = status.model_dump(mode="json", by_alias=True, exclude_none=True)
    return dumped


def write_status(kube: Kube, owner: Owner, status: ReasoningServiceStatus) -> None:
    kube.patch_status(API_VERSION, KIND, owner.name, owner.namespace, status_patch(status))

"""What the operator's watches know about the children, kept in memory (kopf indexes).

The handlers register three indexes — managed Deployments, Triton pods and GPU products
of the nodes — so the autoscaling loops read the cluster's state from memory instead of
polling the API server (the informer pattern). This module trims watched objects to the
fields the status policy reads, and assembles one service's view from the indexes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ponder_operator.policy.deletion_cost import DELETION_COST_ANNOTATION

Summary = dict[str, Any]


def summarize_deployment(body: Mapping[str, Any]) -> Summary:
    return {
        "metadata": {"generation": body.get("metadata", {}).get("generation")},
        "spec": {"replicas": (body.get("spec") or {}).get("replicas")},
        "status": dict(body.get("status") or {}),
    }


def summarize_pod(body: Mapping[str, Any]) -> Summary:
    metadata = body.get("metadata") or {}
    status = body.get("status") or {}
    cost = (metadata.get("annotations") or {}).get(DELETION_COST_ANNOTATION)
    return {
        "metadata": {"name": metadata.get("name"),
                     "annotations": {} if cost is None else {DELETION_COST_ANNOTATION: cost}},
        "status": {"conditions": list(status.get("conditions") or []),
                   "containerStatuses": list(status.get("containerStatuses") or [])},
    }


def first(values: Iterable[Summary] | None) -> Summary | None:
    return next(iter(values or ()), None)


@dataclass(frozen=True)
class ServiceView:
    """One ReasoningService's children as the watches last saw them."""

    triton: Summary | None
    router: Summary | None
    pods: tuple[Summary, ...]
    gpu_product_known: bool


def service_view(
    indexes: Mapping[str, Any], namespace: str, triton: str, router: str, service: str,
    gpu_product: str | None,
) -> ServiceView:
    deployments = indexes["deployments"]
    return ServiceView(
        triton=first(deployments.get((namespace, triton))),
        router=first(deployments.get((namespace, router))),
        pods=tuple(indexes["triton_pods"].get((namespace, service), ())),
        gpu_product_known=gpu_product is None or gpu_product in indexes["gpu_products"],
    )

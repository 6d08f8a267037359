"""Each Triton pod's pod-deletion-cost, from its load: a scale-down removes the idlest pod.

Role: the thin adapter around ``policy.deletion_cost``. The autoscale timer
(``autoscale.tick``) calls ``refresh`` before it scales, with the service's Triton pods as
the watch indexed them (``views``: each with its current annotation) and each pod's
requests as Prometheus reported them (``adapters.prometheus.SignalCache.pod_loads``);
the policy says which annotations change materially, and this writes those, at most
``MAX_WRITES_PER_TICK`` per service and tick. A failed read writes nothing (the pods keep
their costs); a refused write (an install whose role lacks ``patch`` on pods) is logged
and the tick goes on: the cost orders a scale-down, it never blocks one.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping

from kubernetes.client.exceptions import ApiException

from ponder_operator.adapters.kube import Kube, api_message
from ponder_operator.policy.deletion_cost import (
    DELETION_COST_ANNOTATION,
    PodLoad,
    assign_deletion_costs,
)
from ponder_operator.views import Summary

log = logging.getLogger(__name__)
MAX_WRITES_PER_TICK = 10


def current_cost(pod: Summary) -> int | None:
    """The pod's pod-deletion-cost annotation; None when absent or not an integer."""
    value = ((pod.get("metadata") or {}).get("annotations") or {}).get(DELETION_COST_ANNOTATION)
    try:
        return None if value is None else int(value)
    except ValueError:
        return None


def refresh(
    kube: Kube, namespace: str, pods: Iterable[Summary], loads: Mapping[str, float] | None,
    max_writes: int = MAX_WRITES_PER_TICK,
) -> dict[str, int]:
    """Write the costs that changed materially; returns those written (pod: cost)."""
    if loads is None:
        return {}
    named = [(str(pod["metadata"]["name"]), pod) for pod in pods
             if (pod.get("metadata") or {}).get("name")]
    changes = assign_deletion_costs(
        (PodLoad(name, loads.get(name), current_cost(pod)) for name, pod in named), max_writes)
    written: dict[str, int] = {}
    for name, cost in changes.items():
        try:
            if kube.annotate_pod(namespace, name, {DELETION_COST_ANNOTATION: str(cost)}):
                written[name] = cost
        except ApiException as exc:
            log.warning("cannot write the deletion cost of pod %s/%s: %s", namespace, name,
                        api_message(exc))
            break
    return written

"""Load → pod-deletion-cost: which Triton pod a scale-down removes first.

Role: when the autoscaler lowers the Triton Deployment's replicas, the ReplicaSet deletes
pods not yet scheduled or not Ready first, then, among Ready pods, those with the lowest
``controller.kubernetes.io/pod-deletion-cost`` annotation (absent = 0). A reasoning stream
that has sent tokens cannot be retried, so the pod to lose is the idlest one. The
autoscale timer (``autoscale``) reads each pod's load (``adapters.prometheus``), asks
``assign_deletion_costs`` here which annotations to change, and writes those
(``adapters.kube``). Pure: no clock, no I/O, no logging.

- The cost is the pod's requests in the engine or Triton, rounded: running plus waiting
  (``vllm:num_requests_running`` + ``vllm:num_requests_waiting``, plus Triton's pending
  count); an idle pod costs 0, so it goes first.
- A pod's annotation is rewritten only when the cost changes materially: to or from 0, or
  by at least ``MIN_STEP_REQUESTS`` and a factor of two. A pod whose load wanders between
  9 and 15 keeps its cost; the order among busy pods is then right within a factor of two,
  which is all a scale-down needs (the idle pods first, then the least busy).
- A pod without a load reading keeps its annotation (unknown is not idle), and at most
  ``max_writes`` pods change per call, the changes to or from 0 first: every write is an
  API write and a watch event for every client watching pods.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

DELETION_COST_ANNOTATION: Final = "controller.kubernetes.io/pod-deletion-cost"
MAX_DELETION_COST: Final = 2**31 - 1
"""The annotation is an int32."""
MIN_STEP_REQUESTS: Final = 2


@dataclass(frozen=True)
class PodLoad:
    """One Triton pod: its load now (None: no reading) and its annotation (None: absent)."""

    name: str
    load_requests: float | None
    cost: int | None


def compute_deletion_cost(load_requests: float) -> int:
    """The pod-deletion-cost of a pod with ``load_requests`` requests in it (0: idle)."""
    if not math.isfinite(load_requests) or load_requests <= 0.0:
        return 0
    return min(round(load_requests), MAX_DELETION_COST)


def changed_materially(current: int | None, new: int) -> bool:
    """Whether an annotation at ``current`` (None: absent, which is 0) must become ``new``."""
    old = current or 0
    if old == new:
        return False
    if old == 0 or new == 0:
        return True
    return abs(new - old) >= MIN_STEP_REQUESTS and max(old, new) >= 2 * min(old, new)


def assign_deletion_costs(pods: Iterable[PodLoad], max_writes: int) -> dict[str, int]:
    """The pods whose annotation to write, with their new cost (at most ``max_writes``)."""
    changes: list[tuple[bool, str, int]] = []
    for pod in pods:
        if pod.load_requests is None:
            continue
        new = compute_deletion_cost(pod.load_requests)
        if changed_materially(pod.cost, new):
            changes.append((not (new == 0 or not pod.cost), pod.name, new))
    changes.sort()
    return {name: cost for _, name, cost in changes[:max(max_writes, 0)]}

"""Pure policy: frozen models in, frozen models out; no clock, I/O or logging.

- ``scaling`` — demand to replicas: ``compute_desired_replicas(spec, signals, state, now)``
  with HPA-style stabilization, scale to zero, GPU-capacity awareness and fail-safe holds;
- ``cost``    — GPU time to money: prices per GPU-hour and running totals;
- ``status``  — the ReasoningService status from what the children report;
- ``deletion_cost`` — a Triton pod's load to its pod-deletion-cost (the idlest pod goes
  first on a scale-down), and which annotations change materially.

The operator's autoscale handler and the trace-replay simulator (``ponder simulate``)
call the same functions.
"""

from __future__ import annotations

from .scaling import (
    ScaleDecision,
    ScalingSpec,
    ScalingState,
    Signals,
    compute_desired_replicas,
)

__all__ = [
    "ScaleDecision",
    "ScalingSpec",
    "ScalingState",
    "Signals",
    "compute_desired_replicas",
]

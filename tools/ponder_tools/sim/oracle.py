"""The clairvoyant lower bound every autoscaler is measured against.

Role: beside ``engine``; reads a ``workload.Workload`` and a ``engine.ReplicaModel``, no replay.

The oracle knows every request in advance and starts replicas instantly (zero start-up).
It starts each request the moment it arrives, so every request meets any queue-wait
target, and runs each sequence at the speed of a *full* replica, ``r(max_sequences)``.
Sequences pack perfectly across replicas. In each interval of ``interval_seconds`` it runs
the fewest whole replicas that hold the most sequences running at any moment of that
interval: ``ceil(peak sequences / max_sequences)``. No real scaler, which must wait for
start-up and place whole requests on replicas, meets the same target with less, and a
smaller interval only lowers the bound.

``fluid_gpu_seconds`` is the plainer bound: all generated tokens at full-batch throughput,
as if replicas were divisible and never idle (it ignores the latency target).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from .engine import ReplicaModel
from .workload import Workload


@dataclass(frozen=True)
class OracleBound:
    """Per-interval replicas of the clairvoyant scaler and the GPU time they hold."""

    interval_seconds: float
    replicas: npt.NDArray[np.int64]
    gpu_seconds: float
    fluid_gpu_seconds: float

    @property
    def gpu_hours(self) -> float:
        return self.gpu_seconds / 3600.0

    @property
    def fluid_gpu_hours(self) -> float:
        return self.fluid_gpu_seconds / 3600.0


def compute_oracle(
    workload: Workload, replica: ReplicaModel, interval_seconds: float = 10.0
) -> OracleBound:
    """The oracle bound for ``workload`` on ``replica`` (see the module docstring)."""
    if workload.requests == 0:
        return OracleBound(interval_seconds, np.zeros(0, np.int64), 0.0, 0.0)
    speed = replica.sequence_tokens_per_second(replica.max_sequences)
    start = workload.trace.arrival_seconds
    end = start + workload.tokens_per_sequence / speed
    width = workload.sequences.astype(np.float64)
    times = np.concatenate([start, end])
    steps = np.concatenate([width, -width])
    order = np.lexsort((steps, times))  # at equal times, ends before starts
    times, steps = times[order], steps[order]
    occupancy = np.cumsum(steps)  # sequences running just after each event
    intervals = max(1, math.ceil(float(end.max()) / interval_seconds))
    bounds = np.arange(intervals + 1) * interval_seconds
    first = np.searchsorted(times, bounds, side="left")  # first event of each interval
    carried = np.where(first[:-1] > 0, occupancy[np.maximum(first[:-1] - 1, 0)], 0.0)
    has_events = first[:-1] < first[1:]
    inside = np.maximum.reduceat(occupancy, np.minimum(first[:-1], len(occupancy) - 1))
    peak = np.where(has_events, np.maximum(carried, inside), carried)
    replicas = np.ceil(peak / replica.max_sequences - 1e-9).clip(min=0).astype(np.int64)
    gpus = replica.gpus_per_replica
    tokens = float(workload.generated_tokens.sum())
    return OracleBound(
        interval_seconds=interval_seconds,
        replicas=replicas,
        gpu_seconds=float(replicas.sum()) * interval_seconds * gpus,
        fluid_gpu_seconds=tokens / replica.max_tokens_per_second * gpus,
    )

"""The clairvoyant lower bound every autoscaler is measured against.

Role: beside ``engine``; reads a ``workload.Workload`` and a ``engine.ReplicaModel``, no replay.

The oracle knows every request in advance and starts replicas instantly. It starts each
request the moment it arrives (zero queue wait, so it meets any wait target) and runs each
sequence at the speed of a *full* replica, ``r(max_sequences)``, the slowest a sequence ever
decodes. In each interval of ``interval_seconds`` it runs the fewest whole replicas whose
full-batch throughput covers the tokens that schedule generates in that interval:
``ceil(tokens_in_interval / (max_tokens_per_second x interval_seconds))``. Packing is
perfect inside an interval, so this is optimistic: no real scaler, with start-up delays
and whole requests to place, can do better, and a smaller interval only lowers it.

``fluid_gpu_seconds`` is the plainer bound: all generated tokens at full-batch throughput,
as if replicas were divisible and never idle.
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
    workload: Workload, replica: ReplicaModel, interval_seconds: float = 60.0
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
    order = np.argsort(times, kind="stable")
    times, steps = times[order], steps[order]
    occupancy = np.cumsum(steps)  # sequences running just after each time
    # sequence-seconds run up to each event time; piecewise linear in between
    area = np.concatenate([[0.0], np.cumsum(occupancy[:-1] * np.diff(times))])
    intervals = max(1, math.ceil(float(end.max()) / interval_seconds))
    bounds = np.arange(intervals + 1) * interval_seconds
    area_at = np.interp(bounds, times, area, left=0.0, right=float(area[-1]))
    sequence_seconds = np.diff(area_at)
    full = replica.max_sequences * interval_seconds
    replicas = np.ceil(sequence_seconds / full - 1e-9).clip(min=0).astype(np.int64)
    gpus = replica.gpus_per_replica
    tokens = float(workload.generated_tokens.sum())
    return OracleBound(
        interval_seconds=interval_seconds,
        replicas=replicas,
        gpu_seconds=float(replicas.sum()) * interval_seconds * gpus,
        fluid_gpu_seconds=tokens / replica.max_tokens_per_second * gpus,
    )

"""The autoscalers' capacity target, measured the way a load test would measure it.

Role: between ``baselines.derive_capacity_target`` and ``fleet_compare``. The derived
target reads a ``workload.Workload``, where every request runs all its samples in one
wave and its demand stays counted for one sample's duration. A policy that draws its
samples in waves (Ponder's vote tiers: a first wave, then a few samples at a time until
the stopping rule fires) keeps a request open, and its demand and its place in the
outstanding-request count counted, for every wave: a contested request may stay open for
minutes while one or two of its samples run. On such a policy the derived target reads
the same signal as two to three times the load it is, and the pool is sized for it.

``measure_capacity_target`` replays the policy's own fleet once on a fixed pool that never
queues (``LoadTestPool``: the oracle's peak) and reads, averaged over the autoscaler
periods with work in flight, the demand signal, the outstanding requests and the
sequences running; the target keeps the derived operating point (sequences per replica)
and takes what the signals read per running sequence there:

- ``drain_seconds = mean demand / (sequence speed at the operating point x mean sequences)``
- ``requests_per_replica = sequences per replica x mean outstanding / mean sequences``

On a one-wave policy (fixed maj@N) both match the derived ones.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from .baselines import CapacityTarget
from .engine import Observation, SimConfig
from .fleet import FleetDraw, FleetPolicy, simulate_fleet
from .workload import Workload


@dataclass
class LoadTestPool:
    """An ``engine.Autoscaler`` that holds ``replicas`` and sums what it observes."""

    replicas: int
    name: str = "load-test"
    period_seconds: float = 5.0
    periods: int = 0
    demand_tokens: float = 0.0
    outstanding_requests: float = 0.0
    sequences: float = 0.0

    def start(self, replicas: int, now_seconds: float) -> None:
        del replicas, now_seconds

    def decide(self, observation: Observation, now_seconds: float) -> int:
        del now_seconds
        if observation.inflight_sequences > 0:
            self.periods += 1
            self.demand_tokens += observation.demand_tokens
            self.outstanding_requests += (observation.queued_requests
                                          + observation.inflight_requests)  # fmt: skip
            self.sequences += observation.inflight_sequences
        return self.replicas


def measure_capacity_target(draw: FleetDraw, policy: FleetPolicy, derived: CapacityTarget,
                            config: SimConfig, workload: Workload, replicas: int,
                            ) -> CapacityTarget:  # fmt: skip
    """``derived`` with ``drain_seconds`` and ``requests_per_replica`` read from a replay of
    ``policy`` on ``replicas`` fixed replicas (module docstring); ``derived`` unchanged
    when nothing ran."""
    pool = LoadTestPool(replicas)
    local = replace(config, initial_replicas=replicas, gpu_capacity=max(replicas, 1))
    simulate_fleet(draw, policy, pool, local, workload=workload, max_replicas=replicas)
    if pool.periods == 0 or pool.sequences <= 0.0:
        return derived
    sequences = pool.sequences / pool.periods
    speed = config.replica.sequence_tokens_per_second(derived.sequences_per_replica)
    return replace(
        derived,
        drain_seconds=max(pool.demand_tokens / pool.periods / (speed * sequences), 1.0),
        requests_per_replica=derived.sequences_per_replica * pool.outstanding_requests
        / pool.periods / sequences,
    )  # fmt: skip

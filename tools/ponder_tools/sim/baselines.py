"""The autoscalers the simulator compares: Ponder's loop and the peers it must beat.

Role: adapters between ``engine.Observation`` and each scaling algorithm, feeding every
algorithm only the signal it would see, at the rate it would see it:

- ``PonderAutoscaler``: ``policy.compute_desired_replicas`` every 5 s on the router's
  difficulty-weighted ``demand_tokens``, queue depth and in-flight samples. With
  ``tokens_per_request`` and ``samples_per_request`` set it is the difficulty-blind
  variant: the same loop fed plain request counts (queued and in flight) times one average
  cost and one average sample count per request.
- ``HpaAutoscaler``: kube-controller-manager's HPA on an External metric with an
  ``AverageValue`` target: outstanding requests (queued + in flight) per pod. Sync every
  15 s, tolerance 0.1, ``desired = ceil(metric / target)`` outside the tolerance band,
  default ``behavior`` (scale-up: the larger of +100 % and +4 pods per 15 s, no window;
  scale-down: 300 s stabilization, -100 % per 15 s).
- ``KedaAutoscaler``: KEDA's ScaledObject with a Prometheus trigger on the same metric and
  ``minReplicaCount: 0``. KEDA polls every 30 s (``pollingInterval``) to activate from zero
  and to deactivate after ``cooldownPeriod`` (300 s) inactive; between 1 and max replicas
  its HPA scales as above, with the metric read live at each 15 s sync (KEDA's default,
  ``useCachedMetrics: false``).

``CapacityTarget`` puts every algorithm on the same per-replica capacity target.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from ponder_operator.policy.scaling import (
    ScalingSpec,
    ScalingState,
    Signals,
    compute_desired_replicas,
    prune_recommendations,
    stabilize_recommendation,
)

from .engine import Observation, ReplicaModel
from .workload import Workload


@dataclass(frozen=True)
class CapacityTarget:
    """One replica's target load, in each algorithm's own unit, from one operating point.

    The operating point is ``sequences_per_replica`` concurrent sequences per replica, at
    which a replica generates ``tokens_per_second_per_replica``. Each algorithm's target is
    calibrated, alike for all, so that in steady state on the workload (Little's law: what a
    load test with this traffic mix would set) it holds that many sequences per replica:

    - outstanding requests per pod: ``requests_per_replica`` (long requests run more
      sequences, so this is below ``sequences / mean sequences per request``);
    - difficulty-weighted demand: ``demand / (tokens_per_second x drain_seconds)``, where
      ``drain_seconds`` is how long a request's expected tokens stay counted, weighted by
      those tokens, per sequence they keep busy;
    - request counts in Ponder's loop: ``outstanding x tokens_per_request`` for demand and
      ``in-flight requests x samples_per_request`` for running samples, the averages of a
      request in flight.
    """

    sequences_per_replica: float
    tokens_per_second_per_replica: float
    requests_per_replica: float
    drain_seconds: float
    tokens_per_request: float
    samples_per_request: float


def derive_capacity_target(
    workload: Workload, replica: ReplicaModel, utilization: float = 0.75
) -> CapacityTarget:
    """The common target at ``utilization`` of a replica's sequence slots."""
    sequences = utilization * replica.max_sequences
    speed = replica.sequence_tokens_per_second(sequences)
    length = workload.tokens_per_sequence.astype(np.float64)  # duration x speed
    busy = float((workload.sequences * length).mean()) or 1.0  # sequence-tokens per request
    expected = workload.expected_tokens
    mean_length = float(length.mean()) or 1.0
    return CapacityTarget(
        sequences_per_replica=sequences,
        tokens_per_second_per_replica=replica.replica_tokens_per_second(sequences),
        requests_per_replica=sequences * mean_length / busy,
        drain_seconds=max(float((expected * length).mean()) / (speed * busy), 1.0),
        tokens_per_request=float((expected * length).mean()) / mean_length,
        samples_per_request=busy / mean_length,
    )


class PonderAutoscaler:
    """Ponder's operator loop: ``compute_desired_replicas`` on the router's metrics."""

    def __init__(
        self,
        spec: ScalingSpec,
        *,
        name: str = "ponder",
        period_seconds: float = 5.0,
        tokens_per_request: float | None = None,
        samples_per_request: float | None = None,
    ) -> None:
        if (tokens_per_request is None) != (samples_per_request is None):
            raise ValueError("request counts need both tokens_per_request and samples_per_request")
        self.spec = spec
        self.name = name
        self.period_seconds = period_seconds
        self.tokens_per_request = tokens_per_request
        self.samples_per_request = samples_per_request
        self.state = ScalingState(current_replicas=0)
        self.reasons: Counter[str] = Counter()

    def start(self, replicas: int, now_seconds: float) -> None:
        self.state = ScalingState(
            current_replicas=replicas, ready_replicas=replicas,
            recommendations=((now_seconds, replicas),) if replicas else (),
            last_active_time_seconds=now_seconds,
        )
        self.reasons.clear()

    def decide(self, observation: Observation, now_seconds: float) -> int:
        demand, samples = observation.demand_tokens, float(observation.inflight_sequences)
        if self.tokens_per_request is not None and self.samples_per_request is not None:
            outstanding = observation.queued_requests + observation.inflight_requests
            demand = outstanding * self.tokens_per_request
            samples = observation.inflight_requests * self.samples_per_request
        signals = Signals(
            demand_tokens=demand,
            router_queue_depth=observation.queued_requests,
            inflight_samples=samples,
            sampled_at_seconds=now_seconds,
        )
        state = self.state.model_copy(update={
            "current_replicas": observation.spec_replicas,
            "ready_replicas": observation.ready_replicas,
            "pending_unschedulable_replicas": observation.pending_unschedulable_replicas,
        })
        decision = compute_desired_replicas(self.spec, signals, state, now_seconds)
        self.state = decision.new_state
        self.reasons[decision.reason] += 1
        return decision.desired_replicas


@dataclass(frozen=True)
class HpaBehavior:
    """kube-controller-manager's HPA defaults (autoscaling/v2 default ``behavior``)."""

    sync_period_seconds: float = 15.0
    tolerance: float = 0.1
    scale_up_stabilization_seconds: float = 0.0
    scale_up_percent: float = 100.0
    scale_up_pods: int = 4
    scale_up_period_seconds: float = 15.0
    scale_down_stabilization_seconds: float = 300.0
    scale_down_percent: float = 100.0
    scale_down_period_seconds: float = 15.0


@dataclass
class _HpaMemory:
    recommendations: tuple[tuple[float, int], ...] = ()
    scale_events: list[tuple[float, int]] = field(default_factory=list)  # (time, +/- replicas)


class HpaAutoscaler:
    """The HPA on outstanding requests per pod (External metric, ``AverageValue`` target)."""

    def __init__(
        self,
        target_requests_per_pod: float,
        *,
        min_replicas: int = 1,
        max_replicas: int = 64,
        behavior: HpaBehavior | None = None,
        name: str = "hpa",
    ) -> None:
        self.target = target_requests_per_pod
        self.min_replicas = min_replicas
        self.max_replicas = max_replicas
        self.behavior = behavior or HpaBehavior()
        self.name = name
        self.period_seconds = self.behavior.sync_period_seconds
        self.memory = _HpaMemory()

    def start(self, replicas: int, now_seconds: float) -> None:
        # A pool that has been steady at ``replicas``: its last recommendation says so.
        self.memory = _HpaMemory(((now_seconds, replicas),) if replicas else ())

    def decide(self, observation: Observation, now_seconds: float) -> int:
        current = observation.spec_replicas
        if current == 0:
            return 0  # the HPA does not act on a target scaled to zero
        usage = observation.queued_requests + observation.inflight_requests
        ratio = usage / (self.target * current)
        raw = current if abs(ratio - 1.0) <= self.behavior.tolerance else math.ceil(
            usage / self.target - 1e-9)
        return self.normalize(raw, current, now_seconds)

    def normalize(self, raw: int, current: int, now_seconds: float) -> int:
        """Stabilize, rate-limit and clamp ``raw`` as ``normalizeDesiredReplicasWithBehaviors``."""
        behavior, memory = self.behavior, self.memory
        stabilized = stabilize_recommendation(
            memory.recommendations, raw, current, now_seconds,
            up_window_seconds=behavior.scale_up_stabilization_seconds,
            down_window_seconds=behavior.scale_down_stabilization_seconds,
        )
        keep = max(behavior.scale_up_stabilization_seconds,
                   behavior.scale_down_stabilization_seconds)
        memory.recommendations = prune_recommendations(
            (*memory.recommendations, (now_seconds, raw)), now_seconds, keep)
        desired = stabilized
        if desired > current:
            added, removed = self._changes(now_seconds, behavior.scale_up_period_seconds)
            start = current - added + removed
            limit = max(start + behavior.scale_up_pods,
                        math.ceil(start * (1.0 + behavior.scale_up_percent / 100.0)))
            desired = min(desired, max(limit, current), self.max_replicas)
        elif desired < current:
            added, removed = self._changes(now_seconds, behavior.scale_down_period_seconds)
            start = current - added + removed
            limit = int(start * (1.0 - behavior.scale_down_percent / 100.0))
            desired = max(desired, min(limit, current), self.min_replicas)
        desired = min(max(desired, self.min_replicas), self.max_replicas)
        if desired != current:
            memory.scale_events.append((now_seconds, desired - current))
        return desired

    def _changes(self, now_seconds: float, period_seconds: float) -> tuple[int, int]:
        """Replicas added and removed by this HPA within the last ``period_seconds``."""
        recent = [(t, d) for t, d in self.memory.scale_events if t + period_seconds > now_seconds]
        self.memory.scale_events = recent
        return sum(d for _, d in recent if d > 0), -sum(d for _, d in recent if d < 0)


class KedaAutoscaler:
    """KEDA: activation and scale to zero by polling, the HPA in between."""

    def __init__(
        self,
        target_requests_per_pod: float,
        *,
        max_replicas: int = 64,
        min_replica_count: int = 0,
        polling_interval_seconds: float = 30.0,
        cooldown_period_seconds: float = 300.0,
        activation_threshold: float = 0.0,
        behavior: HpaBehavior | None = None,
        name: str = "keda",
    ) -> None:
        self.hpa = HpaAutoscaler(
            target_requests_per_pod, min_replicas=max(min_replica_count, 1),
            max_replicas=max_replicas, behavior=behavior,
        )
        self.min_replica_count = min_replica_count
        self.polling_interval_seconds = polling_interval_seconds
        self.cooldown_period_seconds = cooldown_period_seconds
        self.activation_threshold = activation_threshold
        self.name = name
        self.period_seconds = self.hpa.period_seconds
        self.last_poll_seconds = -math.inf
        self.last_active_seconds = 0.0

    def start(self, replicas: int, now_seconds: float) -> None:
        self.hpa.start(replicas, now_seconds)
        self.last_poll_seconds = -math.inf
        self.last_active_seconds = now_seconds

    def decide(self, observation: Observation, now_seconds: float) -> int:
        current = observation.spec_replicas
        if now_seconds - self.last_poll_seconds >= self.polling_interval_seconds - 1e-9:
            self.last_poll_seconds = now_seconds
            usage = observation.queued_requests + observation.inflight_requests
            if usage > self.activation_threshold:
                self.last_active_seconds = now_seconds
                if current == 0:
                    return max(self.min_replica_count, 1)
            elif (current > 0 and self.min_replica_count == 0
                  and now_seconds - self.last_active_seconds >= self.cooldown_period_seconds):
                return 0
        if current == 0:
            return 0
        return self.hpa.decide(observation, now_seconds)

"""The discrete-event replay: requests, a router queue, GPU replicas and one autoscaler.

Role: the core of the simulator. ``simulate`` replays a ``workload.Workload`` against an
``Autoscaler`` (``baselines``) and returns a ``SimResult``; ``report`` summarises results
and ``oracle`` computes the clairvoyant lower bound. One heapq event loop; arrivals are
merged in from the sorted trace instead of being queued as events.

Serving model (parameters in ``ReplicaModel``, units in their names):

- **Router.** Requests wait in one FIFO queue (``ponder_router_queue_depth``). The head
  request starts when a ready replica has free sequence slots for all its samples; it goes
  to the replica with the most free slots. Queue wait is the time from arrival to start.
- **Replica.** Continuous batching with at most ``max_sequences`` concurrent sequences
  (the KV-cache limit). With ``c`` sequences running, each decodes at
  ``r(c) = single_sequence_tokens_per_second / (1 + c / half_rate_sequences)`` tokens/s, so
  the replica's throughput ``c * r(c)`` grows with the batch and saturates. All sequences
  on a replica share that rate (processor sharing), so the engine tracks each replica's
  per-sequence progress in tokens and reschedules its next completion when ``c`` changes.
- **Prefill** is a fixed delay of ``input tokens / prefill_tokens_per_second`` that adds to
  time to first token and latency; it does not take decode capacity.
- **Pods.** A new replica holds its GPUs from scheduling and is ready ``startup_seconds``
  later. Beyond ``gpu_capacity`` GPUs, new replicas stay Pending-Unschedulable (no GPU, no
  cost) and schedule, oldest first, as GPUs free up. Scaling down removes
  Pending-Unschedulable pods first, then starting ones (newest first), then the ready
  replica with the fewest running sequences, which drains: it takes no new work, finishes
  what it runs and holds its GPUs until then.
- **Cost.** GPU-seconds count every replica that holds GPUs (starting, ready, draining)
  from time 0 until the last request completes.
"""

from __future__ import annotations

import heapq
import math
import time
from collections import deque
from dataclasses import dataclass, field
from typing import ClassVar, Final, Protocol

import numpy as np
import numpy.typing as npt

from .errors import SimulationError
from .workload import Workload

# A replica's states, in ``Replica.state``: waiting for a GPU (beyond ``gpu_capacity``),
# loading the model, serving, finishing its sequences before it goes, gone.
PENDING: Final = 0
STARTING: Final = 1
READY: Final = 2
DRAINING: Final = 3
GONE: Final = 4

_COMPLETE: Final = 0
_READY_EVENT: Final = 1
_TICK: Final = 2
_RECORD: Final = 3


@dataclass(frozen=True)
class ReplicaModel:
    """One Triton replica's serving capacity and start-up (defaults: an 8B-class model, 1 GPU)."""

    single_sequence_tokens_per_second: float = 100.0
    half_rate_sequences: float = 32.0
    max_sequences: int = 64
    prefill_tokens_per_second: float = 10_000.0
    startup_seconds: float = 60.0
    gpus_per_replica: int = 1

    def sequence_tokens_per_second(self, sequences: float) -> float:
        """Decode rate of each sequence when ``sequences`` run together."""
        return self.single_sequence_tokens_per_second / (1.0 + sequences / self.half_rate_sequences)

    def replica_tokens_per_second(self, sequences: float) -> float:
        """Aggregate decode rate of one replica running ``sequences``."""
        return sequences * self.sequence_tokens_per_second(sequences)

    @property
    def max_tokens_per_second(self) -> float:
        """Throughput of a full replica: the most any replica can generate per second."""
        return self.replica_tokens_per_second(self.max_sequences)


@dataclass(frozen=True)
class SimConfig:
    """One replay's settings: the replica model, the cluster and the SLO."""

    replica: ReplicaModel = field(default_factory=ReplicaModel)
    gpu_capacity: int | None = 64
    initial_replicas: int = 1
    slo_queue_wait_seconds: float = 2.0
    record_interval_seconds: float = 10.0
    max_tail_seconds: float = 6 * 3600.0
    min_end_seconds: float = 0.0
    """Keep scaling and recording until at least this time, after the last request too
    (so a replay can be compared with a live run over the same window)."""
    first_tick_seconds: float = 0.0
    """When the scaling loop first runs (then every ``period_seconds``): its phase against
    the arrivals. A live operator's loop keeps no fixed phase against the traffic, and
    with little traffic whether a tick catches a burst decides the pool's size."""


@dataclass(frozen=True)
class Observation:
    """What the metrics say at one instant; each autoscaler reads the part it would see."""

    queued_requests: int
    inflight_requests: int
    inflight_sequences: int
    demand_tokens: float
    spec_replicas: int
    ready_replicas: int
    pending_unschedulable_replicas: int


class Autoscaler(Protocol):
    """A scaling loop as the simulator drives it: every ``period_seconds``, observe, decide."""

    name: str
    period_seconds: float

    def start(self, replicas: int, now_seconds: float) -> None:
        """Reset to a pool that has been steady at ``replicas`` until ``now_seconds``."""

    def decide(self, observation: Observation, now_seconds: float) -> int:
        """The replicas the scale target should have now."""


@dataclass(frozen=True)
class Timeline:
    """Samples every ``record_interval_seconds``: the pool and the queue over time."""

    time_seconds: npt.NDArray[np.float64]
    spec_replicas: npt.NDArray[np.int64]
    gpu_replicas: npt.NDArray[np.int64]
    ready_replicas: npt.NDArray[np.int64]
    queued_requests: npt.NDArray[np.int64]


@dataclass(frozen=True)
class SimResult:
    """One policy's replay of one workload."""

    policy: str
    trace: str
    wait_seconds: npt.NDArray[np.float64]
    ttft_seconds: npt.NDArray[np.float64]
    latency_seconds: npt.NDArray[np.float64]
    gpu_seconds: float
    end_seconds: float
    scale_changes: int
    timeline: Timeline
    replay_wall_seconds: float
    slo_queue_wait_seconds: float

    @property
    def completed(self) -> int:
        return int(np.count_nonzero(~np.isnan(self.latency_seconds)))

    @property
    def gpu_hours(self) -> float:
        return self.gpu_seconds / 3600.0


class Replica:
    """One replica in a replay: its state, running sequences and processor-sharing clock.

    ``finishing`` is a heap of ``(virtual tokens at which it finishes, owner id)``: every
    running sequence advances ``virtual`` at the same rate, so the smallest finishes first.
    """

    __slots__ = ("finishing", "sequences", "state", "updated", "version", "virtual")

    def __init__(self, state: int) -> None:
        self.state = state
        self.sequences = 0
        self.virtual = 0.0  # tokens decoded per sequence since the replica started serving
        self.updated = 0.0
        self.version = 0
        self.finishing: list[tuple[float, int]] = []


def simulate(workload: Workload, autoscaler: Autoscaler, config: SimConfig) -> SimResult:
    """Replay ``workload`` with ``autoscaler`` scaling the pool; every request completes."""
    return Replay(workload, autoscaler, config).run()


class Replay:
    """The mutable state of one replay; ``run`` is the event loop.

    The public hooks a richer replay overrides (``fleet``'s does, with samples as
    sequences): ``arrive(index)``, ``dispatch(now)``, ``complete(replica, now)``,
    ``observe()`` and ``record(now)``; ``advance``, ``reschedule``, ``terminate`` and
    ``account`` keep a replica's clock, its next completion event and the GPU time.
    """

    whole_requests: ClassVar[bool] = True
    """A request's sequences all run on one replica (so none may need more than fit)."""

    def __init__(self, workload: Workload, autoscaler: Autoscaler, config: SimConfig) -> None:
        model = config.replica
        widest = int(workload.sequences.max()) if workload.requests else 0
        if self.whole_requests and widest > model.max_sequences:
            raise SimulationError(
                f"a request needs {widest} sequences; a replica runs "
                f"at most {model.max_sequences}")
        if not 0.0 <= config.first_tick_seconds < math.inf:
            raise SimulationError("the first scaling tick must be at a finite time >= 0 s")
        self.workload, self.autoscaler, self.config = workload, autoscaler, config
        self.model = model
        self.rate = [model.sequence_tokens_per_second(c) for c in range(model.max_sequences + 1)]
        self.arrival: list[float] = workload.trace.arrival_seconds.tolist()
        self.sequences: list[int] = workload.sequences.tolist()
        self.tokens: list[int] = workload.tokens_per_sequence.tolist()
        self.expected: list[float] = workload.expected_tokens.tolist()
        count = workload.requests
        self.started = np.full(count, np.nan)
        self.done = np.full(count, np.nan)
        self.events: list[tuple[float, int, int, Replica | None, int]] = []
        self.counter = 0
        self.queue: deque[int] = deque()
        self.replicas: list[Replica] = []  # every replica not gone, in creation order
        self.ready: list[Replica] = []
        self.inflight_requests = 0
        self.inflight_sequences = 0
        self.demand_tokens = 0.0
        self.completed = 0
        self.gpu_replicas = 0
        self.gpu_seconds = 0.0
        self.accounted = 0.0
        self.scale_changes = 0
        self.records: list[tuple[float, int, int, int, int]] = []

    # -- events -------------------------------------------------------------------------

    def push(self, at: float, kind: int, replica: Replica | None = None, version: int = 0) -> None:
        self.counter += 1
        heapq.heappush(self.events, (at, self.counter, kind, replica, version))

    def run(self) -> SimResult:
        wall = time.perf_counter()
        now = 0.0
        for _ in range(self.config.initial_replicas):
            warm = Replica(READY)
            self.replicas.append(warm)
            self.ready.append(warm)
            self.gpu_replicas += 1
        self.autoscaler.start(self.config.initial_replicas, now)
        self.push(self.config.first_tick_seconds, _TICK)
        self.push(0.0, _RECORD)
        arrival, total = self.arrival, len(self.arrival)
        next_index = 0
        deadline = (arrival[-1] if total else 0.0) + self.config.max_tail_seconds
        events = self.events
        while self.completed < total or events[0][0] < self.config.min_end_seconds:
            next_arrival = arrival[next_index] if next_index < total else math.inf
            if next_arrival <= events[0][0]:
                now = next_arrival
                self.arrive(next_index)
                next_index += 1
                continue
            now, _, kind, replica, version = heapq.heappop(events)
            if now > deadline:
                raise SimulationError(
                    f"{self.autoscaler.name}: {total - self.completed} requests still open "
                    f"{self.config.max_tail_seconds:.0f}s after the last arrival")
            if kind == _COMPLETE:
                assert replica is not None
                if version == replica.version:
                    self.complete(replica, now)
            elif kind == _READY_EVENT:
                assert replica is not None
                if replica.state == STARTING:
                    replica.state = READY
                    replica.updated = now
                    self.ready.append(replica)
                    self.dispatch(now)
            elif kind == _TICK:
                self.tick(now)
                self.push(now + self.autoscaler.period_seconds, _TICK)
            else:
                self.record(now)
                self.push(now + self.config.record_interval_seconds, _RECORD)
        self.account(now)
        self.record(now)
        return self.result(now, time.perf_counter() - wall)

    def arrive(self, index: int) -> None:
        self.queue.append(index)
        self.demand_tokens += self.expected[index]
        self.dispatch(self.arrival[index])

    def dispatch(self, now: float) -> None:
        queue, limit = self.queue, self.model.max_sequences
        while queue:
            index = queue[0]
            need = self.sequences[index]
            best: Replica | None = None
            most_free = -1
            for replica in self.ready:
                free = limit - replica.sequences
                if free > most_free:
                    best, most_free = replica, free
            if best is None or most_free < need:
                return
            queue.popleft()
            self.advance(best, now)
            best.sequences += need
            heapq.heappush(best.finishing, (best.virtual + self.tokens[index], index))
            self.started[index] = now
            self.inflight_requests += 1
            self.inflight_sequences += need
            self.reschedule(best, now)

    def complete(self, replica: Replica, now: float) -> None:
        self.advance(replica, now)
        finishing = replica.finishing
        horizon = replica.virtual + 1e-6 * max(1.0, replica.virtual)
        while finishing and finishing[0][0] <= horizon:
            _, index = heapq.heappop(finishing)
            need = self.sequences[index]
            replica.sequences -= need
            self.done[index] = now
            self.completed += 1
            self.inflight_requests -= 1
            self.inflight_sequences -= need
            self.demand_tokens -= self.expected[index]
        self.reschedule(replica, now)
        if replica.state == DRAINING:
            if replica.sequences == 0:
                self.terminate(replica, now)
        else:
            self.dispatch(now)

    def advance(self, replica: Replica, now: float) -> None:
        if replica.sequences:
            replica.virtual += self.rate[replica.sequences] * (now - replica.updated)
        replica.updated = now

    def reschedule(self, replica: Replica, now: float) -> None:
        replica.version += 1
        if replica.finishing:
            remaining = replica.finishing[0][0] - replica.virtual
            delay = max(remaining, 0.0) / self.rate[replica.sequences]
            self.push(now + delay, _COMPLETE, replica, replica.version)

    # -- scaling ------------------------------------------------------------------------

    def observe(self) -> Observation:
        pending = sum(1 for r in self.replicas if r.state == PENDING)
        return Observation(
            queued_requests=len(self.queue),
            inflight_requests=self.inflight_requests,
            inflight_sequences=self.inflight_sequences,
            demand_tokens=max(self.demand_tokens, 0.0),
            spec_replicas=sum(1 for r in self.replicas if r.state != DRAINING),
            ready_replicas=len(self.ready),
            pending_unschedulable_replicas=pending,
        )

    def tick(self, now: float) -> None:
        observation = self.observe()
        desired = self.autoscaler.decide(observation, now)
        if desired < 0:
            raise SimulationError(f"{self.autoscaler.name} asked for {desired} replicas")
        current = observation.spec_replicas
        if desired != current:
            self.scale_changes += 1
        if desired > current:
            for _ in range(desired - current):
                replica = Replica(PENDING)
                self.replicas.append(replica)
            self.schedule_pending(now)
        elif desired < current:
            self.remove(current - desired, now)

    def schedule_pending(self, now: float) -> None:
        capacity = self.config.gpu_capacity
        per_replica = self.model.gpus_per_replica
        for replica in self.replicas:
            if replica.state != PENDING:
                continue
            if capacity is not None and (self.gpu_replicas + 1) * per_replica > capacity:
                return
            self.account(now)
            self.gpu_replicas += 1
            replica.state = STARTING
            self.push(now + self.model.startup_seconds, _READY_EVENT, replica)

    def remove(self, count: int, now: float) -> None:
        for state in (PENDING, STARTING):
            for replica in reversed(list(self.replicas)):
                if count and replica.state == state:
                    if state == STARTING:
                        self.account(now)
                        self.gpu_replicas -= 1
                    replica.state = GONE
                    self.replicas.remove(replica)
                    count -= 1
        for replica in sorted(self.ready, key=lambda r: r.sequences)[:count]:
            self.ready.remove(replica)
            replica.state = DRAINING
            if replica.sequences == 0:
                self.terminate(replica, now)
        self.schedule_pending(now)

    def terminate(self, replica: Replica, now: float) -> None:
        self.account(now)
        self.gpu_replicas -= 1
        replica.state = GONE
        self.replicas.remove(replica)
        self.schedule_pending(now)

    def account(self, now: float) -> None:
        self.gpu_seconds += self.gpu_replicas * self.model.gpus_per_replica * (now - self.accounted)
        self.accounted = now

    def record(self, now: float) -> None:
        spec = sum(1 for r in self.replicas if r.state != DRAINING)
        self.records.append((now, spec, self.gpu_replicas, len(self.ready), len(self.queue)))

    def result(self, now: float, wall_seconds: float) -> SimResult:
        trace = self.workload.trace
        arrival = trace.arrival_seconds
        prefill = trace.input_tokens / self.model.prefill_tokens_per_second
        wait = self.started - arrival
        table = np.array(self.records, dtype=np.float64).reshape(-1, 5)
        timeline = Timeline(
            time_seconds=table[:, 0],
            spec_replicas=table[:, 1].astype(np.int64),
            gpu_replicas=table[:, 2].astype(np.int64),
            ready_replicas=table[:, 3].astype(np.int64),
            queued_requests=table[:, 4].astype(np.int64),
        )
        return SimResult(
            policy=self.autoscaler.name,
            trace=trace.name,
            wait_seconds=wait,
            ttft_seconds=wait + prefill,
            latency_seconds=self.done - arrival + prefill,
            gpu_seconds=self.gpu_seconds,
            end_seconds=now,
            scale_changes=self.scale_changes,
            timeline=timeline,
            replay_wall_seconds=wall_seconds,
            slo_queue_wait_seconds=self.config.slo_queue_wait_seconds,
        )

"""The operator's own Prometheus metrics: GPU time, cost and replicas per ReasoningService.

Role: the operator half of the cost contract. ``autoscale.tick`` hands each tick here
(``observe``); ``ponder cost report`` (``costreport.query``) reads the series back from
Prometheus. The accounting itself is ``policy.cost``'s; this module only exports it.

Series (labels ``namespace``, ``service``, ``gpu_type`` and the OpenCost allocation labels
``team``, ``department``, ``env``, ``owner``, ``app``; an unset label is the empty string):

- ``ponder_gpu_seconds_total`` (counter): GPU-seconds held by ready Triton replicas;
- ``ponder_cost_total`` (counter, USD): their price; absent for a service without a
  price, so a report can tell "unpriced" from "free";
- ``ponder_idle_gpu_seconds_total`` (counter): the part of those GPU-seconds held while
  the router's demand (``ponder_router_demand_tokens``, as the autoscaler read it, fresh)
  was 0;
- ``ponder_hourly_cost`` (gauge, USD per hour): the current rate (ready GPUs x price);
- ``ponder_ready_gpus`` (gauge): GPUs of ready replicas now;
- ``ponder_replicas{namespace, service, state}`` (gauge): ``ready``, ``pending`` (created,
  not ready) and ``desired`` Triton replicas.

GPU-seconds and cost are totals since the service was created: the first sight of a
service in this process starts its counters at the status totals (``resume``), and
``observe`` advances them only to totals the status has stored, so after a restart they
go on exactly where they stopped and never step back (which ``rate`` and ``increase``
would take for a counter reset). A change of labels (a new ``team``, say) moves the
service to new series that start at the same totals, and drops the old ones. The idle
counter is this process's own (no status field keeps it): it restarts from 0, an ordinary
counter reset. The operator's scrape configuration must keep these labels
(``honor_labels``): a target's own ``namespace``/``service`` labels would rename them.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

from ponder_operator.api.spec import ReasoningServiceSpec
from ponder_operator.api.status import ReasoningServiceStatus
from ponder_operator.policy.scaling import Signals

__all__ = [
    "COST_LABELS",
    "SERIES_LABELS",
    "OperatorMetrics",
    "is_idle",
    "service_labels",
    "start_metrics_server",
]

COST_LABELS: tuple[str, ...] = ("team", "department", "env", "owner", "app")
SERIES_LABELS: tuple[str, ...] = ("namespace", "service", "gpu_type", *COST_LABELS)
REPLICA_STATES: tuple[str, ...] = ("ready", "pending", "desired")
UNKNOWN_GPU_TYPE = "unknown"

Key = tuple[str, str]  # (namespace, service)


def service_labels(spec: ReasoningServiceSpec) -> tuple[str, dict[str, str]]:
    """The GPU type and the cost allocation labels a service's series carry.

    The GPU type is the price list's name when the spec prices through one
    (``spec.cost.pricing.gpuType``), else the node product label it asks for
    (``spec.resources.gpuProduct``), else ``unknown``.
    """
    if spec.cost.pricing is not None:
        gpu_type = spec.cost.pricing.gpu_type
    else:
        gpu_type = spec.resources.gpu_product or UNKNOWN_GPU_TYPE
    labels = {name: getattr(spec.cost.labels, name) or "" for name in COST_LABELS}
    return gpu_type, labels


def is_idle(signals: Signals | None) -> bool:
    """A fresh, successful read of the router's demand that says 0 (unknown is not idle)."""
    return (signals is not None and signals.read_ok and not signals.stale
            and signals.demand_tokens is not None and signals.demand_tokens == 0)


@dataclass
class _Exported:
    """What one service's counters hold in this process (the totals since creation)."""

    values: tuple[str, ...]
    gpu_seconds: float = 0.0
    cost: float | None = None


@dataclass
class OperatorMetrics:
    """Every cost and replica series of one operator process, in ``registry``."""

    registry: CollectorRegistry = field(
        default_factory=lambda: CollectorRegistry(auto_describe=True))
    _services: dict[Key, _Exported] = field(default_factory=dict, init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False)

    def __post_init__(self) -> None:
        r = self.registry
        self.gpu_seconds = Counter(
            "ponder_gpu_seconds", "GPU-seconds held by ready Triton replicas.",
            SERIES_LABELS, registry=r)
        self.cost = Counter(
            "ponder_cost", "Cost of the GPU-seconds held, in USD.", SERIES_LABELS, registry=r)
        self.idle_gpu_seconds = Counter(
            "ponder_idle_gpu_seconds",
            "GPU-seconds held while the router reported no demand.", SERIES_LABELS, registry=r)
        self.hourly_cost = Gauge(
            "ponder_hourly_cost", "Current cost rate of the ready GPUs, in USD per hour.",
            SERIES_LABELS, registry=r)
        self.ready_gpus = Gauge(
            "ponder_ready_gpus", "GPUs of ready Triton replicas.", SERIES_LABELS, registry=r)
        self.replicas = Gauge(
            "ponder_replicas", "Triton replicas by state (ready, pending, desired).",
            ["namespace", "service", "state"], registry=r)

    @staticmethod
    def _values(namespace: str, service: str, gpu_type: str,
                labels: Mapping[str, str]) -> tuple[str, ...]:
        return (namespace, service, gpu_type or UNKNOWN_GPU_TYPE,
                *(labels.get(name) or "" for name in COST_LABELS))

    def _remove(self, values: tuple[str, ...]) -> None:
        for metric in (self.gpu_seconds, self.cost, self.idle_gpu_seconds, self.hourly_cost,
                       self.ready_gpus):
            with contextlib.suppress(KeyError):  # an unpriced service has no cost series
                metric.remove(*values)

    def _series(self, key: Key, values: tuple[str, ...], gpu_seconds_total: float,
                cost_total: float | None) -> _Exported:
        """The service's exported state; new series (first sight, new labels) start at the
        service's totals: the given ones on first sight, the exported ones on a move."""
        state = self._services.get(key)
        if state is not None and state.values == values:
            return state
        if state is not None:
            self._remove(state.values)
            gpu_seconds_total, cost_total = state.gpu_seconds, state.cost
        state = _Exported(values, max(gpu_seconds_total, 0.0),
                          None if cost_total is None else max(cost_total, 0.0))
        self.gpu_seconds.labels(*values).inc(state.gpu_seconds)
        if state.cost is not None:
            self.cost.labels(*values).inc(state.cost)
        self._services[key] = state
        return state

    def resume(
        self, namespace: str, service: str, *, gpu_type: str, labels: Mapping[str, str],
        gpu_seconds_total: float, cost_total: float | None,
    ) -> None:
        """Start a service's counters at its status totals, once per process.

        A no-op when the service is already exported with these labels, so calling it on
        every tick is cheap and safe.
        """
        values = self._values(namespace, service, gpu_type, labels)
        with self._lock:
            self._series((namespace, service), values, gpu_seconds_total, cost_total)

    def record_tick(
        self, namespace: str, service: str, *, gpu_type: str, labels: Mapping[str, str],
        gpu_seconds: float, cost: float | None, hourly_cost: float | None,
        ready: int, pending: int, desired: int, ready_gpus: int,
        idle_gpu_seconds: float = 0.0,
    ) -> None:
        """Add one tick's GPU-seconds, cost (USD; None: no price) and idle GPU-seconds, and
        set the gauges. A service not resumed first starts from 0."""
        values = self._values(namespace, service, gpu_type, labels)
        with self._lock:
            state = self._series((namespace, service), values, 0.0, None)
            state.gpu_seconds += max(gpu_seconds, 0.0)
            self.gpu_seconds.labels(*values).inc(max(gpu_seconds, 0.0))
            if cost is not None:
                state.cost = (state.cost or 0.0) + max(cost, 0.0)
                self.cost.labels(*values).inc(max(cost, 0.0))
            self.idle_gpu_seconds.labels(*values).inc(max(idle_gpu_seconds, 0.0))
            if hourly_cost is not None:
                self.hourly_cost.labels(*values).set(hourly_cost)
            else:
                with contextlib.suppress(KeyError):
                    self.hourly_cost.remove(*values)
            self.ready_gpus.labels(*values).set(ready_gpus)
            for state_name, count in zip(REPLICA_STATES, (ready, pending, desired),
                                         strict=True):
                self.replicas.labels(namespace, service, state_name).set(count)

    def observe(
        self, namespace: str, service: str, spec: ReasoningServiceSpec,
        previous: ReasoningServiceStatus, status: ReasoningServiceStatus, *,
        persisted: bool, signals: Signals | None = None,
    ) -> None:
        """Export one autoscaler tick, from the status before (``previous``) and after it.

        Call it every tick; ``persisted`` says whether this tick wrote ``status`` to the
        API server. The counters move up to the persisted totals only (see the module
        docstring); the gauges follow ``status``; the idle counter takes the tick's
        GPU-seconds when ``signals`` read a demand of 0 (``is_idle``).
        """
        gpu_type, labels = service_labels(spec)
        key = (namespace, service)
        with self._lock:
            exported = self._services.get(key)
            before = ((exported.gpu_seconds, exported.cost) if exported is not None
                      else (previous.gpu_seconds_total or 0.0, previous.cost))
        self.resume(namespace, service, gpu_type=gpu_type, labels=labels,
                    gpu_seconds_total=before[0], cost_total=before[1])
        gpu_total = status.gpu_seconds_total or 0.0
        gpu_step = max(gpu_total - before[0], 0.0) if persisted else 0.0
        cost_step: float | None = None
        if status.cost is not None:
            cost_step = max(status.cost - (before[1] or 0.0), 0.0) if persisted else 0.0
        tick_gpu_seconds = max(gpu_total - (previous.gpu_seconds_total or 0.0), 0.0)
        ready = status.ready_replicas or 0
        self.record_tick(
            namespace, service, gpu_type=gpu_type, labels=labels, gpu_seconds=gpu_step,
            cost=cost_step, hourly_cost=status.hourly_cost, ready=ready,
            pending=max((status.replicas or 0) - ready, 0),
            desired=status.desired_replicas or 0,
            ready_gpus=ready * spec.resources.gpus_per_replica,
            idle_gpu_seconds=tick_gpu_seconds if is_idle(signals) else 0.0)

    def forget(self, namespace: str, service: str) -> None:
        """Drop every series of a deleted service."""
        with self._lock:
            state = self._services.pop((namespace, service), None)
            if state is not None:
                self._remove(state.values)
            for state_name in REPLICA_STATES:
                with contextlib.suppress(KeyError):
                    self.replicas.remove(namespace, service, state_name)


def start_metrics_server(host: str, port: int, metrics: OperatorMetrics) -> WSGIServer:
    """Serve ``metrics`` at ``http://host:port/metrics`` from a daemon thread.

    Returns the server (``.shutdown()`` stops it); ``port`` 0 picks a free one
    (``server.server_address``).
    """
    server, _thread = start_http_server(port, addr=host, registry=metrics.registry)
    return server

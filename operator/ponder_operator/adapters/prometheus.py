"""Read the autoscaler's signals from Prometheus (PromQL through prometheus-api-client).

Series (the router exports them under these names, ``ponder_router/metrics.py``; a
rename there must change the queries here): the router's ``ponder_router_demand_tokens``,
``ponder_router_queue_depth`` and ``ponder_router_inflight_samples`` (label ``service``),
and Triton's ``nv_inference_pending_request_count`` (label ``ponder_service``, added by the
scrape configuration from the pod label ``ponder.dev/service``). A series without a
``namespace`` label stands for any namespace (a static scrape configuration has none).

One batch of queries (``sum by (namespace, service)``) serves every service's loop: the
``SignalCache`` refreshes it at most once per ``refresh_seconds``, so a thousand services
cost five queries per period, not five thousand.

A failed query, a missing router series or a sample older than ``max_age_seconds`` comes
back as a ``Signals`` with ``read_ok=False`` or ``stale=True``: the policy then holds the
current replicas. Missing metrics never read as "no load".
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import requests
from prometheus_api_client import PrometheusConnect
from prometheus_api_client.exceptions import PrometheusApiClientException
from urllib3.util.retry import Retry

from ponder_operator.policy.scaling import Signals

Key = tuple[str, str]  # (namespace or "", service)

QUERIES: dict[str, str] = {
    "demand": "sum by (namespace, service) (ponder_router_demand_tokens)",
    "queue": "sum by (namespace, service) (ponder_router_queue_depth)",
    "inflight": "sum by (namespace, service) (ponder_router_inflight_samples)",
    "newest": "max by (namespace, service) (timestamp(ponder_router_demand_tokens))",
    "pending": "label_replace(sum by (namespace, ponder_service) "
               "(nv_inference_pending_request_count), "
               '"service", "$1", "ponder_service", "(.*)")',
}


def connect(url: str, timeout_seconds: float) -> PrometheusConnect:
    """A client that fails fast: one retry, a bounded timeout (the loop runs every few s)."""
    return PrometheusConnect(url=url, disable_ssl=True, timeout=math.ceil(timeout_seconds),
                             retry=Retry(total=1, backoff_factor=0.1))


def fetch_batch(client: PrometheusConnect) -> dict[str, dict[Key, float]]:
    """Every query's value per (namespace, service); raises on a failed query."""
    batch: dict[str, dict[Key, float]] = {}
    for name, promql in QUERIES.items():
        values: dict[Key, float] = {}
        for series in client.custom_query(promql):
            labels = series["metric"]
            key = (labels.get("namespace", ""), labels.get("service", ""))
            values[key] = float(series["value"][1])
        batch[name] = values
    return batch


def signals_for(
    batch: dict[str, dict[Key, float]], namespace: str, service: str, now_seconds: float,
    max_age_seconds: float,
) -> Signals:
    """One service's ``Signals`` from a batch (its namespace's series, else unlabelled ones)."""
    key = (namespace, service) if (namespace, service) in batch["demand"] else ("", service)
    if key not in batch["demand"] or key not in batch["newest"]:
        return Signals(read_ok=False,
                       error=f"no ponder_router_demand_tokens series for {service}")
    newest = batch["newest"][key]
    age = now_seconds - newest
    stale = age > max_age_seconds or not math.isfinite(age)
    return Signals(
        demand_tokens=batch["demand"][key],
        router_queue_depth=batch["queue"].get(key),
        inflight_samples=batch["inflight"].get(key),
        triton_pending_requests=batch["pending"].get(key),
        sampled_at_seconds=newest,
        stale=stale,
        error=f"newest router sample is {age:.0f} s old" if stale else "",
    )


@dataclass
class SignalCache:
    """Shared, thread-safe batch of signals, refreshed at most every ``refresh_seconds``."""

    fetch: Callable[[], dict[str, dict[Key, float]]]
    refresh_seconds: float = 2.0
    max_age_seconds: float = 30.0
    _batch: dict[str, dict[Key, float]] | None = None
    _error: str = ""
    _fetched_at: float = -math.inf
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def signals(self, namespace: str, service: str, now_seconds: float) -> Signals:
        with self._lock:
            if now_seconds - self._fetched_at >= self.refresh_seconds:
                self._fetched_at = now_seconds
                try:
                    self._batch, self._error = self.fetch(), ""
                except (PrometheusApiClientException, requests.RequestException,
                        ValueError, KeyError) as exc:
                    self._batch, self._error = None, f"Prometheus query failed: {exc}"
            batch, error = self._batch, self._error
        if batch is None:
            return Signals(read_ok=False, error=error or "no Prometheus read yet")
        return signals_for(batch, namespace, service, now_seconds, self.max_age_seconds)

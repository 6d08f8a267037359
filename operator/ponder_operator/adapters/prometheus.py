"""Read the autoscaler's signals from Prometheus (PromQL through prometheus-api-client).

Series (the router exports them under these names, ``ponder_router/metrics.py``; a
rename there must change the queries here): the router's ``ponder_router_demand_tokens``,
``ponder_router_queue_depth`` and ``ponder_router_inflight_samples`` (label ``service``),
and, from the Triton pods (label ``ponder_service``, added by the scrape configuration
from the pod label ``ponder.dev/service``), Triton's ``nv_inference_pending_request_count``
and the vLLM backend's ``vllm:num_requests_waiting`` and ``vllm:generation_tokens_total``
(reported when the model's ``config.pbtxt`` sets ``REPORT_CUSTOM_METRICS``). A series
without a ``namespace`` label stands for any namespace (a static scrape configuration has
none).

The vLLM backend hands every request to its engine at once, so Triton's pending count
stays near 0 and the requests wait inside the engine: the queue the policy sees is the
sum of both (either alone when only one is reported). The measured throughput is the
generation-token rate of the replicas that had requests waiting in the engine through the
whole ``RATE_WINDOW`` (their capacity, not their load), averaged over those replicas;
with none saturated, or no ``vllm:`` series, it is None and the policy uses its prior.

One batch of queries (``sum by (namespace, service)``) serves every service's loop: the
``SignalCache`` refreshes it at most once per ``refresh_seconds``, so a thousand services
cost eight queries per period, not eight thousand. The eighth, ``pod_load``, is keyed by
(namespace, pod) instead: each Triton pod's requests (running and waiting in the vLLM
engine, pending in Triton), which set its pod-deletion-cost (``pod_loads``).

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

RATE_WINDOW = "1m"
"""The window of the generation-token rate (at least four scrapes at the usual 15 s)."""


def _by_service(promql: str) -> str:
    """``promql`` (by ``namespace, ponder_service``) with the label renamed ``service``."""
    return f'label_replace({promql}, "service", "$1", "ponder_service", "(.*)")'


QUERIES: dict[str, str] = {
    "demand": "sum by (namespace, service) (ponder_router_demand_tokens)",
    "queue": "sum by (namespace, service) (ponder_router_queue_depth)",
    "inflight": "sum by (namespace, service) (ponder_router_inflight_samples)",
    "newest": "max by (namespace, service) (timestamp(ponder_router_demand_tokens))",
    "pending": _by_service(
        "sum by (namespace, ponder_service) (nv_inference_pending_request_count)"),
    "engine_waiting": _by_service(
        "sum by (namespace, ponder_service) (vllm:num_requests_waiting)"),
    "saturated_tokens_per_second": _by_service(
        "avg by (namespace, ponder_service) ("
        "sum by (namespace, ponder_service, instance) "
        f"(rate(vllm:generation_tokens_total[{RATE_WINDOW}])) "
        "and on (instance) "
        f"(sum by (instance) (min_over_time(vllm:num_requests_waiting[{RATE_WINDOW}])) > 0))"),
    "pod_load": "sum by (namespace, pod) ({__name__=~\"vllm:num_requests_running|"
                'vllm:num_requests_waiting|nv_inference_pending_request_count", '
                'ponder_service!=""})',
}

_KEY_LABELS = {"pod_load": "pod"}
"""The queries keyed by another label than ``service``."""


def connect(url: str, timeout_seconds: float) -> PrometheusConnect:
    """A client that fails fast: one retry, a bounded timeout (the loop runs every few s)."""
    return PrometheusConnect(url=url, disable_ssl=True, timeout=math.ceil(timeout_seconds),
                             retry=Retry(total=1, backoff_factor=0.1))


def fetch_batch(client: PrometheusConnect) -> dict[str, dict[Key, float]]:
    """Every query's value per (namespace, service), or (namespace, pod) for ``pod_load``;
    raises on a failed query."""
    batch: dict[str, dict[Key, float]] = {}
    for name, promql in QUERIES.items():
        values: dict[Key, float] = {}
        for series in client.custom_query(promql):
            labels = series["metric"]
            key = (labels.get("namespace", ""), labels.get(_KEY_LABELS.get(name, "service"), ""))
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
        triton_pending_requests=_sum_present(batch["pending"].get(key),
                                             batch["engine_waiting"].get(key)),
        measured_tokens_per_second_per_replica=batch["saturated_tokens_per_second"].get(key),
        sampled_at_seconds=newest,
        stale=stale,
        error=f"newest router sample is {age:.0f} s old" if stale else "",
    )


def _sum_present(*values: float | None) -> float | None:
    """The sum of the values read; None when none was."""
    read = [value for value in values if value is not None]
    return sum(read) if read else None


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

    def pod_loads(self, namespace: str) -> dict[str, float] | None:
        """Requests in each Triton pod of ``namespace`` (by pod name), from the batch the
        last ``signals`` call read; None when that read failed."""
        with self._lock:
            batch = self._batch
        if batch is None:
            return None
        return {pod: load for (pod_namespace, pod), load in batch["pod_load"].items()
                if pod_namespace == namespace}

"""Read the autoscaler's signals from Prometheus (PromQL through prometheus-api-client).

Series (names fixed in DESIGN.md): the router's ``ponder_router_demand_tokens``,
``ponder_router_queue_depth`` and ``ponder_router_inflight_samples`` (label ``service``),
and Triton's ``nv_inference_pending_request_count`` (label ``ponder_service``, added by the
scrape configuration from the pod label ``ponder.dev/service``). A series without a
``namespace`` label matches any namespace (a static scrape configuration has none).

A failed query, a missing router series or a sample older than ``max_age_seconds`` comes
back as a ``Signals`` with ``read_ok=False`` or ``stale=True``: the policy then holds the
current replicas. Missing metrics never read as "no load".
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import requests
from prometheus_api_client import PrometheusConnect
from prometheus_api_client.exceptions import PrometheusApiClientException
from urllib3.util.retry import Retry

from ponder_operator.policy.scaling import Signals


@dataclass(frozen=True)
class SignalQuery:
    """Which service's series to read, and how old a sample may be."""

    namespace: str
    service: str
    max_age_seconds: float = 30.0


def _router_selector(q: SignalQuery) -> str:
    return f'service="{q.service}",namespace=~"{q.namespace}|"'


def _triton_selector(q: SignalQuery) -> str:
    return f'ponder_service="{q.service}",namespace=~"{q.namespace}|"'


def _scalar(client: PrometheusConnect, promql: str) -> tuple[float | None, float | None]:
    """(value, sample time) of a one-series result; (None, None) when there is no series."""
    result = client.custom_query(promql)
    if not result:
        return None, None
    sample_time, value = result[0]["value"]
    return float(value), float(sample_time)


def fetch_signals(client: PrometheusConnect, query: SignalQuery, now_seconds: float) -> Signals:
    router = _router_selector(query)
    try:
        demand, _ = _scalar(client, f"sum(ponder_router_demand_tokens{{{router}}})")
        queue, _ = _scalar(client, f"sum(ponder_router_queue_depth{{{router}}})")
        inflight, _ = _scalar(client, f"sum(ponder_router_inflight_samples{{{router}}})")
        newest, _ = _scalar(client, f"max(timestamp(ponder_router_demand_tokens{{{router}}}))")
        pending, _ = _scalar(
            client, f"sum(nv_inference_pending_request_count{{{_triton_selector(query)}}})")
    except (PrometheusApiClientException, requests.RequestException, ValueError) as exc:
        return Signals(read_ok=False, error=f"Prometheus query failed: {exc}")
    if demand is None or newest is None:
        return Signals(read_ok=False,
                       error=f"no ponder_router_demand_tokens series for {query.service}")
    age = now_seconds - newest
    return Signals(
        demand_tokens=demand,
        router_queue_depth=queue,
        inflight_samples=inflight,
        triton_pending_requests=pending,
        sampled_at_seconds=newest,
        stale=age > query.max_age_seconds or not math.isfinite(age),
        error=f"newest router sample is {age:.0f} s old" if age > query.max_age_seconds else "",
    )


def connect(url: str, timeout_seconds: float) -> PrometheusConnect:
    """A client that fails fast: one retry, a bounded timeout (the loop runs every few s)."""
    return PrometheusConnect(url=url, disable_ssl=True, timeout=math.ceil(timeout_seconds),
                             retry=Retry(total=1, backoff_factor=0.1))

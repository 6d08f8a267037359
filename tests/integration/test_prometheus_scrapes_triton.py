"""Prometheus (Debian's package) scrapes a real Triton and answers PromQL through the client."""

from __future__ import annotations

import time
from collections.abc import Callable
from urllib.parse import urlparse

from prometheus_api_client import PrometheusConnect

from ponder_localstack.prometheus import Prometheus
from ponder_localstack.triton import TritonServer


def test_prometheus_scrapes_triton_and_promql_returns_its_series(
    triton_server: TritonServer, prometheus_factory: Callable[..., Prometheus]
) -> None:
    target = urlparse(triton_server.metrics_url).netloc
    prometheus = prometheus_factory({"triton": [target]})
    client = PrometheusConnect(url=prometheus.url, disable_ssl=True)

    deadline = time.monotonic() + 30
    series: list[dict[str, object]] = []
    while time.monotonic() < deadline and not series:
        series = client.custom_query(
            'nv_inference_pending_request_count{job="triton", model="ponder-sim-llm"}'
        )
        time.sleep(0.5)

    assert series, "Prometheus never returned Triton's pending-request series"
    assert series[0]["metric"]["instance"] == target  # type: ignore[index]
    up = client.custom_query('up{job="triton"}')
    assert up[0]["value"][1] == "1"

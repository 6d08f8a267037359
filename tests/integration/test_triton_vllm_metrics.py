"""The stand-in exports the vLLM backend's ``vllm:`` series, and the operator reads them.

Triton's vLLM backend (``REPORT_CUSTOM_METRICS``) reports its engine's queue, running
requests and token counters on Triton's metrics port, labelled ``model`` and ``version``;
the stand-in reports the same series through the python backend's custom metrics, and
with ``engine_queue`` queues as the vLLM backend does (issue 20, row 11: Triton's pending
count stays 0 there). A real Prometheus scraping a real Triton then answers the
autoscaler's own queries.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable
from urllib.parse import urlparse

import httpx
import pytest
import tritonclient.grpc.aio as grpcclient

from fixtures_triton import TEST_MAX_CONCURRENCY, StartTriton
from ponder_localstack.prometheus import Prometheus
from ponder_localstack.sim_llm import MODEL_NAME
from ponder_localstack.triton import SimModelOptions, TritonServer
from ponder_operator.adapters.prometheus import connect, fetch_batch, signals_for
from test_triton_sim_llm import generate, pending_requests

pytestmark = pytest.mark.triton

SERIES = re.compile(r'^(vllm:[a-z_]+)\{([^}]*)\} (\S+)$', re.M)
REQUESTS, TOKENS = 24, 30


def vllm_series(server: TritonServer) -> dict[str, tuple[str, float]]:
    """Each ``vllm:`` series of the stand-in model: name -> (labels, value)."""
    body = httpx.get(server.metrics_url, timeout=10).text
    return {name: (labels, float(value)) for name, labels, value in SERIES.findall(body)
            if f'model="{MODEL_NAME}"' in labels}


async def test_the_stand_in_reports_the_vllm_engines_queue_running_requests_and_tokens(
    triton_server: TritonServer,
) -> None:
    before = vllm_series(triton_server)
    assert set(before) >= {"vllm:num_requests_running", "vllm:num_requests_waiting",
                           "vllm:prompt_tokens_total", "vllm:generation_tokens_total"}
    assert all('version="1"' in labels for labels, _ in before.values())
    sampling = {"max_tokens": TOKENS, "ignore_eos": True, "ponder_token_latency_ms": 20}
    peak_running = peak_waiting = 0.0
    async with grpcclient.InferenceServerClient(triton_server.grpc_url) as client:
        tasks = [asyncio.create_task(generate(client, f"Metrics request {i}.", sampling))
                 for i in range(REQUESTS)]
        deadline = time.monotonic() + 60
        while not all(t.done() for t in tasks) and time.monotonic() < deadline:
            now = await asyncio.to_thread(vllm_series, triton_server)
            peak_running = max(peak_running, now["vllm:num_requests_running"][1])
            peak_waiting = max(peak_waiting, now["vllm:num_requests_waiting"][1])
            await asyncio.sleep(0.05)
        results = await asyncio.gather(*tasks)
    # The model publishes its counts every 50 ms: wait for the publish after the last request.
    settle = time.monotonic() + 5
    after = vllm_series(triton_server)
    while (after["vllm:num_requests_running"][1] or after["vllm:num_requests_waiting"][1]
           or after["vllm:generation_tokens_total"][1]
           - before["vllm:generation_tokens_total"][1] < REQUESTS * TOKENS) \
            and time.monotonic() < settle:  # fmt: skip
        await asyncio.sleep(0.05)
        after = await asyncio.to_thread(vllm_series, triton_server)

    assert all(r.error is None for r in results)
    assert peak_running == TEST_MAX_CONCURRENCY
    assert peak_waiting >= 1
    assert after["vllm:num_requests_running"][1] == 0
    assert after["vllm:num_requests_waiting"][1] == 0
    generated = (after["vllm:generation_tokens_total"][1]
                 - before["vllm:generation_tokens_total"][1])
    assert generated == REQUESTS * TOKENS
    assert after["vllm:prompt_tokens_total"][1] > before["vllm:prompt_tokens_total"][1]


async def test_with_an_engine_queue_tritons_pending_count_stays_zero_and_vllm_waiting_counts(
    start_triton: StartTriton,
) -> None:
    # As with the vLLM backend: Triton hands every request over at once. 16 requests of
    # 30 tokens at 20 ms, 4 generating at once: 12 wait in the engine at first.
    server = start_triton(SimModelOptions(token_latency_ms=20, max_concurrency=4,
                                          engine_queue=True))
    sampling = {"max_tokens": TOKENS, "ignore_eos": True}
    peak_waiting = peak_running = 0.0
    hidden = 0.0  # the most requests waiting in the engine while Triton's count said none
    async with (
        grpcclient.InferenceServerClient(server.grpc_url) as client,
        httpx.AsyncClient(timeout=10) as http,
    ):
        tasks = [asyncio.create_task(generate(client, f"Queued request {i}.", sampling))
                 for i in range(16)]
        deadline = time.monotonic() + 60
        while not all(t.done() for t in tasks) and time.monotonic() < deadline:
            pending = await pending_requests(http, server, MODEL_NAME)
            now = await asyncio.to_thread(vllm_series, server)
            waiting = now["vllm:num_requests_waiting"][1]
            peak_waiting = max(peak_waiting, waiting)
            hidden = max(hidden, waiting if pending == 0 else 0.0)
            peak_running = max(peak_running, now["vllm:num_requests_running"][1])
            await asyncio.sleep(0.05)
        results = await asyncio.gather(*tasks)

    assert all(r.error is None and len("".join(r.chunks).split()) == TOKENS for r in results)
    # Triton may hold a burst for a moment before the model takes it (more so on a busy
    # machine); what matters is that the engine's queue stays invisible to Triton's count.
    assert hidden >= 4, (hidden, peak_waiting)
    assert peak_running == 4
    assert peak_waiting >= 8


def test_the_autoscalers_queries_read_the_engine_queue_from_a_real_prometheus(
    triton_server: TritonServer, prometheus_factory: Callable[..., Prometheus]
) -> None:
    prometheus = prometheus_factory({})
    target = urlparse(triton_server.metrics_url).netloc
    # The labels the chart's PodMonitor relabelling gives a Triton pod.
    prometheus.set_jobs({}, [{"job_name": "triton", "static_configs": [{
        "targets": [target], "labels": {"namespace": "ns", "ponder_service": "svc"}}]}])
    client = connect(prometheus.url, timeout_seconds=5)

    deadline = time.monotonic() + 30
    batch = fetch_batch(client)
    while time.monotonic() < deadline and ("ns", "svc") not in batch["engine_waiting"]:
        time.sleep(0.5)
        batch = fetch_batch(client)

    assert batch["engine_waiting"][("ns", "svc")] == 0
    assert batch["pending"][("ns", "svc")] == 0
    # Nothing saturated the engine for a whole rate window: no measurement, the prior.
    assert ("ns", "svc") not in batch["saturated_tokens_per_second"]
    batch["demand"][("ns", "svc")], batch["newest"][("ns", "svc")] = 0.0, time.time()
    batch["queue"][("ns", "svc")] = 0.0
    signals = signals_for(batch, "ns", "svc", time.time(), max_age_seconds=30)
    assert signals.triton_pending_requests == 0
    assert signals.measured_tokens_per_second_per_replica is None

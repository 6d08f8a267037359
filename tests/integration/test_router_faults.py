"""The router on a bad day: a Triton replica killed mid-stream, a Triton that hangs.

Real parts only: the ``ponder-router`` process, real Triton servers serving the stand-in
LLM, faults injected with signals (SIGKILL for a crash, SIGSTOP for a hang). Every
request is accounted for — sent = answered + rejected + failed with an error — and
nothing may hang: each scenario has a hard bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from fixtures_router import RouterProcess, StartRouterProcess
from fixtures_triton import StartTriton, triton_counter
from ponder_localstack.sim_llm import MODEL_NAME
from ponder_localstack.triton import SimModelOptions, TritonServer

pytestmark = pytest.mark.triton

SERVED = "sim-reasoner"
PROBLEMS = [
    "What is 1+1?",
    "Find the remainder when $2^{100}$ is divided by 7.",
    "How many positive divisors does 3600 have?",
    "Let $x^2 + y^2 = 14x + 6y + 6$. Find the largest possible value of $3x + 4y$.",
    "Find the number of ordered pairs $(a,b)$ of integers with $|a| + |b| \\le 10$ and "
    "$a \\cdot b$ even, such that the polynomial $x^2 + ax + b$ has integer roots.",
]


def router_config(*endpoints: str, **admission: Any) -> dict[str, Any]:
    return {"service": "sim", "modelName": SERVED, "tritonModel": MODEL_NAME,
            "endpoints": list(endpoints),
            "admission": {"maxConcurrentRequests": 32, "requestTimeoutSeconds": 30,
                          **admission}}  # fmt: skip


@dataclass
class Outcome:
    """What one client saw: ``answered``, ``rejected`` (429/503), ``failed`` (an error)."""

    kind: str
    status: int
    detail: str = ""


async def send(client: httpx.AsyncClient, router: RouterProcess, problem: str, *,
               stream: bool, effort: str = "high") -> Outcome:  # fmt: skip
    """One chat request; a streamed one is read to its end."""
    body = {"model": SERVED, "messages": [{"role": "user", "content": problem}],
            "reasoning_effort": effort, "stream": stream}  # fmt: skip
    url = router.url + "/v1/chat/completions"
    if not stream:
        response = await client.post(url, json=body)
        return classify(response.status_code, response.content, response.headers)
    async with client.stream("POST", url, json=body) as response:
        if response.status_code != 200:
            return classify(response.status_code, await response.aread(), response.headers)
        events = [line[6:] async for line in response.aiter_lines() if line.startswith("data: ")]
    if events and events[-1] == "[DONE]":
        return Outcome("answered", 200)
    last = json.loads(events[-1]) if events else {}
    assert "error" in last, f"a stream ended without [DONE] or an error: {events[-3:]}"
    return Outcome("failed", 200, last["error"]["message"])


def classify(status: int, content: bytes, headers: httpx.Headers) -> Outcome:
    if status == 200:
        return Outcome("answered", status)
    error = json.loads(content)["error"]  # every refusal is OpenAI's error shape
    assert error["message"], "an error without a message"
    if status in (429, 503):
        assert int(headers["retry-after"]) >= 1, "a refusal without Retry-After"
        return Outcome("rejected", status, error["message"])
    return Outcome("failed", status, error["message"])


async def load(router: RouterProcess, requests: int, bound_seconds: float, *,
               during: Any = None, streams: bool = True, effort: str = "high",
               ) -> list[Outcome]:  # fmt: skip
    """Send ``requests`` at once (every other one streamed, if ``streams``).

    ``during`` (a coroutine function) runs alongside; the whole batch must end within
    ``bound_seconds``, or the test fails: nothing may hang.
    """
    timeout = httpx.Timeout(bound_seconds, connect=5)
    async with httpx.AsyncClient(timeout=timeout) as client:
        calls = [send(client, router, PROBLEMS[i % len(PROBLEMS)], effort=effort,
                      stream=streams and i % 2 == 1) for i in range(requests)]  # fmt: skip
        if during is not None:
            calls.append(during())
        results = await asyncio.wait_for(asyncio.gather(*calls), bound_seconds)
    return [r for r in results if isinstance(r, Outcome)]


def settled(router: RouterProcess, timeout_seconds: float = 10) -> dict[str, float]:
    """The router's live gauges once nothing is running any more."""
    deadline = time.monotonic() + timeout_seconds
    while True:
        live = {name: router.metric_sum(name) for name in (
            "ponder_router_queue_depth", "ponder_router_inflight_samples",
            "ponder_router_demand_tokens")}
        if not any(live.values()) or time.monotonic() > deadline:
            return live
        time.sleep(0.2)


async def test_a_triton_killed_mid_stream_loses_no_request_and_the_router_recovers(
    start_triton: StartTriton, start_router_process: StartRouterProcess
) -> None:
    options = SimModelOptions(token_latency_ms=15, max_concurrency=16)
    doomed, survivor = start_triton(options), start_triton(options)
    router = start_router_process(router_config(doomed.grpc_url, survivor.grpc_url))
    await load(router, 8, 60)  # warm: both replicas, every code path, the allocator
    baseline_rss = router.rss_bytes()

    async def kill_once_samples_stream() -> None:
        deadline = time.monotonic() + 20
        while router.metric_sum("ponder_router_inflight_samples") < 8:
            assert time.monotonic() < deadline, "the samples never started"
            await asyncio.sleep(0.05)
        doomed.kill()

    started = time.monotonic()
    outcomes = await load(router, 24, 60, during=kill_once_samples_stream)
    took = time.monotonic() - started

    kinds = Counter(o.kind for o in outcomes)
    assert sum(kinds.values()) == 24, f"requests unaccounted for: {kinds}"
    assert set(kinds) <= {"answered", "rejected", "failed"}
    failed = [o for o in outcomes if o.kind == "failed"]
    assert all(o.status in (200, 502, 503, 504) for o in failed), failed  # clean 5xx only
    assert router.metric_sum("ponder_router_upstream_failures_total") >= 1, \
        "the kill hit no in-flight sample: the scenario did not happen"
    # Retried on the survivor: most requests are answered, none waited out its deadline.
    assert kinds["answered"] >= 18, kinds
    assert took < 45

    # Afterwards the dead replica is avoided, nothing is left running, memory is back.
    after = await load(router, 6, 60)
    assert [o.kind for o in after] == ["answered"] * 6
    assert settled(router) == {"ponder_router_queue_depth": 0, "ponder_router_inflight_samples": 0,
                               "ponder_router_demand_tokens": 0}  # fmt: skip
    grown = router.rss_bytes() - baseline_rss
    assert grown < 30 * 2**20, f"router RSS grew {grown / 2**20:.1f} MiB"


@contextlib.contextmanager
def hung(server: TritonServer) -> Iterator[None]:
    """SIGSTOP every process of ``server`` (the server and its model stubs) meanwhile."""
    popen = server.process.popen if server.process else None
    assert popen is not None, "Triton is not running"
    os.killpg(popen.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.killpg(popen.pid, signal.SIGCONT)


async def test_a_hung_triton_gives_504_in_time_and_keeps_nothing_running(
    start_triton: StartTriton, start_router_process: StartRouterProcess
) -> None:
    triton = start_triton(SimModelOptions(token_latency_ms=15, max_concurrency=1))
    router = start_router_process(router_config(
        triton.grpc_url, requestTimeoutSeconds=2, sampleTimeoutSeconds=1.5))
    # Warm-up (cold start is not under test; on a loaded machine it can miss the 2 s).
    warm = [await load(router, 1, 30, effort="low") for _ in range(3)]
    assert any(o.kind == "answered" for batch in warm for o in batch), warm

    with hung(triton):
        started = time.monotonic()
        outcomes = await load(router, 3, 15, streams=False)
        waited = time.monotonic() - started
    assert [o.status for o in outcomes] == [504] * 3, outcomes
    assert waited < 4, f"the deadline of 2 s fired after {waited:.1f} s"
    assert settled(router)["ponder_router_inflight_samples"] == 0

    # Triton did not keep the abandoned samples: its queue for the one-slot model empties
    # at once (kept, a dozen high-effort samples would queue there for seconds), and a
    # router with ordinary deadlines is answered.
    deadline = time.monotonic() + 2.0
    while triton_counter(triton, "nv_inference_pending_request_count") > 0:
        assert time.monotonic() < deadline, "Triton still queues the abandoned samples"
        await asyncio.sleep(0.1)
    relaxed = start_router_process(router_config(triton.grpc_url))
    again = await load(relaxed, 1, 30, effort="low")
    assert [o.kind for o in again] == ["answered"], again

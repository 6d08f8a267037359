"""A Triton replica scaled down under load drains: no stream is cut (issue 20, row 9).

On scale-down, a rollout or a node drain the kubelet sends the Triton container SIGTERM;
the operator renders ``--exit-timeout-secs`` equal to the router's request timeout (and a
grace period above it), so Triton refuses new requests and lets those in flight finish.
Real parts only: two ``tritonserver`` processes serving the stand-in LLM, started with
the exit timeout the operator renders for the smallest example ReasoningService, and the
``ponder-router`` process in front of both with that service's admission limits. The
router is given the replicas as a static list, in two orders of events: it learns of the
scale-down only from Triton's refusals (``sigterm-first``: the worst case, a pod watch
that has not yet seen the pod go), or its list drops the replica before the SIGTERM
(``pod-watch-first``: the rendered pod's preStop pause gives the router's pod watch that
time), when its streams keep running on the replica it retired.

What a client of a draining replica can rely on, asserted here:

- a stream that had its first token finishes with the whole answer;
- a request Triton had accepted but not yet started (waiting for a slot) is served by
  the draining replica too: Triton finishes everything it accepted before it unloads
  the model, decoupled python-backend streams included;
- a request sent after the SIGTERM that reaches the draining replica is refused before
  its first token (``Request for unknown model: ... has no available versions``) and
  retried on the surviving replica, which answers it (the router marks the draining
  replica down on that refusal, as it does an unreachable one);
- all within the request timeout, and the draining Triton exits by itself (status 0)
  once its in-flight requests are done, long before its exit timeout.

Triton closes its HTTP endpoint at once on SIGTERM (the pod turns unready); its gRPC
endpoint, which the router streams over, stays up until the drain ends.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from fixtures_router import RouterProcess, StartRouterProcess
from fixtures_triton import StartTriton, triton_counter
from ponder_localstack.sim_llm import MODEL_NAME
from ponder_localstack.triton import SimModelOptions, TritonServer
from ponder_operator.api.spec import parse_spec
from ponder_operator.render import Owner, render_router_config, render_triton_deployment

pytestmark = pytest.mark.triton

SERVED = "sim-reasoner"
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "minimal.yaml"
OWNER = Owner(name="drain", namespace="ml", uid="0000-1111")
TOKEN_LATENCY_MS = 100.0
"""A sample of the stand-in then takes several seconds: long enough to be cut."""
SLOTS = 2
"""Requests generating at once per replica; the next one waits in Triton for a slot."""
BEFORE, AFTER = 6, 2
"""Requests sent before the SIGTERM (each replica: SLOTS streaming, the rest waiting),
and after it."""
BOUND_SECONDS = 50.0
"""The whole scenario, start-up excluded; far below the request timeout."""
PROBLEMS = [
    "Find the remainder when $2^{100}$ is divided by 7.",
    "How many positive divisors does 3600 have?",
    "Let $x^2 + y^2 = 14x + 6y + 6$. Find the largest possible value of $3x + 4y$.",
    "What is the sum of the first 20 positive odd integers?",
]


def rendered_drain() -> tuple[int, dict[str, Any]]:
    """The Triton exit timeout and the router's admission the operator renders for the
    smallest example ReasoningService."""
    spec = parse_spec(yaml.safe_load(EXAMPLE.read_text()))
    pod = render_triton_deployment(OWNER, spec)["spec"]["template"]["spec"]
    args = next(c for c in pod["containers"] if c["name"] == "triton")["args"]
    exit_timeout = [int(a.split("=", 1)[1]) for a in args if a.startswith("--exit-timeout-secs=")]
    return exit_timeout[-1], render_router_config(OWNER, spec)["admission"]


@dataclass
class Stream:
    """What one streaming client saw."""

    index: int
    sent_at: float = 0.0
    first_token_at: float | None = None
    ended_at: float | None = None
    text: str = ""
    finish_reason: str | None = None
    report: dict[str, Any] = field(default_factory=dict)
    completion_tokens: int | None = None
    done: bool = False
    error: str | None = None
    status: int = 0


async def stream(client: httpx.AsyncClient, router: RouterProcess, seen: Stream) -> Stream:
    """One streamed chat request (one sample, fixed seed), read to its end into ``seen``."""
    body = {"model": SERVED, "stream": True, "seed": 1000 + seen.index,
            "messages": [{"role": "user", "content": PROBLEMS[seen.index % len(PROBLEMS)]}],
            "reasoning_effort": "low", "stream_options": {"include_usage": True},
            "ponder": {"max_samples": 1}}  # fmt: skip
    seen.sent_at = time.monotonic()
    async with client.stream("POST", router.url + "/v1/chat/completions", json=body) as response:
        seen.status = response.status_code
        async for line in response.aiter_lines():
            if not line.startswith("data: "):
                continue
            if line == "data: [DONE]":
                seen.done = True
                continue
            event = json.loads(line[6:])
            if "error" in event:
                seen.error = event["error"]["message"]
                continue
            if event.get("usage"):
                seen.completion_tokens = event["usage"]["completion_tokens"]
            for choice in event.get("choices", ()):
                delta = choice["delta"]
                piece = (delta.get("reasoning_content") or "") + (delta.get("content") or "")
                if piece and seen.first_token_at is None:
                    seen.first_token_at = time.monotonic()
                seen.text += piece
                seen.finish_reason = choice["finish_reason"] or seen.finish_reason
            seen.report = event.get("ponder", seen.report)
    seen.ended_at = time.monotonic()
    return seen


def waiting_requests(server: TritonServer) -> float:
    """Requests on ``server`` that have no slot yet: in Triton's queue or in the model's."""
    return (triton_counter(server, "nv_inference_pending_request_count")
            + triton_counter(server, "vllm:num_requests_waiting"))  # fmt: skip


def endpoint_count(router: RouterProcess) -> int:
    return int(httpx.get(router.url + "/readyz", timeout=5).json()["endpoints"])


def served(server: TritonServer) -> float:
    return triton_counter(server, "nv_inference_request_success")


async def wait_for(condition: Any, timeout_seconds: float, what: str) -> None:
    deadline = time.monotonic() + timeout_seconds
    while not await asyncio.to_thread(condition):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


@pytest.mark.parametrize("router_learns_first", [False, True],
                         ids=["sigterm-first", "pod-watch-first"])
async def test_a_triton_scaled_down_mid_stream_drains_and_no_stream_is_cut(
    start_triton: StartTriton, start_router_process: StartRouterProcess,
    router_learns_first: bool,
) -> None:
    exit_timeout_seconds, admission = rendered_drain()
    request_timeout_seconds = admission["requestTimeoutSeconds"]
    assert exit_timeout_seconds == request_timeout_seconds  # row 9, as rendered
    options = SimModelOptions(token_latency_ms=TOKEN_LATENCY_MS, max_concurrency=SLOTS)
    doomed = start_triton(options, exit_timeout_seconds=exit_timeout_seconds)
    survivor = start_triton(options, exit_timeout_seconds=exit_timeout_seconds)
    config = {"service": "sim", "modelName": SERVED, "tritonModel": MODEL_NAME,
              "endpoints": [doomed.grpc_url, survivor.grpc_url], "admission": admission}
    router = start_router_process(config, env={"PONDER_ROUTER_CONFIG_POLL_SECONDS": "0.1"})
    assert doomed.process is not None
    popen = doomed.process.popen
    assert popen is not None
    served_survivor_before = served(survivor)

    async with httpx.AsyncClient(timeout=httpx.Timeout(BOUND_SECONDS, connect=5)) as client:
        early = [Stream(i) for i in range(BEFORE)]
        before = [asyncio.create_task(stream(client, router, s)) for s in early]

        def loaded() -> bool:  # each replica full: SLOTS streams each, the rest waiting
            return (sum(s.first_token_at is not None for s in early) == 2 * SLOTS
                    and waiting_requests(doomed) + waiting_requests(survivor)
                    == BEFORE - 2 * SLOTS)  # fmt: skip

        await wait_for(loaded, 20, "both replicas to fill")
        streaming = {s.index for s in early if s.first_token_at is not None}
        waiting_on_doomed = waiting_requests(doomed)
        running_on_doomed = triton_counter(doomed, "vllm:num_requests_running")

        if router_learns_first:  # as its pod watch drops a terminating pod (the preStop pause)
            config["endpoints"] = [survivor.grpc_url]
            router.config_path.write_text(json.dumps(config))
            await wait_for(lambda: endpoint_count(router) == 1, 10, "the router to drop it")
        os.kill(popen.pid, signal.SIGTERM)  # the kubelet signals the container's PID 1 only
        terminated_at = time.monotonic()
        late = [Stream(BEFORE + i) for i in range(AFTER)]
        after = [asyncio.create_task(stream(client, router, s)) for s in late]

        async def exit_time() -> float:
            await asyncio.to_thread(popen.wait)
            return time.monotonic()

        *_, exited_at = await asyncio.wait_for(
            asyncio.gather(*before, *after, exit_time()), BOUND_SECONDS)
    streams = [*early, *late]
    doomed_served = len(streams) - (served(survivor) - served_survivor_before)

    # Every stream, in flight at the SIGTERM or sent after it, ends with the whole answer.
    for seen in streams:
        assert (seen.status, seen.error, seen.done) == (200, None, True), seen
        assert seen.finish_reason == "stop", seen
        assert seen.report["answer"] is not None, seen
        assert "\\boxed{" in seen.text, seen
        assert seen.completion_tokens == len(seen.text.split()), seen  # nothing cut off
        assert seen.ended_at is not None
        assert seen.ended_at - seen.sent_at < request_timeout_seconds
    # The scenario happened: streams were cut short by nothing, though in flight; the
    # requests still waiting for a slot got their first token only after the SIGTERM.
    assert all(s.ended_at is not None and s.ended_at > terminated_at for s in early)
    assert all(s.first_token_at is not None and s.first_token_at > terminated_at
               for s in early if s.index not in streaming)  # fmt: skip
    # The draining replica finished exactly what it had accepted (its streams and the
    # requests waiting in it); every request sent after the SIGTERM that reached it was
    # refused before its first token and retried on the survivor.
    assert (running_on_doomed, waiting_on_doomed) == (SLOTS, (BEFORE - 2 * SLOTS) / 2)
    assert doomed_served == running_on_doomed + waiting_on_doomed
    refusals = router.metric_sum("ponder_router_upstream_failures_total")
    marked_down = "triton endpoint marked down" in router.process.log_path.read_text()
    if router_learns_first:  # nothing new reached the draining replica
        assert (refusals, marked_down) == (0, False)
    else:  # marked down at its first refusal
        assert refusals >= 1
        assert marked_down
    # It exited by itself (status 0, not SIGKILL) once its requests were done, long
    # before its exit timeout.
    assert popen.returncode == 0
    finished_first = sum(s.ended_at is not None and s.ended_at <= exited_at for s in streams)
    assert finished_first >= doomed_served
    assert exited_at - terminated_at < exit_timeout_seconds
    countdown = re.findall(r'"Timeout (\d+): Found', doomed.log_path.read_text())
    assert max(map(int, countdown)) == exit_timeout_seconds  # Triton got the rendered value

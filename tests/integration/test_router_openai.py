"""The router end to end: the real OpenAI SDK -> the router (uvicorn, loopback) -> real Triton.

Triton serves ``ponder-sim-llm``, a simulator standing in for a GPU LLM whose answers to
MATH-500 problems are right with per-level calibrated probability. The router does not
know it is a simulator. The checks are what a client and an operator of the service
would see: compute follows difficulty and effort, voting buys accuracy, an early stop
or a client that leaves frees Triton, streams stream, errors are clear, metrics add up.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import openai
import pytest
import tritonclient.grpc.aio as grpcclient
import uvicorn
from tritonclient.grpc import InferInput

from components import require_data
from fixtures_triton import StartTriton, triton_counter
from ponder_localstack.proc import free_port
from ponder_localstack.prometheus import Prometheus
from ponder_localstack.sim_llm import MODEL_NAME
from ponder_localstack.triton import SimModelOptions, TritonServer
from ponder_router.answers import answers_equal, extract_answer
from ponder_router.app import create_app
from ponder_router.settings import RouterConfig
from ponder_tools.data import shared_data_dir

pytestmark = pytest.mark.triton

DATA_DIR = shared_data_dir()
SERVED = "sim-reasoner"


def math500() -> list[dict[str, Any]]:
    path = DATA_DIR / "math" / "math500_test.jsonl"
    require_data(path)
    return [json.loads(line) for line in path.read_text().splitlines()]


def level(n: int, count: int) -> list[dict[str, Any]]:
    return [p for p in math500() if p["level"] == n][:count]


@dataclass
class RunningRouter:
    """A router in this process (uvicorn on its own thread and event loop)."""

    url: str
    server: uvicorn.Server
    thread: threading.Thread

    def client(self, **options: Any) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.url + "/v1", api_key=options.pop("api_key", "none"),
                             max_retries=0, **options)  # fmt: skip

    def async_client(self) -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(base_url=self.url + "/v1", api_key="none", max_retries=0)

    def metrics(self) -> dict[str, float]:
        text = httpx.get(self.url + "/metrics").text
        return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
                for line in text.splitlines() if line and not line.startswith("#")}  # fmt: skip

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(15)


def config_for(grpc_url: str, **overrides: Any) -> RouterConfig:
    values: dict[str, Any] = {"service": "sim", "modelName": SERVED,
                              "tritonModel": MODEL_NAME, "endpoints": [grpc_url]}  # fmt: skip
    values.update(overrides)
    return RouterConfig.model_validate(values)


def run_router(config: RouterConfig) -> RunningRouter:
    port = free_port()
    app = create_app(config)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                           lifespan="on"))  # fmt: skip
    thread = threading.Thread(target=server.run, name="router", daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the router did not start")
        time.sleep(0.02)
    return RunningRouter(f"http://127.0.0.1:{port}", server, thread)


StartRouter = Callable[..., RunningRouter]


@pytest.fixture
def start_router() -> Iterator[StartRouter]:
    """Start routers (``start_router(grpc_url, **config)``); all stopped afterwards."""
    started: list[RunningRouter] = []

    def start(grpc_url: str, **overrides: Any) -> RunningRouter:
        router = run_router(config_for(grpc_url, **overrides))
        started.append(router)
        return router

    yield start
    for router in started:
        router.stop()


@pytest.fixture(scope="module")
def router(triton_server: TritonServer) -> Iterator[RunningRouter]:
    """A router with the default budget policy in front of the session's Triton."""
    running = run_router(config_for(triton_server.grpc_url))
    yield running
    running.stop()


def ask(client: openai.OpenAI, problem: str, **options: Any) -> Any:
    return client.chat.completions.create(
        model=SERVED, messages=[{"role": "user", "content": problem}], **options)


async def ask_all(router: RunningRouter, calls: list[tuple[str, dict[str, Any]]],
                  parallel: int = 8) -> list[dict[str, Any]]:  # fmt: skip
    """The ``ponder`` reports of many requests, ``parallel`` at a time."""
    client, gate = router.async_client(), asyncio.Semaphore(parallel)

    async def one(problem: str, options: dict[str, Any]) -> dict[str, Any]:
        async with gate:
            response = await client.chat.completions.create(
                model=SERVED, messages=[{"role": "user", "content": problem}], **options)
            return dict(response.model_extra["ponder"])  # type: ignore[index]

    try:
        return await asyncio.gather(*(one(p, o) for p, o in calls))
    finally:
        await client.close()


def correct(report: dict[str, Any], problem: dict[str, Any]) -> bool:
    return report["answer"] is not None and answers_equal(report["answer"], problem["answer"])


# -- compute follows difficulty, effort and votes -----------------------------------------


async def test_easy_problems_get_fewer_samples_and_tokens_than_hard_ones(
    router: RunningRouter,
) -> None:
    easy = await ask_all(router, [(p["problem"], {"seed": 1}) for p in level(1, 8)])
    hard = await ask_all(router, [(p["problem"], {"seed": 1}) for p in level(5, 8)])

    def mean(reports: list[dict[str, Any]], key: Callable[[dict[str, Any]], float]) -> float:
        return sum(key(r) for r in reports) / len(reports)

    assert mean(easy, lambda r: r["difficulty"]) < mean(hard, lambda r: r["difficulty"])
    assert mean(easy, lambda r: r["samples"]["launched"]) < \
        mean(hard, lambda r: r["samples"]["launched"])  # fmt: skip
    assert mean(easy, lambda r: r["tokens_used"]) < mean(hard, lambda r: r["tokens_used"])
    assert mean(easy, lambda r: r["budget"]["max_tokens_per_sample"]) < \
        mean(hard, lambda r: r["budget"]["max_tokens_per_sample"])  # fmt: skip


def test_high_reasoning_effort_gets_more_compute_than_low(router: RunningRouter) -> None:
    problem = level(3, 1)[0]["problem"]
    low = ask(router.client(), problem, reasoning_effort="low", seed=5).model_extra["ponder"]
    high = ask(router.client(), problem, reasoning_effort="high", seed=5).model_extra["ponder"]
    assert (low["tier"], high["tier"]) == ("easy", "hard")
    assert low["samples"]["launched"] < high["samples"]["launched"]
    assert low["budget"]["max_tokens_per_sample"] < high["budget"]["max_tokens_per_sample"]
    assert low["tokens_used"] < high["tokens_used"]


async def test_majority_voting_answers_more_problems_correctly_than_single_samples(
    router: RunningRouter,
) -> None:
    problems = [p for p in math500() if p["level"] >= 3][:60]
    seeds = (11, 23, 37, 41)
    single = await ask_all(router, [
        (p["problem"], {"seed": s, "extra_body": {"ponder": {"max_samples": 1}}})
        for p in problems for s in seeds])  # fmt: skip
    voted = await ask_all(router, [(p["problem"], {"seed": 11, "reasoning_effort": "high"})
                                   for p in problems])  # fmt: skip
    single_accuracy = sum(correct(r, problems[i // len(seeds)])
                          for i, r in enumerate(single)) / len(single)  # fmt: skip
    vote_accuracy = sum(correct(r, p) for r, p in zip(voted, problems, strict=True)) / len(problems)
    assert all(r["samples"]["launched"] == 1 for r in single)
    assert all(r["samples"]["launched"] >= 4 for r in voted)
    # Measured: 52.75 / 60 single (mean over 4 seeds) vs 55 / 60 by vote.
    assert vote_accuracy > single_accuracy + 0.02, (single_accuracy, vote_accuracy)


# -- early stops and clients that leave free Triton ---------------------------------------


async def replay(server: TritonServer, problem: str, seeds: list[int]) -> list[str]:
    """Each seed's whole sample, straight from Triton (the simulator replays a seed exactly;
    at 0 ms per token this takes milliseconds)."""

    def tensor(name: str, value: Any, dtype: str) -> InferInput:
        infer_input = InferInput(name, [1], dtype)
        infer_input.set_data_from_numpy(np.array([value], dtype=np.object_ if dtype == "BYTES"
                                                 else np.bool_))  # fmt: skip
        return infer_input

    async def one(seed: int) -> str:
        params = {"max_tokens": 4096, "seed": seed, "ponder_token_latency_ms": 0}

        async def request() -> Any:
            yield {"model_name": MODEL_NAME, "inputs": [
                tensor("text_input", problem.encode(), "BYTES"), tensor("stream", True, "BOOL"),
                tensor("sampling_parameters", json.dumps(params).encode(), "BYTES"),
                tensor("exclude_input_in_output", True, "BOOL")]}  # fmt: skip

        text = []
        async for result, error in client.stream_infer(request()):
            assert error is None
            text.append(result.as_numpy("text_output")[0].decode())
        return "".join(text)

    async with grpcclient.InferenceServerClient(server.grpc_url) as client:
        return list(await asyncio.gather(*(one(seed) for seed in seeds)))


async def test_an_early_stop_cancels_the_remaining_samples_on_triton(
    start_triton: StartTriton, start_router: StartRouter
) -> None:
    latency_seconds, seeds = 0.030, list(range(100, 108))
    triton = start_triton(SimModelOptions(token_latency_ms=latency_seconds * 1000,
                                          max_concurrency=8))  # fmt: skip
    # A problem whose two shortest samples agree (so a window of 2 stops after them) and
    # whose longest sample would run on for a good while after that.
    for candidate in [p["problem"] for p in math500() if p["level"] >= 3][:40]:
        samples = sorted((len(t.split()), extract_answer(t)) for t in
                         await replay(triton, candidate, seeds))  # fmt: skip
        left_seconds = (samples[-1][0] - samples[1][0]) * latency_seconds
        agree = samples[0][1] is not None and samples[0][1] == samples[1][1]
        if agree and samples[1][0] < samples[2][0] and left_seconds > 1.2:
            problem = candidate
            break
    else:
        pytest.fail("no MATH-500 problem with a long enough last sample")
    wide = {"tiers": [{"name": "wide", "maxDifficulty": 1.0, "maxTokens": 4096, "maxSamples": 8,
                       "initialSamples": 8, "strategy": "vote"}]}  # fmt: skip
    router = start_router(triton.grpc_url, budgets=wide, stopping={"kind": "window", "window": 2})
    released_before = triton_counter(triton, "nv_inference_request_success")

    report = ask(router.client(), problem, seed=seeds[0]).model_extra["ponder"]
    await asyncio.sleep(0.3)
    released = triton_counter(triton, "nv_inference_request_success") - released_before
    pending = triton_counter(triton, "nv_inference_pending_request_count")

    assert report["stop_reason"] == "window-agreed"
    assert report["samples"]["launched"] == 8
    assert report["samples"]["cancelled"] == 6
    assert report["tokens_used"] < sum(n for n, _ in samples)
    # Triton has released all 8 samples 0.3 s after the answer, though the longest had
    # more than a second left to run: the cancelled ones stopped on Triton.
    assert released == 8
    assert pending == 0


async def test_a_client_that_leaves_mid_stream_stops_its_sample_on_triton(
    start_triton: StartTriton, start_router: StartRouter
) -> None:
    triton = start_triton(SimModelOptions(token_latency_ms=40, max_concurrency=1))
    # One sample each, and no answer forced at the follower's 2-token cap (as above).
    router = start_router(triton.grpc_url, forcing={"enabled": False})
    one = {"ponder": {"max_samples": 1}}
    problem = level(5, 1)[0]["problem"]
    async with httpx.AsyncClient(base_url=router.url, timeout=30) as http, http.stream(
        "POST", "/v1/chat/completions",
        json={"model": SERVED, "messages": [{"role": "user", "content": problem}],
              "stream": True, "reasoning_effort": "low", "seed": 3, **one},
    ) as response:  # fmt: skip
        received = 0
        async for _ in response.aiter_lines():
            received += 1
            if received == 4:
                break  # leaving the block closes the connection mid-stream
    started = time.monotonic()
    follower = ask(router.client(), "What is 1+1?", reasoning_effort="low",
                   max_completion_tokens=2, extra_body=one)  # fmt: skip
    waited = time.monotonic() - started
    full = (await replay(triton, problem, [3]))[0]
    assert len(full.split()) * 0.040 > 2.0  # the abandoned sample had seconds of work left
    assert follower.choices[0].message.content
    assert waited < 1.0, f"the next request waited {waited:.2f} s for the abandoned one"


async def test_a_client_that_gives_up_on_a_json_answer_stops_its_sample_on_triton(
    start_triton: StartTriton, start_router: StartRouter
) -> None:
    triton = start_triton(SimModelOptions(token_latency_ms=40, max_concurrency=1))
    # One sample each, and no answer forced at the follower's 2-token cap: what is measured
    # is whether the abandoned sample still holds Triton's only slot.
    router = start_router(triton.grpc_url, forcing={"enabled": False})
    one = {"ponder": {"max_samples": 1}}
    problem = level(5, 1)[0]["problem"]
    async with httpx.AsyncClient(base_url=router.url, timeout=0.5) as http:
        with pytest.raises(httpx.ReadTimeout):  # the client hangs up after 0.5 s
            await http.post("/v1/chat/completions", json={
                "model": SERVED, "messages": [{"role": "user", "content": problem}],
                "reasoning_effort": "low", "seed": 3, **one})  # fmt: skip
    started = time.monotonic()
    follower = ask(router.client(), "What is 1+1?", reasoning_effort="low",
                   max_completion_tokens=2, extra_body=one)  # fmt: skip
    waited = time.monotonic() - started
    assert follower.choices[0].message.content
    assert waited < 1.0, f"the next request waited {waited:.2f} s for the abandoned one"
    assert router.metrics()['ponder_router_requests_total{outcome="cancelled",tier="easy"}'] == 1



async def test_a_client_that_gives_up_on_a_voted_answer_stops_all_its_samples_on_triton(
    start_triton: StartTriton, start_router: StartRouter
) -> None:
    # The easy tier votes with two samples; Triton runs one at a time, so the second waits
    # inside Triton. Both must be gone once the client hangs up, the waiting one included.
    triton = start_triton(SimModelOptions(token_latency_ms=40, max_concurrency=1))
    router = start_router(triton.grpc_url, forcing={"enabled": False})
    problem = level(5, 1)[0]["problem"]
    async with httpx.AsyncClient(base_url=router.url, timeout=0.5) as http:
        with pytest.raises(httpx.ReadTimeout):  # the client hangs up after 0.5 s
            await http.post("/v1/chat/completions", json={
                "model": SERVED, "messages": [{"role": "user", "content": problem}],
                "reasoning_effort": "low", "seed": 3, "ponder": {"max_samples": 2}})  # fmt: skip
    started = time.monotonic()
    follower = ask(router.client(), "What is 1+1?", reasoning_effort="low",
                   max_completion_tokens=2, extra_body={"ponder": {"max_samples": 1}})  # fmt: skip
    waited = time.monotonic() - started
    assert follower.choices[0].message.content
    assert waited < 1.0, f"the next request waited {waited:.2f} s for the abandoned samples"

# -- streaming through the SDK ------------------------------------------------------------


def test_a_streamed_single_sample_arrives_token_by_token(router: RunningRouter) -> None:
    problem = level(1, 1)[0]["problem"]
    stream = ask(router.client(), problem, stream=True, reasoning_effort="low", seed=2,
                 stream_options={"include_usage": True},
                 extra_body={"ponder": {"max_samples": 1}})  # fmt: skip
    arrivals, pieces, last = [], [], None
    for chunk in stream:
        arrivals.append(time.monotonic())
        if chunk.choices and chunk.choices[0].delta.content:
            pieces.append(chunk.choices[0].delta.content)
        last = chunk
    text = "".join(pieces)
    assert len(pieces) > 10
    assert arrivals[-1] - arrivals[1] > 0.02  # tokens arrived over time, not in one burst
    assert "\\boxed{" in text
    assert last is not None
    assert last.usage is not None
    assert last.usage.completion_tokens == len(text.split())


def test_a_streamed_vote_reports_progress_then_the_answer(router: RunningRouter) -> None:
    problem = level(4, 1)[0]["problem"]
    stream = ask(router.client(), problem, stream=True, reasoning_effort="high", seed=2)
    chunks = list(stream)
    progress = [c.model_extra["ponder"] for c in chunks
                if (c.model_extra or {}).get("ponder", {}).get("event") == "progress"]
    final = chunks[-1].model_extra["ponder"]
    content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert [p["samples_completed"] for p in progress] == list(range(1, len(progress) + 1))
    assert len(progress) == final["samples"]["completed"]
    assert chunks[-1].choices[0].finish_reason in ("stop", "length")
    assert final["answer"] is not None
    assert final["answer"] in content


# -- errors a client can act on -----------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "error", "fragment"),
    [
        ({"model": "gpt-unknown"}, openai.NotFoundError, "does not exist"),
        ({"temperature": "hot"}, openai.BadRequestError, "temperature"),
        ({"max_completion_tokens": -5}, openai.BadRequestError, "max_completion_tokens"),
        ({"n": 3}, openai.BadRequestError, "ponder.max_samples"),
        ({"extra_body": {"ponder": {"max_samples": 10**6}}}, openai.BadRequestError,
         "ponder.max_samples"),
        ({"extra_body": {"frobnicate": 1}}, openai.BadRequestError, "frobnicate"),
        ({"reasoning_effort": "maximal"}, openai.BadRequestError, "reasoning_effort"),
        ({"messages": [{"role": "user", "content": "x" * 300_000}]}, openai.BadRequestError,
         "characters"),
    ],
)  # fmt: skip
def test_bad_input_is_refused_with_a_message_naming_the_problem(
    router: RunningRouter, options: dict[str, Any], error: type[openai.APIStatusError],
    fragment: str,
) -> None:  # fmt: skip
    request: dict[str, Any] = {"model": SERVED,
                               "messages": [{"role": "user", "content": "What is 1+1?"}]}
    request.update(options)
    with pytest.raises(error) as caught:
        router.client().chat.completions.create(**request)
    assert fragment in caught.value.message


def test_malformed_json_is_a_400_in_openai_shape(router: RunningRouter) -> None:
    response = httpx.post(router.url + "/v1/chat/completions", content=b"{nope",
                          headers={"content-type": "application/json"})  # fmt: skip
    assert response.status_code == 400
    assert set(response.json()["error"]) == {"message", "type", "param", "code"}


def test_api_keys_are_enforced_when_a_key_file_is_set(
    triton_server: TritonServer, start_router: StartRouter, tmp_path: Path
) -> None:
    keys = tmp_path / "keys"
    keys.write_text("sk-team-a:team-a\n")
    router = start_router(triton_server.grpc_url, apiKeysFile=str(keys))
    with pytest.raises(openai.PermissionDeniedError):
        ask(router.client(api_key="sk-wrong"), "What is 1+1?")
    response = httpx.post(router.url + "/v1/chat/completions",
                          json={"model": SERVED, "messages": [{"role": "user", "content": "1"}]})
    assert response.status_code == 401
    assert ask(router.client(api_key="sk-team-a"), "What is 1+1?").choices


def test_a_full_router_refuses_with_429_and_retry_after(
    start_triton: StartTriton, start_router: StartRouter
) -> None:
    triton = start_triton(SimModelOptions(token_latency_ms=20, max_concurrency=1))
    router = start_router(triton.grpc_url, admission={"maxConcurrentRequests": 1,
                                                      "maxQueueLength": 0})  # fmt: skip
    client = router.client()
    holder = threading.Thread(target=ask, args=(client, "What is 1+1?"),
                              kwargs={"reasoning_effort": "low"})  # fmt: skip
    holder.start()
    time.sleep(0.2)
    with pytest.raises(openai.RateLimitError) as caught:
        ask(client, "What is 2+2?")
    holder.join(30)
    assert int(caught.value.response.headers["retry-after"]) >= 1


def test_a_triton_that_is_down_gives_502(start_router: StartRouter) -> None:
    router = start_router(f"127.0.0.1:{free_port()}")
    with pytest.raises(openai.InternalServerError) as caught:
        ask(router.client(), "What is 1+1?", reasoning_effort="low")
    assert caught.value.status_code == 502


def test_a_triton_too_slow_for_the_deadline_gives_504(
    start_triton: StartTriton, start_router: StartRouter
) -> None:
    triton = start_triton(SimModelOptions(token_latency_ms=200, max_concurrency=2))
    router = start_router(triton.grpc_url, admission={"requestTimeoutSeconds": 1})
    started = time.monotonic()
    with pytest.raises(openai.APIStatusError) as caught:
        ask(router.client(), "What is 1+1?", reasoning_effort="low")
    assert caught.value.status_code == 504
    assert time.monotonic() - started < 3


# -- metrics under load -------------------------------------------------------------------


async def test_the_metrics_follow_the_load_and_add_up_afterwards(
    start_triton: StartTriton, start_router: StartRouter
) -> None:
    triton = start_triton(SimModelOptions(token_latency_ms=5, max_concurrency=4))
    router = start_router(triton.grpc_url, admission={"maxConcurrentRequests": 3})
    problems = level(2, 4) + level(5, 4)
    seen: dict[str, float] = {"queue": 0, "inflight": 0, "demand": 0}
    service = '{service="sim"}'

    async def watch() -> None:
        while True:
            values = await asyncio.to_thread(router.metrics)
            seen["queue"] = max(seen["queue"], values["ponder_router_queue_depth" + service])
            seen["inflight"] = max(seen["inflight"],
                                   values["ponder_router_inflight_samples" + service])
            seen["demand"] = max(seen["demand"], values["ponder_router_demand_tokens" + service])
            await asyncio.sleep(0.02)

    watcher = asyncio.ensure_future(watch())
    reports = await ask_all(router, [(p["problem"], {"seed": 9}) for p in problems], parallel=8)
    watcher.cancel()
    after = router.metrics()

    assert seen["queue"] >= 1  # 8 requests, 3 slots
    assert seen["inflight"] >= 2
    assert seen["demand"] > 0
    for gauge in ("queue_depth", "inflight_samples", "demand_tokens"):
        assert after[f"ponder_router_{gauge}{service}"] == 0
    tiers = {r["tier"] for r in reports}
    for tier in tiers:
        mine = [r for r in reports if r["tier"] == tier]
        label = f'{{tier="{tier}"}}'
        assert after[f'ponder_router_requests_total{{outcome="ok",tier="{tier}"}}'] == len(mine)
        assert after["ponder_router_used_tokens_total" + label] == \
            sum(r["tokens_used"] for r in mine)  # fmt: skip
        assert after["ponder_router_budget_tokens_total" + label] == sum(
            r["budget"]["max_tokens_per_sample"] * r["budget"]["max_samples"] for r in mine)
        assert after["ponder_router_request_samples_sum" + label] == \
            sum(r["samples"]["launched"] for r in mine)  # fmt: skip
    assert after["ponder_router_early_stops_total"] == sum(r["stopped_early"] for r in reports)
    assert after["ponder_router_request_duration_seconds_count"] == len(problems)
    assert after["ponder_router_time_to_first_token_seconds_count"] == len(problems)


@pytest.mark.prometheus
def test_prometheus_scrapes_the_router_metrics_the_autoscaler_reads(
    router: RunningRouter, prometheus_factory: Callable[..., Prometheus]
) -> None:
    prometheus = prometheus_factory({"router": [router.url.removeprefix("http://")]})
    for seed in range(3):
        ask(router.client(), "What is 3+4?", reasoning_effort="high", seed=seed)
    expected = sum(value for name, value in router.metrics().items()
                   if name.startswith('ponder_router_requests_total{'))  # fmt: skip

    def query(promql: str) -> list[dict[str, Any]]:
        response = httpx.get(prometheus.url + "/api/v1/query", params={"query": promql})
        result: list[dict[str, Any]] = response.json()["data"]["result"]
        return result

    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        total = query("sum(ponder_router_requests_total)")
        if total and float(total[0]["value"][1]) == expected:
            break
        time.sleep(0.25)
    else:
        pytest.fail(f"Prometheus never saw {expected} requests: {total}")
    for gauge in ("queue_depth", "inflight_samples", "demand_tokens"):
        series = query(f"ponder_router_{gauge}")
        assert [s["metric"]["service"] for s in series] == ["sim"]
    assert query("ponder_router_budget_tokens_total")
    assert query('ponder_router_used_tokens_total{tier="hard"}')

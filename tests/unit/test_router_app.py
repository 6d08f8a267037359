"""The HTTP service: status codes, error bodies, streaming, metrics, escalation, reloads.

Requests go through httpx's ASGI transport into ``create_app``; Triton is the scripted
``FakeBackend``. The real Triton and the real OpenAI SDK are in the integration tests.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from ponder_router.app import Router, create_app
from ponder_router.budgets import default_policy
from ponder_router.escalation import Escalator
from ponder_router.settings import RouterConfig
from test_router_fakes import FakeFleet, Script, constant
from virtual_time import VirtualTime

ANSWER_42 = Script(answer="42")
EASY = {"difficulty": 0.05}
HARD = {"difficulty": 0.95}


def config(**overrides: Any) -> RouterConfig:
    values: dict[str, Any] = {"service": "small", "model_name": "m", "triton_model": "t",
                              "endpoints": ("a:1",)}  # fmt: skip
    values.update(overrides)
    return RouterConfig.model_validate(values)


@asynccontextmanager
async def serve(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://router") as client:
            yield client


@asynccontextmanager
async def router(script: Script = ANSWER_42, **overrides: Any,
                 ) -> AsyncIterator[tuple[httpx.AsyncClient, FakeFleet, Router]]:  # fmt: skip
    fleet = FakeFleet(constant(script))
    options = overrides.pop("options", {})
    app = create_app(config(**overrides), backend_factory=fleet.factory, **options)
    async with serve(app) as client:
        yield client, fleet, app.state.router


SINGLE = {"tiers": [{"name": "easy", "maxDifficulty": 1.0, "maxTokens": 1024, "maxSamples": 1,
                     "initialSamples": 1, "strategy": "single"}]}
"""A policy whose every request runs one sample (the default policy has no such tier)."""
_HARD = default_policy().tier("hard")
HARD_BUDGET_TOKENS = _HARD.max_tokens * _HARD.max_samples


def chat(**fields: Any) -> dict[str, Any]:
    return {"model": "m", "messages": [{"role": "user", "content": "What is 6*7?"}], **fields}


async def test_a_chat_completion_has_the_openai_shape_and_a_ponder_report() -> None:
    async with router() as (client, _, _):
        response = await client.post("/v1/chat/completions", json=chat(ponder=EASY))
    body = response.json()
    assert response.status_code == 200
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["message"]["content"].endswith("\\boxed{42}.")
    assert body["choices"][0]["finish_reason"] == "stop"
    assert body["usage"]["completion_tokens"] == body["ponder"]["tokens_used"]
    # The default easy tier votes with two samples and stops when they agree; the sample
    # not returned counts as reasoning (both wrote the same, so half the tokens).
    assert body["ponder"]["samples"]["completed"] == 2
    assert body["ponder"]["stop_reason"] == "first-wave-agreed"
    assert body["usage"]["completion_tokens_details"]["reasoning_tokens"] == \
        body["ponder"]["tokens_used"] // 2
    assert body["ponder"]["tier"] == "easy"
    assert body["ponder"]["answered_by"] == "small"
    assert body["ponder"]["difficulty_source"] == "hint"


async def test_a_completion_answers_the_legacy_endpoint() -> None:
    async with router() as (client, _, _):
        response = await client.post("/v1/completions",
                                     json={"model": "m", "prompt": "What is 6*7?"})  # fmt: skip
    assert response.json()["object"] == "text_completion"
    assert response.json()["choices"][0]["text"].endswith("\\boxed{42}.")


@pytest.mark.parametrize(
    ("body", "status", "param"),
    [
        (b"{oops", 400, None),
        (json.dumps(chat(model="gpt-9")).encode(), 404, "model"),
        (json.dumps(chat(temperature="warm")).encode(), 400, "temperature"),
        (json.dumps(chat(max_completion_tokens=0)).encode(), 400, "max_completion_tokens"),
        (json.dumps(chat(n=2)).encode(), 400, "n"),
        (json.dumps(chat(messages=[{"role": "user", "content": "x" * 2000}])).encode(), 400,
         "messages"),
        (json.dumps(chat(messages=[{"role": "user", "content": "x" * 5_000_000}])).encode(), 413,
         None),
    ],
)  # fmt: skip
async def test_bad_input_gets_a_clear_4xx_error(body: bytes, status: int,
                                                param: str | None) -> None:  # fmt: skip
    async with router(admission={"maxPromptChars": 1000}) as (client, fleet, _):
        response = await client.post("/v1/chat/completions", content=body,
                                     headers={"content-type": "application/json"})  # fmt: skip
    assert response.status_code == status
    error = response.json()["error"]
    assert error["param"] == param
    assert error["message"]
    assert fleet.records == []


async def test_without_a_key_file_anyone_is_served() -> None:
    async with router() as (client, _, _):
        assert (await client.post("/v1/chat/completions", json=chat())).status_code == 200


@pytest.mark.parametrize(("headers", "status"), [({}, 401), ({"Authorization": "Bearer nope"}, 403),
                                                 ({"Authorization": "Bearer sk-1"}, 200)])
async def test_with_a_key_file_only_listed_keys_are_served(tmp_path: Path, headers: dict[str, str],
                                                           status: int) -> None:  # fmt: skip
    keys = tmp_path / "keys"
    keys.write_text("sk-1:team-a\n")
    async with router(api_keys_file=str(keys)) as (client, _, _):
        response = await client.post("/v1/chat/completions", json=chat(), headers=headers)
    assert response.status_code == status


async def test_a_full_router_answers_429_with_retry_after(virtual_time: VirtualTime) -> None:
    slow = Script(tokens=100, token_seconds=0.01)
    limits = {"maxConcurrentRequests": 1, "maxQueueLength": 0}
    clock = {"clock": virtual_time.time}
    async with router(slow, admission=limits, options=clock) as (client, _, _):
        first = asyncio.ensure_future(client.post("/v1/chat/completions", json=chat(ponder=EASY)))
        await asyncio.sleep(0.1)
        second = await client.post("/v1/chat/completions", json=chat(ponder=EASY))
        await first
        metrics = (await client.get("/metrics")).text
    assert second.status_code == 429
    assert int(second.headers["Retry-After"]) >= 1
    assert second.json()["error"]["type"] == "rate_limit_exceeded"
    assert 'ponder_router_rejections_total{reason="queue"} 1.0' in metrics


async def test_no_replica_until_the_deadline_answers_503_with_retry_after(
    virtual_time: VirtualTime,
) -> None:
    clock = {"clock": virtual_time.time}
    async with router(admission={"requestTimeoutSeconds": 0.2}, options=clock) as (client, _, r):
        r.pool.update([])
        response = await client.post("/v1/chat/completions", json=chat())
        ready = await client.get("/readyz")
    assert response.status_code == 503
    assert "Retry-After" in response.headers
    assert ready.status_code == 200  # still ready: requests must reach the queue at zero
    assert ready.json()["endpoints"] == 0


async def test_a_failing_triton_answers_502() -> None:
    async with router(Script(fail_after=0)) as (client, _, _):
        response = await client.post("/v1/chat/completions", json=chat(ponder=EASY))
    assert response.status_code == 502
    assert response.json()["error"]["type"] == "upstream_error"


async def test_a_slow_triton_answers_504_at_the_deadline(virtual_time: VirtualTime) -> None:
    slow = Script(tokens=500, token_seconds=0.01)
    deadline, clock = {"requestTimeoutSeconds": 0.2}, {"clock": virtual_time.time}
    async with router(slow, admission=deadline, options=clock) as (client, fleet, _):
        response = await client.post("/v1/chat/completions", json=chat(ponder=EASY))
    assert response.status_code == 504
    assert all(r.cancelled for r in fleet.records)


def events(text: str) -> list[Any]:
    lines = [line[6:] for line in text.split("\n") if line.startswith("data: ")]
    return [line if line == "[DONE]" else json.loads(line) for line in lines]


async def test_a_streamed_single_sample_request_sends_its_tokens_then_the_report() -> None:
    async with router(Script(answer="42", tokens=3), budgets=SINGLE) as (client, _, _):
        response = await client.post("/v1/chat/completions", json=chat(
            ponder=EASY, stream=True, stream_options={"include_usage": True}))
    chunks = events(response.text)
    assert response.headers["content-type"].startswith("text/event-stream")
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks[1:-2]
                   if c["choices"])  # fmt: skip
    assert text.endswith("\\boxed{42}.")
    assert chunks[-3]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-3]["ponder"]["tier"] == "easy"
    assert chunks[-3]["ponder"]["samples"]["completed"] == 1
    assert chunks[-2]["usage"]["completion_tokens"] == 7
    assert chunks[-1] == "[DONE]"


async def test_a_streamed_voting_request_sends_progress_then_the_answer() -> None:
    async with router(Script(answer="42", tokens=3)) as (client, _, _):
        response = await client.post("/v1/chat/completions", json=chat(ponder=HARD, stream=True))
    chunks = events(response.text)
    progress = [c["ponder"] for c in chunks[:-1] if c.get("ponder", {}).get("event")]
    assert [p["samples_completed"] for p in progress] == [1, 2, 3, 4]
    assert chunks[-3]["choices"][0]["delta"]["content"].endswith("\\boxed{42}.")
    assert chunks[-2]["ponder"]["votes"] == [{"answer": "42", "votes": 4}]


async def test_a_streamed_failure_ends_with_an_error_event() -> None:
    async with router(Script(fail_after=0)) as (client, _, _):
        response = await client.post("/v1/chat/completions", json=chat(ponder=EASY, stream=True))
    assert events(response.text)[-1]["error"]["type"] == "upstream_error"


async def test_models_health_and_metrics_are_served() -> None:
    async with router() as (client, _, _):
        await client.post("/v1/chat/completions", json=chat(ponder=HARD))
        models = (await client.get("/v1/models")).json()
        health = await client.get("/healthz")
        metrics = (await client.get("/metrics")).text
    assert models["data"][0]["id"] == "m"
    assert health.status_code == 200
    for name in ("ponder_router_queue_depth{service=\"small\"} 0.0",
                 "ponder_router_inflight_samples{service=\"small\"} 0.0",
                 "ponder_router_demand_tokens{service=\"small\"} 0.0",
                 'ponder_router_requests_total{outcome="ok",tier="hard"} 1.0',
                 'ponder_router_request_samples_count{tier="hard"} 1.0',
                 f'ponder_router_budget_tokens_total{{tier="hard"}} {HARD_BUDGET_TOKENS:.1f}',
                 'ponder_router_used_tokens_total{tier="hard"} 36.0',
                 "ponder_router_early_stops_total 1.0",
                 "ponder_router_request_duration_seconds_count 1.0",
                 "ponder_router_time_to_first_token_seconds_count 1.0",
                 "ponder_router_upstream_failures_total 0.0"):  # fmt: skip
        assert name in metrics, name


async def test_an_escalating_tier_is_answered_by_the_larger_service() -> None:
    big_fleet = FakeFleet(constant(Script(answer="big")))
    big = create_app(config(service="big", model_name="big-model"),
                     backend_factory=big_fleet.factory)  # fmt: skip
    tiers = {"tiers": [
        {"name": "easy", "maxDifficulty": 0.5, "maxTokens": 100, "maxSamples": 1,
         "initialSamples": 1, "strategy": "single"},
        {"name": "hard", "maxDifficulty": 1.0, "maxTokens": 200, "maxSamples": 3,
         "initialSamples": 3, "strategy": "vote", "escalateTo": "big"}]}  # fmt: skip
    async with serve(big):
        escalator = Escalator(transport=httpx.ASGITransport(app=big))
        async with router(budgets=tiers, escalation={"big": "http://big"},
                          options={"escalator": escalator}) as (client, fleet, _):  # fmt: skip
            hard = (await client.post("/v1/chat/completions", json=chat(ponder=HARD))).json()
            easy = (await client.post("/v1/chat/completions", json=chat(ponder=EASY))).json()
    assert hard["ponder"]["answered_by"] == "big"
    assert hard["ponder"]["escalated_from"] == "small"
    assert hard["ponder"]["budget"]["max_samples"] == 3
    assert all(r.params.max_tokens == 200 for r in big_fleet.records)
    assert easy["ponder"]["answered_by"] == "small"
    assert len(fleet.records) == 1


async def test_an_escalated_request_may_spend_the_tokens_of_its_tiers_whole_envelope() -> None:
    big_fleet = FakeFleet(constant(Script(answer="big")))
    big = create_app(config(service="big", model_name="big-model"),
                     backend_factory=big_fleet.factory)  # fmt: skip
    tiers = {"tiers": [{"name": "hard", "maxDifficulty": 1.0, "maxTokens": 200,
                        "maxTokensAfterFirstWave": 400, "maxSamples": 6,
                        "initialSamples": 3, "strategy": "vote", "escalateTo": "big"}]}
    async with serve(big):
        escalator = Escalator(transport=httpx.ASGITransport(app=big))
        async with router(budgets=tiers, escalation={"big": "http://big"},
                          options={"escalator": escalator}) as (client, _fleet, _):  # fmt: skip
            hard = (await client.post("/v1/chat/completions", json=chat(ponder=HARD))).json()
    assert hard["ponder"]["answered_by"] == "big"
    assert big_fleet.records
    assert all(r.params.max_tokens == 400 for r in big_fleet.records)


async def test_an_escalating_envelope_escalates_only_a_contested_first_wave() -> None:
    big_fleet = FakeFleet(constant(Script(answer="big")))
    big = create_app(config(service="big", model_name="big-model"),
                     backend_factory=big_fleet.factory)  # fmt: skip
    tiers = {"tiers": [{"name": "hard", "maxDifficulty": 1.0, "maxTokens": 200, "maxSamples": 8,
                        "initialSamples": 3, "strategy": "vote", "escalateTo": "big",
                        "stopOnFirstWaveAgreement": True}]}  # fmt: skip
    # "What is 6*7?" gets one answer from every sample; any other prompt one per seed.
    small_fleet = FakeFleet(lambda prompt, params: Script(
        answer="42" if "6*7" in prompt else str(params.seed)))  # fmt: skip
    contested_chat = chat(messages=[{"role": "user", "content": "Name a number."}])
    async with serve(big):
        small = create_app(config(budgets=tiers, escalation={"big": "http://big"}),
                           backend_factory=small_fleet.factory,
                           escalator=Escalator(transport=httpx.ASGITransport(app=big)))
        async with serve(small) as client:
            agreed = (await client.post("/v1/chat/completions", json=chat())).json()
            asked_here = len(small_fleet.records)
            contested = (await client.post("/v1/chat/completions", json=contested_chat)).json()
            asked_in_all, big_before_stream = len(small_fleet.records), len(big_fleet.records)
            streamed = await client.post("/v1/chat/completions", json=chat(stream=True))
    assert streamed.status_code == 200
    assert len(small_fleet.records) == asked_in_all  # a stream is sent on at once
    assert agreed["ponder"]["answered_by"] == "small"
    assert agreed["ponder"]["stop_reason"] == "first-wave-agreed"
    assert asked_here == 3
    assert contested["ponder"]["answered_by"] == "big"
    assert contested["ponder"]["escalated_from"] == "small"
    assert len(small_fleet.records) - asked_here <= 3  # stopped within its first wave
    assert {r.prompt for r in big_fleet.records[:big_before_stream]} == {"Name a number."}
    assert big_fleet.records[-1].prompt == "What is 6*7?"


async def test_a_reloaded_config_moves_requests_to_the_new_endpoints() -> None:
    async with router(budgets=SINGLE) as (client, fleet, r):
        await r.apply_config(config(endpoints=("b:1",), model_name="renamed", budgets=SINGLE))
        response = await client.post("/v1/chat/completions", json=chat(model="renamed"))
    assert response.status_code == 200
    assert [rec.address for rec in fleet.records] == ["b:1"]


async def test_a_changed_config_file_is_picked_up_while_serving(
    tmp_path: Path, virtual_time: VirtualTime,
) -> None:
    path = tmp_path / "router.json"
    path.write_text(config().model_dump_json(by_alias=True))
    fleet = FakeFleet(constant(ANSWER_42))
    app = create_app(config(), backend_factory=fleet.factory, config_path=path,
                     config_poll_seconds=0.02, clock=virtual_time.time)  # fmt: skip
    async with serve(app) as client:
        path.write_text(config(model_name="renamed").model_dump_json(by_alias=True))
        for _ in range(100):
            if app.state.router.config.model_name == "renamed":
                break
            await asyncio.sleep(0.02)
        path.write_text("{not: valid")  # kept out: the running config stays
        await asyncio.sleep(0.1)
        response = await client.post("/v1/chat/completions", json=chat(model="renamed"))
    assert response.status_code == 200


def test_main_refuses_to_start_without_a_valid_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ponder_router.main import main

    monkeypatch.delenv("PONDER_ROUTER_CONFIG", raising=False)
    assert main() == 2
    bad = tmp_path / "router.yaml"
    bad.write_text("service: x\n")
    monkeypatch.setenv("PONDER_ROUTER_CONFIG", str(bad))
    assert main() == 2


@pytest.mark.parametrize(
    ("headers", "fragment"),
    [({}, "the request has none"), ({"content-type": "text/plain"}, "'text/plain'"),
     ({"content-type": "application/x-www-form-urlencoded"}, "x-www-form-urlencoded")],
)  # fmt: skip
async def test_a_body_not_declared_json_is_refused_with_415_before_triton(
    headers: dict[str, str], fragment: str
) -> None:
    async with router() as (client, fleet, _):
        response = await client.post("/v1/chat/completions", content=json.dumps(chat()),
                                     headers=headers)  # fmt: skip
    assert response.status_code == 415
    error = response.json()["error"]
    assert error["code"] == "unsupported_media_type"
    assert "Content-Type must be application/json" in error["message"]
    assert fragment in error["message"]
    assert fleet.records == []


@pytest.mark.parametrize(
    ("method", "path", "status", "fragment"),
    [("GET", "/v1/nope", 404, "Invalid URL (GET /v1/nope)"),
     ("GET", "/v1/chat/completions", 405, "allowed: POST"),
     ("DELETE", "/v1/models", 405, "GET")],
)  # fmt: skip
async def test_an_unknown_path_or_method_answers_in_openai_error_shape(
    method: str, path: str, status: int, fragment: str
) -> None:
    async with router() as (client, _, _):
        response = await client.request(method, path)
    assert response.status_code == status
    assert set(response.json()["error"]) == {"message", "type", "param", "code"}
    assert fragment in response.json()["error"]["message"]
    if status == 405:
        assert response.headers["Allow"]


async def test_the_openapi_document_describes_the_served_model() -> None:
    async with router() as (client, _, _):
        response = await client.get("/openapi.json")
    document = response.json()
    assert response.status_code == 200
    assert document["openapi"].startswith("3.1")
    request = document["components"]["schemas"]["ChatCompletionRequest"]
    assert request["properties"]["model"]["enum"] == ["m"]
    responses = document["paths"]["/v1/chat/completions"]["post"]["responses"]
    assert {"200", "400", "404", "413", "415", "429", "503", "504"} <= set(responses)


async def call_with_partial_body(app: Starlette, then: str) -> list[dict[str, Any]]:
    """POST half a body straight to the ASGI app, then leave (``disconnect``) or stall."""
    sent: list[dict[str, Any]] = []
    messages = [{"type": "http.request", "body": b'{"model": "m", ', "more_body": True}]

    async def receive() -> dict[str, Any]:
        if messages:
            return messages.pop()
        if then == "disconnect":
            return {"type": "http.disconnect"}
        await asyncio.sleep(3600)
        raise AssertionError("unreachable")

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
             "scheme": "http", "path": "/v1/chat/completions", "raw_path": b"", "query_string": b"",
             "root_path": "", "headers": [(b"content-type", b"application/json")],
             "client": ("127.0.0.1", 1), "server": ("router", 80)}  # fmt: skip
    async with app.router.lifespan_context(app):
        await app(scope, receive, send)
    return sent


async def test_a_client_stalling_mid_body_gets_408_at_the_request_deadline(
    virtual_time: VirtualTime,
) -> None:
    app = create_app(config(admission={"requestTimeoutSeconds": 0.2}),
                     backend_factory=FakeFleet(constant(ANSWER_42)).factory,
                     clock=virtual_time.time)  # fmt: skip
    started = virtual_time.now
    sent = await asyncio.wait_for(call_with_partial_body(app, "stall"), 5)
    assert virtual_time.now - started == pytest.approx(0.2, abs=0.02)
    assert sent[0]["status"] == 408
    assert b"request body not received within 0.2 s" in sent[1]["body"]


async def test_a_client_leaving_mid_body_is_no_server_error_in_the_log(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = create_app(config(), backend_factory=FakeFleet(constant(ANSWER_42)).factory)
    sent = await call_with_partial_body(app, "disconnect")
    assert sent[0]["status"] == 499
    assert not [r for r in caplog.records if r.levelname in ("ERROR", "CRITICAL")]


async def test_a_refused_usage_report_answers_401_but_is_no_rejected_completion(
    tmp_path: Path,
) -> None:
    keys = tmp_path / "keys"
    keys.write_text("sk-1:team-a\n")
    async with router(api_keys_file=str(keys)) as (client, _, _):
        missing = await client.get("/v1/usage")
        metrics = (await client.get("/metrics")).text
    assert missing.status_code == 401
    assert missing.json()["error"]["type"] == "authentication_error"
    assert "ponder_router_rejections_total{" not in metrics


async def test_without_api_keys_the_usage_report_is_refused_with_403() -> None:
    async with router() as (client, _, _):
        response = await client.get("/v1/usage")
    assert response.status_code == 403
    assert response.json()["error"]["type"] == "permission_denied"

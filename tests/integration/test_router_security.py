"""Tenants and secrets at the router: quotas isolate tenants, usage stays private, logs stay clean.

Real ``ponder-router`` processes in front of a real Triton, API keys from a key file as
the chart mounts it. The log audit drives every path that touches a prompt, a completion
or a key — answers, streams, refusals, a Triton that dies mid-request — at DEBUG level,
then reads every log those processes wrote.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from components import LOG_FILES
from fixtures_router import RouterProcess, StartRouterProcess
from fixtures_triton import StartTriton
from ponder_localstack.sim_llm import MODEL_NAME
from ponder_localstack.triton import SimModelOptions, TritonServer

pytestmark = pytest.mark.triton

SERVED = "sim-reasoner"


def router_config(triton: TritonServer, keys_file: Path, **admission: Any) -> dict[str, Any]:
    return {"service": "sim", "modelName": SERVED, "tritonModel": MODEL_NAME,
            "endpoints": [triton.grpc_url], "apiKeysFile": str(keys_file),
            "admission": {"requestTimeoutSeconds": 30, **admission}}  # fmt: skip


def client(router: RouterProcess, key: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=router.url + "/v1", api_key=key, max_retries=0)


async def ask(router: RouterProcess, key: str, problem: str, **options: Any) -> Any:
    async with client(router, key) as api:
        return await api.chat.completions.create(
            model=SERVED, messages=[{"role": "user", "content": problem}], **options)


async def test_a_tenant_at_its_quota_is_refused_while_another_tenant_is_served(
    start_triton: StartTriton, start_router_process: StartRouterProcess, tmp_path: Path
) -> None:
    triton = start_triton(SimModelOptions(token_latency_ms=20, max_concurrency=8))
    keys = tmp_path / "keys"
    keys.write_text("sk-flood:flood\nsk-quiet:quiet\n")
    router = start_router_process(router_config(triton, keys, maxConcurrencyPerTenant=2,
                                                maxConcurrentRequests=8))  # fmt: skip
    flood = [asyncio.ensure_future(ask(router, "sk-flood", "How many divisors has 3600?",
                                       reasoning_effort="high")) for _ in range(12)]  # fmt: skip
    await asyncio.sleep(0.5)
    started = time.monotonic()
    quiet = await ask(router, "sk-quiet", "What is 1+1?", reasoning_effort="low")
    quiet_seconds = time.monotonic() - started
    results = await asyncio.gather(*flood, return_exceptions=True)

    assert quiet.choices[0].message.content
    refused = [r for r in results if isinstance(r, openai.RateLimitError)]
    served = [r for r in results if not isinstance(r, BaseException)]
    assert len(refused) >= 8, results  # 2 at a time for this tenant, no queueing past it
    assert len(served) + len(refused) == 12, results
    assert all(int(r.response.headers["retry-after"]) >= 1 for r in refused)
    assert "tenant" in refused[0].message
    assert quiet_seconds < 5, f"the other tenant waited {quiet_seconds:.1f} s"


async def test_usage_is_reported_to_each_tenant_and_to_nobody_else(
    start_triton: StartTriton, start_router_process: StartRouterProcess, tmp_path: Path
) -> None:
    triton = start_triton(SimModelOptions(token_latency_ms=2, max_concurrency=8))
    keys = tmp_path / "keys"
    keys.write_text("sk-a:team-a\nsk-b:team-b\n")
    router = start_router_process(router_config(triton, keys))
    for _ in range(3):
        await ask(router, "sk-a", "What is 2+2?", reasoning_effort="low")
    answer = await ask(router, "sk-b", "What is 3+3?", reasoning_effort="low")

    async def usage(key: str | None) -> httpx.Response:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        async with httpx.AsyncClient(timeout=10) as http:
            return await http.get(router.url + "/v1/usage", headers=headers)

    mine, theirs = (await usage("sk-a")).json(), (await usage("sk-b")).json()
    assert mine["tenant"] == "team-a"
    assert mine["requests"] == {"ok": 3}
    assert theirs["tenant"] == "team-b"
    assert theirs["requests"] == {"ok": 1}
    assert theirs["completion_tokens"] == answer.usage.completion_tokens
    assert "team-b" not in (await usage("sk-a")).text  # nothing about the other tenant
    assert (await usage(None)).status_code == 401
    assert (await usage("sk-unknown")).status_code == 403


async def test_no_prompt_completion_or_key_appears_in_any_log(
    start_triton: StartTriton, start_router_process: StartRouterProcess, tmp_path: Path
) -> None:
    canary = secrets.token_hex(8)
    key = f"sk-canary-{canary}"
    prompt = f"Compute the canary sum {canary} plus 1. What is $7 \\cdot 6$?"
    keys = tmp_path / "keys"
    keys.write_text(f"{key}:audited\n")
    triton = start_triton(SimModelOptions(token_latency_ms=5, max_concurrency=4))
    doomed = start_triton(SimModelOptions(token_latency_ms=50, max_concurrency=4))
    router = start_router_process(router_config(triton, keys), log_level="debug")
    completions: list[str] = []

    answer = await ask(router, key, prompt, reasoning_effort="high")
    completions.append(answer.choices[0].message.content or "")
    async with client(router, key) as api:
        stream = await api.chat.completions.create(
            model=SERVED, messages=[{"role": "user", "content": prompt}], stream=True,
            reasoning_effort="low")
        completions.append("".join([c.choices[0].delta.content or "" async for c in stream
                                    if c.choices]))  # fmt: skip
    async with httpx.AsyncClient(timeout=10) as http:
        for bad, auth in (
            ({"model": SERVED, "messages": [{"role": "wizard", "content": prompt}]}, key),
            ({"model": "nope", "messages": [{"role": "user", "content": prompt}]}, key),
            ({"model": SERVED, "prompt": prompt}, key),
            ({"model": SERVED, "messages": [{"role": "user", "content": prompt}]}, key + "x"),
        ):
            response = await http.post(router.url + "/v1/chat/completions", json=bad,
                                       headers={"Authorization": f"Bearer {auth}"})
            assert response.status_code in (400, 403, 404), response.text
    # A replica that dies mid-request: the failure path logs, and must not log the request.
    dying = start_router_process(router_config(doomed, keys), log_level="debug")
    pending = asyncio.ensure_future(ask(dying, key, prompt, reasoning_effort="high"))
    await asyncio.sleep(1.0)
    doomed.kill()
    with pytest.raises(openai.APIStatusError):
        await pending

    for router_ in (router, dying):
        router_.process.stop()
    secrets_ = [key, canary] + [line for c in completions for line in c.splitlines()
                                if len(line) > 24]  # fmt: skip
    assert len(secrets_) > 3, "the audit has nothing to look for"
    logs = {p.name: p.read_text(errors="replace") for p in LOG_FILES if p.exists()
            and p.is_relative_to(tmp_path)}  # fmt: skip
    assert {"router-0.log", "router-1.log"} <= set(logs), sorted(logs)
    assert any("DEBUG" in text for text in logs.values()), "the routers did not log at DEBUG"
    leaks = sorted({(name, s[:30]) for name, text in logs.items() for s in secrets_ if s in text})
    assert not leaks, f"logs contain prompts, completions or keys: {leaks}"

"""A cancelled sample stops generating on a real Triton within a bounded number of tokens.

Probe exits and early stopping cancel running samples; what they save is what the server
does not generate after the cancel. Measured with the router's own Triton client
(``ponder_router.triton``) against the stand-in LLM, from Triton's ``/metrics``
(``vllm:generation_tokens_total``, the tokens the model sent): after the cancel, the
stand-in generates at most its cancellation check interval's worth of tokens more.
"""

from __future__ import annotations

import asyncio
import re

import httpx
import pytest

from fixtures_triton import StartTriton
from ponder_localstack.sim_llm import MODEL_NAME
from ponder_localstack.triton import SimModelOptions, TritonServer
from ponder_router.triton import SampleParams, TritonBackend

pytestmark = pytest.mark.triton

TOKEN_LATENCY_MS = 5.0
READ_TOKENS = 40
"""Tokens the client reads before it cancels."""
WAIT_SECONDS = 1.0
"""After the cancel: a model that kept going would generate 200 more tokens meanwhile."""
BOUND_TOKENS = 20
"""The stand-in checks every 20 ms (4 tokens here), its metrics publish every 50 ms and a
token or two may be on the wire: 20 is 100 ms of generation."""
GENERATED = re.compile(r"^vllm:generation_tokens_total\{[^}]*\} (\S+)$", re.M)


async def generated_tokens(http: httpx.AsyncClient, server: TritonServer) -> float:
    return sum(float(v) for v in GENERATED.findall((await http.get(server.metrics_url)).text))


async def read_then_cancel(backend: TritonBackend, seed: int) -> int:
    """Stream one long sample, cancel it after ``READ_TOKENS``; the tokens it read."""
    stream = backend.stream_sample("Think for a long time.", SampleParams(max_tokens=4096,
                                   seed=seed), timeout_seconds=60)  # fmt: skip
    async for _ in stream:
        if (stream.signals.output_tokens or 0) >= READ_TOKENS:
            stream.cancel()
            break
    return stream.signals.output_tokens or 0


async def test_a_cancelled_sample_generates_at_most_a_few_tokens_more_on_triton(
    start_triton: StartTriton,
) -> None:
    server = start_triton(SimModelOptions(token_latency_ms=TOKEN_LATENCY_MS, max_concurrency=4,
                                          length_scale=1.0))  # fmt: skip
    backend = TritonBackend(server.grpc_url, MODEL_NAME)
    async with httpx.AsyncClient() as http:
        try:
            for seed in range(3):
                before = await generated_tokens(http, server)
                read = await read_then_cancel(backend, seed)
                await asyncio.sleep(WAIT_SECONDS)
                generated = await generated_tokens(http, server) - before
                assert READ_TOKENS <= read <= generated
                assert generated - read <= BOUND_TOKENS, (
                    f"Triton generated {generated:.0f} tokens, the client read {read} before "
                    "it cancelled")  # fmt: skip
        finally:
            await backend.close()


async def test_concurrent_cancelled_samples_each_stop_within_the_bound(
    start_triton: StartTriton,
) -> None:
    server = start_triton(SimModelOptions(token_latency_ms=TOKEN_LATENCY_MS, max_concurrency=8,
                                          length_scale=1.0))  # fmt: skip
    backend = TritonBackend(server.grpc_url, MODEL_NAME)
    async with httpx.AsyncClient() as http:
        try:
            before = await generated_tokens(http, server)
            reads = await asyncio.gather(*(read_then_cancel(backend, seed) for seed in range(8)))
            await asyncio.sleep(WAIT_SECONDS)
            generated = await generated_tokens(http, server) - before
        finally:
            await backend.close()
    assert generated - sum(reads) <= BOUND_TOKENS * len(reads), (
        f"Triton generated {generated:.0f} tokens, the clients read {sum(reads)}")

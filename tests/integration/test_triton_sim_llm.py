"""A real Triton serving the stand-in LLM (a simulator standing in for a GPU LLM).

Talks to it as the router talks to Triton's vLLM backend: gRPC bidirectional streaming
with ``tritonclient.grpc.aio`` and the HTTP generate extension. Checks that tokens
stream before the answer, that queued requests show in ``/metrics``, and that a
cancelled stream frees the model.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import numpy as np
import pytest
import tritonclient.grpc.aio as grpcclient
from tritonclient.utils import np_to_triton_dtype

from fixtures_triton import StartTriton
from ponder_localstack.sim_llm import MODEL_NAME
from ponder_localstack.sim_llm.behaviour import (
    SimModel,
    parse_sampling_parameters,
)
from ponder_localstack.triton import SimModelOptions, TritonServer
from ponder_tools.data import shared_data_dir

pytestmark = pytest.mark.triton

DATA_DIR = shared_data_dir()
BOXED = re.compile(r"The answer is \\boxed\{.+\}\.$")
PENDING = re.compile(r'^nv_inference_pending_request_count\{model="([^"]+)".*\} (\d+)', re.M)


def vllm_inputs(
    prompt: str, sampling: dict[str, Any], stream: bool = True, exclude_input: bool = True
) -> list[grpcclient.InferInput]:
    """The inputs of Triton's vLLM backend: prompt, stream flag, sampling JSON."""
    arrays = {
        "text_input": np.array([prompt.encode()], dtype=np.object_),
        "stream": np.array([stream], dtype=bool),
        "sampling_parameters": np.array([json.dumps(sampling).encode()], dtype=np.object_),
        "exclude_input_in_output": np.array([exclude_input], dtype=bool),
    }
    inputs = []
    for name, array in arrays.items():
        tensor = grpcclient.InferInput(name, list(array.shape), np_to_triton_dtype(array.dtype))
        tensor.set_data_from_numpy(array)
        inputs.append(tensor)
    return inputs


@dataclass
class Streamed:
    chunks: list[str] = field(default_factory=list)
    error: str | None = None
    cancelled: bool = False

    @property
    def text(self) -> str:
        return "".join(self.chunks)


async def generate(
    client: grpcclient.InferenceServerClient,
    prompt: str,
    sampling: dict[str, Any],
    *,
    model: str = MODEL_NAME,
    stream: bool = True,
    exclude_input: bool = True,
    cancel_after: int | None = None,
) -> Streamed:
    """One request over the gRPC stream; optionally cancel it after some responses."""

    async def requests() -> AsyncIterator[dict[str, Any]]:
        yield {"model_name": model, "inputs": vllm_inputs(prompt, sampling, stream, exclude_input)}

    out = Streamed()
    responses = client.stream_infer(requests())
    async for result, error in responses:
        if error is not None:
            out.error = str(error)
            break
        out.chunks.append(result.as_numpy("text_output")[0].decode())
        if cancel_after is not None and len(out.chunks) >= cancel_after:
            responses.cancel()
            out.cancelled = True
            break
    return out


async def pending_requests(http: httpx.AsyncClient, server: TritonServer, model: str) -> int:
    body = (await http.get(server.metrics_url)).text
    counts = {name: int(n) for name, n in PENDING.findall(body)}
    return counts[model]


@pytest.fixture(scope="module")
def sim() -> SimModel:
    return SimModel.load(DATA_DIR)


async def test_a_streamed_generate_returns_several_tokens_then_the_answer(
    triton_server: TritonServer, sim: SimModel
) -> None:
    problem = sim.catalog.problems[10]
    sampling = {"max_tokens": 4096, "temperature": 0.8, "seed": 21}
    async with grpcclient.InferenceServerClient(triton_server.grpc_url) as client:
        streamed = await generate(client, problem.text, sampling)

    assert streamed.error is None
    assert len(streamed.chunks) >= 5
    assert not any("\\boxed" in chunk for chunk in streamed.chunks[:-1])
    assert "\\boxed{" in streamed.chunks[-1]
    assert BOXED.search(streamed.text)
    expected = sim.complete(problem.text, parse_sampling_parameters(sampling))
    assert streamed.text == expected.text


async def test_an_unstreamed_generate_returns_one_response_with_the_prompt_first(
    triton_server: TritonServer,
) -> None:
    prompt = "What is 6 times 7?"
    sampling = {"max_tokens": 4096, "seed": 4}
    async with grpcclient.InferenceServerClient(triton_server.grpc_url) as client:
        streamed = await generate(client, prompt, sampling, stream=False, exclude_input=False)

    assert streamed.error is None
    assert len(streamed.chunks) == 1
    assert streamed.text.startswith(prompt)
    assert BOXED.search(streamed.text)


@pytest.mark.parametrize(
    ("sampling", "message"),
    [
        pytest.param({"max_tokens": 0}, "max_tokens", id="max_tokens of zero"),
        pytest.param({"max_token": 5}, "max_token", id="a misspelt key"),
    ],
)
async def test_invalid_sampling_parameters_come_back_as_an_error(
    triton_server: TritonServer, sampling: dict[str, Any], message: str
) -> None:
    async with grpcclient.InferenceServerClient(triton_server.grpc_url) as client:
        streamed = await generate(client, "What is 6 times 7?", sampling)
    assert streamed.error is not None
    assert message in streamed.error


async def test_the_http_generate_stream_endpoint_sends_tokens_as_server_sent_events(
    triton_server: TritonServer,
) -> None:
    body = {
        "text_input": "What is 6 times 7?",
        "stream": True,
        "exclude_input_in_output": True,
        "sampling_parameters": json.dumps({"max_tokens": 4096, "seed": 2}),
    }
    url = f"{triton_server.http_url}/v2/models/{MODEL_NAME}/generate_stream"
    async with (
        httpx.AsyncClient(timeout=30) as http,
        http.stream("POST", url, json=body) as response,
    ):
        assert response.status_code == 200
        events = [
            json.loads(line.removeprefix("data:"))
            async for line in response.aiter_lines()
            if line.startswith("data:")
        ]

    assert len(events) >= 5
    assert all(event["model_name"] == MODEL_NAME for event in events)
    assert BOXED.search("".join(event["text_output"] for event in events))


async def test_pending_request_count_rises_above_zero_under_concurrent_load(
    triton_server: TritonServer,
) -> None:
    # 32 requests of 40 tokens at 20 ms each, 8 generating at once: about 3 s in waves.
    sampling = {"max_tokens": 40, "ignore_eos": True, "ponder_token_latency_ms": 20}
    peak = 0
    async with (
        grpcclient.InferenceServerClient(triton_server.grpc_url) as client,
        httpx.AsyncClient(timeout=10) as http,
    ):
        tasks = [
            asyncio.create_task(generate(client, f"Load test request {i}.", sampling))
            for i in range(32)
        ]
        deadline = time.monotonic() + 60
        while not all(t.done() for t in tasks) and time.monotonic() < deadline:
            peak = max(peak, await pending_requests(http, triton_server, MODEL_NAME))
            await asyncio.sleep(0.1)
        results = await asyncio.gather(*tasks)
        after = await pending_requests(http, triton_server, MODEL_NAME)

    assert peak >= 8, f"peak pending requests {peak}"
    assert after == 0
    assert all(r.error is None and len(r.chunks) >= 2 for r in results)
    assert all(len("".join(r.chunks).split()) == 40 for r in results)


async def test_a_cancelled_stream_stops_the_model_early(start_triton: StartTriton) -> None:
    # One generation slot: while the long request runs, nothing else can start.
    server = start_triton(SimModelOptions(token_latency_ms=20, max_concurrency=1))
    long = {"max_tokens": 3000, "ignore_eos": True, "seed": 1}  # a minute if not stopped
    short = {"max_tokens": 10, "ignore_eos": True, "seed": 2}
    async with grpcclient.InferenceServerClient(server.grpc_url) as client:
        cancelled = await generate(client, "Think for a long time.", long, cancel_after=3)
        started = time.monotonic()
        follower = await asyncio.wait_for(generate(client, "Be quick.", short), timeout=30)
        waited = time.monotonic() - started

    assert cancelled.cancelled
    assert len(cancelled.chunks) == 3
    assert follower.error is None
    assert len(follower.chunks) >= 2
    assert waited < 5, f"the next request waited {waited:.1f} s for the cancelled one"

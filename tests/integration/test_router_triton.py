"""The router's Triton client against a real Triton serving the stand-in LLM.

The stand-in (``ponder-sim-llm``) is a simulator standing in for a GPU LLM; it speaks
the vLLM backend's inputs and outputs. These tests pin down what the router relies on:
how a decoupled stream ends, that ``cancel()`` and the per-sample deadline stop the
model (a one-slot model serves the next request at once), and how failures map.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc.aio as grpcclient
from tritonclient.grpc import InferInput

from fixtures_triton import StartTriton
from ponder_localstack.proc import free_port
from ponder_localstack.sim_llm import MODEL_NAME
from ponder_localstack.triton import SimModelOptions, TritonServer
from ponder_router.errors import UpstreamError
from ponder_router.triton import (
    EndpointUnavailableError,
    SampleParams,
    SampleTimeoutError,
    TritonBackend,
)

pytestmark = pytest.mark.triton

PROBLEM = "What is the smallest positive integer $n$ such that $17n \\equiv 1234 \\pmod{7}?$"


async def collect(backend: TritonBackend, params: SampleParams, *,
                  timeout_seconds: float = 30, stream: bool = True) -> list[str]:  # fmt: skip
    chunks = backend.stream_sample(PROBLEM, params, timeout_seconds=timeout_seconds,
                                   stream=stream)  # fmt: skip
    return [chunk async for chunk in chunks]


async def test_a_sample_streams_token_by_token_and_ends_with_its_answer(
    triton_server: TritonServer,
) -> None:
    backend = TritonBackend(triton_server.grpc_url, MODEL_NAME)
    try:
        chunks = await collect(backend, SampleParams(max_tokens=4096, seed=3))
    finally:
        await backend.close()
    assert len(chunks) > 5
    assert "".join(chunks).rstrip().endswith("}.")
    assert "\\boxed{" in chunks[-1]


async def test_a_sample_asked_for_without_streaming_arrives_whole_in_one_response(
    triton_server: TritonServer,
) -> None:
    backend = TritonBackend(triton_server.grpc_url, MODEL_NAME)
    try:
        streamed = await collect(backend, SampleParams(max_tokens=4096, seed=3))
        whole = await collect(backend, SampleParams(max_tokens=4096, seed=3), stream=False)
    finally:
        await backend.close()
    assert whole == ["".join(streamed)]


async def test_triton_marks_the_final_response_and_closes_a_half_closed_stream(
    triton_server: TritonServer,
) -> None:
    # The two end-of-sample signals the client relies on, read off the raw gRPC stream.
    def tensor(name: str, dtype: str, value: Any) -> InferInput:
        infer_input = InferInput(name, [1], dtype)
        infer_input.set_data_from_numpy(np.array([value], dtype=np.object_ if dtype == "BYTES"
                                                 else np.bool_))  # fmt: skip
        return infer_input

    async def one_request() -> AsyncIterator[dict[str, Any]]:
        yield {"model_name": MODEL_NAME, "inputs": [
            tensor("text_input", "BYTES", PROBLEM.encode()), tensor("stream", "BOOL", True),
            tensor("sampling_parameters", "BYTES", json.dumps({"max_tokens": 50}).encode()),
            tensor("exclude_input_in_output", "BOOL", True)]}  # fmt: skip

    async with grpcclient.InferenceServerClient(triton_server.grpc_url) as client:
        finals = []
        async for result, error in client.stream_infer(one_request()):
            assert error is None
            params = result.get_response().parameters
            finals.append(params["triton_final_response"].bool_param)
    assert finals[-1] is True
    assert not any(finals[:-1])  # and after the final one, the server ended the stream


async def test_a_cancelled_sample_stops_generating_on_triton(start_triton: StartTriton) -> None:
    server = start_triton(SimModelOptions(token_latency_ms=40, max_concurrency=1))
    backend = TritonBackend(server.grpc_url, MODEL_NAME)
    try:
        stream = backend.stream_sample(PROBLEM, SampleParams(max_tokens=4096, seed=1),
                                       timeout_seconds=60)  # fmt: skip
        received = 0
        async for _ in stream:
            received += 1
            if received == 3:
                stream.cancel()
                break
        started = time.monotonic()
        follower = await collect(backend, SampleParams(max_tokens=2, seed=2))
        waited = time.monotonic() - started
    finally:
        await backend.close()
    # The cancelled sample had dozens of tokens (seconds) left; its one slot was free at once.
    assert len(follower) == 2
    assert waited < 1.0, f"the next sample waited {waited:.2f} s"


async def test_a_sample_past_its_deadline_times_out_and_stops_on_triton(
    start_triton: StartTriton,
) -> None:
    server = start_triton(SimModelOptions(token_latency_ms=40, max_concurrency=1))
    backend = TritonBackend(server.grpc_url, MODEL_NAME)
    try:
        with pytest.raises(SampleTimeoutError):
            await collect(backend, SampleParams(max_tokens=4096, seed=1), timeout_seconds=0.3)
        started = time.monotonic()
        await collect(backend, SampleParams(max_tokens=2, seed=2))
        waited = time.monotonic() - started
    finally:
        await backend.close()
    assert waited < 1.0, f"the next sample waited {waited:.2f} s"


async def test_an_unreachable_replica_is_reported_as_unavailable() -> None:
    backend = TritonBackend(f"127.0.0.1:{free_port()}", MODEL_NAME)
    try:
        with pytest.raises(EndpointUnavailableError):
            await collect(backend, SampleParams(max_tokens=5), timeout_seconds=5)
    finally:
        await backend.close()


@pytest.mark.parametrize(
    ("model", "params"),
    [("no-such-model", SampleParams(max_tokens=5)),
     (MODEL_NAME, SampleParams(max_tokens=5, top_p=0.0))],  # refused by the model
)  # fmt: skip
async def test_a_refused_sample_is_an_upstream_error_not_an_outage(
    triton_server: TritonServer, model: str, params: SampleParams
) -> None:
    backend = TritonBackend(triton_server.grpc_url, model)
    try:
        with pytest.raises(UpstreamError) as caught:
            await collect(backend, params)
    finally:
        await backend.close()
    assert not isinstance(caught.value, EndpointUnavailableError)

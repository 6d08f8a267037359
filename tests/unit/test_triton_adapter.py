"""The Triton adapter's request building, its reading of the per-sample signals, and
which failures mark a replica unavailable.

A model that declares the vLLM backend's ``return_*`` inputs (r24.12 and later) gets them
set to true; a model without them gets the inputs it always got. No Triton runs here:
the gRPC client is replaced by a fake that answers ``get_model_config`` and counts calls.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from tritonclient.utils import InferenceServerException

from ponder_router.errors import UpstreamError
from ponder_router.triton import (
    SIGNAL_INPUTS,
    EndpointUnavailableError,
    SampleParams,
    SampleSignals,
    SampleTimeoutError,
    TritonBackend,
)

VLLM_INPUTS = ["text_input", "stream", "sampling_parameters", "exclude_input_in_output"]


class FakeClient:
    def __init__(self, inputs: list[str], *, fail: bool = False,
                 status: str = "StatusCode.NOT_FOUND") -> None:  # fmt: skip
        self.inputs = inputs
        self.fail = fail
        self.status = status
        self.config_reads = 0

    async def get_model_config(self, model: str, *, as_json: bool = False,
                               client_timeout: float | None = None) -> dict[str, Any]:  # fmt: skip
        self.config_reads += 1
        if self.fail:
            raise InferenceServerException(f"no model {model}", status=self.status)
        assert as_json
        return {"config": {"name": model, "input": [{"name": n, "data_type": "TYPE_BOOL"}
                                                    for n in self.inputs]}}  # fmt: skip

    async def close(self) -> None:
        pass


async def request_inputs(backend: TritonBackend) -> dict[str, bool | None]:
    request = await backend.build_request("p", SampleParams(max_tokens=8), stream=False)
    names: dict[str, bool | None] = {}
    for tensor in request["inputs"]:
        names[tensor.name()] = (bool(np.frombuffer(tensor._raw_content, dtype=np.bool_)[0])
                                if tensor.datatype() == "BOOL" else None)  # fmt: skip
    return names


@pytest.mark.parametrize(
    ("declared", "expected"),
    [(VLLM_INPUTS, []),
     (VLLM_INPUTS + list(SIGNAL_INPUTS), list(SIGNAL_INPUTS)),
     ([*VLLM_INPUTS, "return_finish_reason", "return_logprobs"], ["return_finish_reason"])],
)  # fmt: skip
async def test_a_signal_input_is_sent_only_when_the_model_declares_it(
    declared: list[str], expected: list[str]
) -> None:
    backend = TritonBackend("127.0.0.1:1", "m")
    backend.client = FakeClient(declared)
    names = await request_inputs(backend)
    assert list(names)[:4] == VLLM_INPUTS
    assert [n for n in names if n.startswith("return_")] == expected
    assert all(names[n] is True for n in expected)


async def test_the_model_config_is_read_once_per_endpoint() -> None:
    backend = TritonBackend("127.0.0.1:1", "m")
    client = FakeClient(VLLM_INPUTS + list(SIGNAL_INPUTS))
    backend.client = client
    for _ in range(3):
        await request_inputs(backend)
    assert client.config_reads == 1


async def test_a_failed_config_read_is_an_upstream_error_and_is_retried_next_time() -> None:
    backend = TritonBackend("127.0.0.1:1", "m")
    client = FakeClient(VLLM_INPUTS, fail=True)
    backend.client = client
    with pytest.raises(UpstreamError, match="model config of m"):
        await request_inputs(backend)
    client.fail = False
    await request_inputs(backend)
    assert client.config_reads == 2


@pytest.mark.parametrize(
    ("status", "error"),
    [("StatusCode.UNAVAILABLE", EndpointUnavailableError),
     ("StatusCode.DEADLINE_EXCEEDED", SampleTimeoutError)],
)  # fmt: skip
async def test_a_config_read_that_cannot_reach_the_replica_says_so(
    status: str, error: type[UpstreamError]
) -> None:
    backend = TritonBackend("127.0.0.1:1", "m")
    backend.client = FakeClient(VLLM_INPUTS, fail=True, status=status)
    with pytest.raises(error):
        await request_inputs(backend)


class FakeResult:
    def __init__(self, **outputs: Any) -> None:
        self.outputs = {name: np.array([value]) for name, value in outputs.items()}

    def as_numpy(self, name: str) -> Any:
        return self.outputs.get(name)


def test_signals_sum_output_tokens_and_keep_the_last_reason_and_logprob() -> None:
    signals = SampleSignals()
    signals.add_response(FakeResult(finish_reason=b"None", cumulative_logprob=-1.5,
                                    num_output_tokens=np.uint32(3)))  # fmt: skip
    assert signals.finish_reason is None
    signals.add_response(FakeResult(finish_reason=b"length", cumulative_logprob=-4.0,
                                    num_output_tokens=np.uint32(2)))  # fmt: skip
    assert (signals.finish_reason, signals.cumulative_logprob, signals.output_tokens) == (
        "length", -4.0, 5)
    assert signals.truncated


def test_a_response_without_signals_leaves_them_unknown() -> None:
    signals = SampleSignals()
    signals.add_response(FakeResult())
    assert signals == SampleSignals()
    assert not signals.truncated


class RefusingClient(FakeClient):
    """A replica whose model answers every new stream with one in-stream error."""

    def __init__(self, message: str) -> None:
        super().__init__(VLLM_INPUTS)
        self.message = message

    def stream_infer(self, requests: Any, *, stream_timeout: float) -> Any:
        async def responses() -> Any:
            yield None, InferenceServerException(self.message)

        return responses()


@pytest.mark.parametrize(
    ("message", "error"),
    [("Request for unknown model: 'm' has no available versions", EndpointUnavailableError),
     ("generation failed: out of memory", UpstreamError)],
)  # fmt: skip
async def test_a_draining_replicas_refusal_marks_it_unavailable_and_a_model_error_does_not(
    message: str, error: type[UpstreamError]
) -> None:
    backend = TritonBackend("127.0.0.1:1", "m")
    backend.client = RefusingClient(message)
    stream = backend.stream_sample("p", SampleParams(max_tokens=8), timeout_seconds=5,
                                   stream=True)  # fmt: skip
    with pytest.raises(UpstreamError) as raised:
        await anext(aiter(stream))
    assert type(raised.value) is error
    assert message in str(raised.value)

"""One sample on Triton: a gRPC stream against a decoupled, vLLM-style LLM model.

Role: the transport under ``endpoints`` (which picks the Triton replica) and
``executor`` (which runs many samples per request). ``TritonBackend`` holds one
``tritonclient.grpc.aio`` client per Triton replica; ``TritonBackend.stream_sample``
opens one ``ModelStreamInfer`` stream per sample with the vLLM backend's inputs
(``text_input``, ``stream``, ``sampling_parameters`` JSON, ``exclude_input_in_output``)
and yields ``text_output`` chunks as they arrive. With ``stream=True`` the model sends
one response per token; with ``stream=False`` one response with the whole sample, which
is all a sample needs that is not forwarded to a client token by token (one gRPC
message instead of one per token; cancellation and deadlines work the same).

Per-sample signals (Triton's vLLM backend r24.12 and later, its
``docs/additional_outputs.md``): the BOOL inputs ``return_finish_reason``,
``return_cumulative_logprob`` and ``return_num_output_tokens`` ask for the outputs
``finish_reason`` (``"stop"``, ``"length"``; ``"None"`` on a response that does not end
the sample), ``cumulative_logprob`` (of everything generated so far) and
``num_output_tokens`` (the tokens new in this response). A backend reads its model's
config once (``get_model_config``) and sends each input only when the model declares it,
so a model without them is served as before; ``SampleStream.signals`` holds what came
back (``None`` fields: not declared, or not sent).

End of a sample: the request iterator yields exactly one request and finishes, which
half-closes the gRPC stream; Triton marks the last response of a decoupled request with
the response parameter ``triton_final_response = true`` and closes the stream once that
request is complete. The stream ends at whichever comes first; both were checked against
Triton 2.51 (``tests/integration/test_router_triton.py``).

Cancellation: ``SampleStream.cancel()`` cancels the gRPC call (the response iterator's
``cancel()``); Triton flags the request cancelled and the model stops generating
(vLLM's backend and the stand-in check ``is_cancelled``). The per-sample timeout is the
stream's gRPC deadline, so Triton sees a timed-out sample as cancelled as well.

Errors: every failure becomes ``UpstreamError``; ``EndpointUnavailableError`` says the
replica itself is unreachable or draining (the pool marks it down: a Triton given
SIGTERM refuses new requests with "has no available versions" while it finishes those in
flight), ``SampleTimeoutError`` that the sample ran past its deadline.
"""

from __future__ import annotations

import json
import struct
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Protocol

import grpc
import numpy as np
import tritonclient.grpc.aio as grpcclient
from tritonclient.grpc import InferInput, InferRequestedOutput
from tritonclient.utils import InferenceServerException

from .errors import UpstreamError

SIGNAL_INPUTS = ("return_finish_reason", "return_cumulative_logprob", "return_num_output_tokens")
"""The vLLM backend's optional inputs that ask for the per-sample signals."""
_UNAVAILABLE = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.UNKNOWN})
_UNLOADED = "has no available versions"
"""Triton's answer to a new request once SIGTERM has it unloading its models (the drain)."""
_LENGTH = struct.Struct("<I")


class EndpointUnavailableError(UpstreamError):
    """The Triton replica could not be reached; another replica may serve the sample."""


class SampleTimeoutError(UpstreamError):
    """A sample ran past its deadline; Triton was told to stop it."""


@dataclass(frozen=True, slots=True)
class SampleParams:
    """vLLM sampling parameters of one sample."""

    max_tokens: int
    temperature: float | None = None
    top_p: float | None = None
    seed: int | None = None
    stop: tuple[str, ...] = ()

    def to_json(self) -> bytes:
        params: dict[str, Any] = {"max_tokens": self.max_tokens}
        if self.temperature is not None:
            params["temperature"] = self.temperature
        if self.top_p is not None:
            params["top_p"] = self.top_p
        if self.seed is not None:
            params["seed"] = self.seed
        if self.stop:
            params["stop"] = list(self.stop)
        return json.dumps(params, separators=(",", ":")).encode()


@dataclass(slots=True)
class SampleSignals:
    """What the model server said about one sample besides its text (None: not sent)."""

    finish_reason: str | None = None
    """``"stop"`` (the model ended or hit a stop string) or ``"length"`` (``max_tokens``)."""
    cumulative_logprob: float | None = None
    """Log-probability of the whole generated text (natural log), as of the last response."""
    output_tokens: int | None = None
    """Tokens generated so far: the sum of every response's ``num_output_tokens``."""

    @property
    def truncated(self) -> bool:
        """The sample was cut off at ``max_tokens``: its text has no trustworthy answer."""
        return self.finish_reason == "length"

    def add_response(self, result: Any) -> None:
        """Fold in one response's additional outputs (an ``InferResult``)."""
        reasons = result.as_numpy("finish_reason")
        if reasons is not None and reasons.size:
            reason = reasons.reshape(-1)[0]
            text = reason.decode() if isinstance(reason, bytes) else str(reason)
            if text != "None":  # vLLM's str() of an unfinished sequence's reason
                self.finish_reason = text
        logprobs = result.as_numpy("cumulative_logprob")
        if logprobs is not None and logprobs.size:
            self.cumulative_logprob = float(logprobs.reshape(-1)[0])
        counts = result.as_numpy("num_output_tokens")
        if counts is not None and counts.size:
            self.output_tokens = (self.output_tokens or 0) + int(counts.reshape(-1)[0])


class SampleStream(Protocol):
    """Text chunks of one running sample; ``cancel()`` stops it on the server;
    ``signals`` fills in as responses arrive."""

    signals: SampleSignals

    def __aiter__(self) -> AsyncIterator[str]: ...

    def cancel(self) -> None: ...


class SampleBackend(Protocol):
    """One inference replica: what ``endpoints`` and ``executor`` need from it."""

    address: str

    def stream_sample(
        self, prompt: str, params: SampleParams, *, timeout_seconds: float, stream: bool = True
    ) -> SampleStream: ...

    async def score(self, model: str, text: str, *, timeout_seconds: float) -> float: ...

    async def close(self) -> None: ...


class _BytesInput(InferInput):  # type: ignore[misc]  # tritonclient is untyped
    """A one-element BYTES input in Triton's wire form (4-byte little-endian length, then
    the bytes), without a numpy round trip; ``set_data_from_numpy`` fills the same field."""

    def __init__(self, name: str, value: bytes) -> None:
        super().__init__(name, [1], "BYTES")
        self._raw_content = _LENGTH.pack(len(value)) + value


def _bool_input(name: str, value: bool) -> InferInput:
    tensor = InferInput(name, [1], "BOOL")
    tensor.set_data_from_numpy(np.array([value], dtype=np.bool_))
    return tensor


def _text_output(response: Any) -> str:
    """The ``text_output`` of a response (BYTES, length-prefixed elements), or ``""``."""
    for index, output in enumerate(response.outputs):
        if output.name != "text_output":
            continue
        if index < len(response.raw_output_contents):
            raw: bytes = response.raw_output_contents[index]
            parts, offset = [], 0
            while offset + 4 <= len(raw):
                (length,) = _LENGTH.unpack_from(raw, offset)
                parts.append(raw[offset + 4 : offset + 4 + length])
                offset += 4 + length
            return b"".join(parts).decode("utf-8", errors="replace")
        return b"".join(output.contents.bytes_contents).decode("utf-8", errors="replace")
    return ""


def signal_inputs(model_config: dict[str, Any]) -> tuple[InferInput, ...]:
    """``True`` for each of ``SIGNAL_INPUTS`` that ``model_config`` (the JSON form of a
    model's config) declares as an input; none for a model without them."""
    declared = {str(entry.get("name")) for entry in model_config.get("input", [])}
    return tuple(_bool_input(name, True) for name in SIGNAL_INPUTS if name in declared)


def _is_final(response: Any) -> bool:
    params = response.parameters
    return "triton_final_response" in params and bool(params["triton_final_response"].bool_param)


def map_rpc_error(exc: grpc.aio.AioRpcError, address: str) -> UpstreamError:
    """The ``UpstreamError`` a failed call means (the message names no prompt)."""
    code = exc.code()
    detail = f"triton {address}: {code.name if code else 'error'}: {exc.details()}"
    if code is grpc.StatusCode.DEADLINE_EXCEEDED:
        return SampleTimeoutError(detail)
    if code in _UNAVAILABLE:
        return EndpointUnavailableError(detail)
    return UpstreamError(detail)


class TritonSampleStream:
    """One sample's ``ModelStreamInfer`` call; iterate for text chunks. The call starts
    on the first ``__anext__``, once the backend knows which inputs its model declares."""

    __slots__ = ("_backend", "_call", "_done", "_params", "_prompt", "_stream",
                 "_timeout_seconds", "signals")  # fmt: skip

    def __init__(self, backend: TritonBackend, prompt: str, params: SampleParams,
                 timeout_seconds: float, stream: bool) -> None:  # fmt: skip
        self._backend = backend
        self._prompt = prompt
        self._params = params
        self._stream = stream
        self._timeout_seconds = timeout_seconds
        self._done = False
        self._call: Any = None
        self.signals = SampleSignals()

    async def _one_request(self, request: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        # Yield one request, then finish: the stream half-closes and Triton closes it
        # after that request's final response.
        yield request

    def __aiter__(self) -> TritonSampleStream:
        return self

    async def __anext__(self) -> str:
        if self._done:
            raise StopAsyncIteration
        backend = self._backend
        try:
            if self._call is None:
                request = await backend.build_request(self._prompt, self._params, self._stream,
                                                      timeout_seconds=self._timeout_seconds)
                if self._done:  # cancelled while the model config was read
                    raise StopAsyncIteration
                self._call = backend.client.stream_infer(self._one_request(request),
                                                         stream_timeout=self._timeout_seconds)
            result, error = await self._call.__anext__()
        except StopAsyncIteration:
            self._done = True
            raise
        except grpc.aio.AioRpcError as exc:
            self._done = True
            raise map_rpc_error(exc, backend.address) from exc
        except InferenceServerException as exc:
            self._done = True
            raise UpstreamError(f"triton {backend.address}: {exc.message()}") from exc
        if error is not None:
            self._done = True
            detail = f"triton {backend.address}: model error: {error.message()}"
            if _UNLOADED in error.message():  # a draining replica: it takes no new request
                raise EndpointUnavailableError(detail)
            raise UpstreamError(detail)
        response = result.get_response()
        self.signals.add_response(result)
        if _is_final(response):
            self._done = True
        return _text_output(response)

    def cancel(self) -> None:
        """Stop the sample on Triton (no-op once it has ended)."""
        if not self._done:
            self._done = True
            if self._call is not None:
                self._call.cancel()


class TritonBackend:
    """One Triton replica (``host:grpcPort``) serving ``model``."""

    def __init__(self, address: str, model: str) -> None:
        self.address = address
        self.model = model
        self.client = grpcclient.InferenceServerClient(url=address)
        # Constant inputs, built once: a request copies them, so they can be shared.
        self._stream = {flag: _bool_input("stream", flag) for flag in (True, False)}
        self._exclude_input = _bool_input("exclude_input_in_output", True)
        self._signal_inputs: tuple[InferInput, ...] | None = None  # None: config not read

    async def fetch_signal_inputs(self, timeout_seconds: float) -> tuple[InferInput, ...]:
        """The ``return_*`` inputs the model declares (read once; a failed read is
        retried on the next sample)."""
        if self._signal_inputs is None:
            try:
                reply = await self.client.get_model_config(self.model, as_json=True,
                                                           client_timeout=timeout_seconds)
            except InferenceServerException as exc:
                detail = f"triton {self.address}: model config of {self.model}: {exc.message()}"
                status = str(exc.status())
                if status == str(grpc.StatusCode.DEADLINE_EXCEEDED):
                    raise SampleTimeoutError(detail) from exc
                if status in {str(code) for code in _UNAVAILABLE}:
                    raise EndpointUnavailableError(detail) from exc
                raise UpstreamError(detail) from exc
            self._signal_inputs = signal_inputs(reply.get("config", {}))
        return self._signal_inputs

    async def build_request(self, prompt: str, params: SampleParams, stream: bool, *,
                            timeout_seconds: float = 10.0) -> dict[str, Any]:  # fmt: skip
        """The ``stream_infer`` request of one sample."""
        signals = await self.fetch_signal_inputs(timeout_seconds)
        return {
            "model_name": self.model,
            "inputs": [
                _BytesInput("text_input", prompt.encode()),
                self._stream[stream],
                _BytesInput("sampling_parameters", params.to_json()),
                self._exclude_input,
                *signals,
            ],
        }

    def stream_sample(
        self, prompt: str, params: SampleParams, *, timeout_seconds: float, stream: bool = True
    ) -> TritonSampleStream:
        return TritonSampleStream(self, prompt, params, timeout_seconds, stream)

    async def score(self, model: str, text: str, *, timeout_seconds: float) -> float:
        """A verifier model's score of ``text`` (input ``text_input``, output ``score``)."""
        try:
            result = await self.client.infer(
                model,
                [_BytesInput("text_input", text.encode())],
                outputs=[InferRequestedOutput("score")],
                client_timeout=timeout_seconds,
            )
        except InferenceServerException as exc:
            raise UpstreamError(f"verifier {model} on {self.address}: {exc.message()}") from exc
        except grpc.aio.AioRpcError as exc:
            raise map_rpc_error(exc, self.address) from exc
        scores = result.as_numpy("score")
        if scores is None or scores.size == 0:
            raise UpstreamError(f"verifier {model} on {self.address} returned no score")
        return float(scores.reshape(-1)[0])

    async def close(self) -> None:
        await self.client.close()

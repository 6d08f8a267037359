"""The OpenAI-compatible HTTP schemas: chat completions, completions, models, errors.

Role: the outer edge of the router. Requests are parsed strictly from JSON
(``parse_request``): a wrong type or an unknown argument is a 400 naming the field, in
OpenAI's error shape (``error_body``). Standard OpenAI arguments the router does not use
are accepted and ignored, except where ignoring them would change the meaning
(``n``/``best_of`` > 1: the router decides the sample count, ``ponder.max_samples``
caps it). Responses carry OpenAI's fields plus a ``ponder`` object saying what the
request cost and why; a chat answer's chain of thought is ``reasoning_content``
beside ``content``, as OpenAI-compatible servers for reasoning models return it
(``separate_reasoning``; the model's markers are the config's ``chat`` section).
``openapi_schema`` is the OpenAPI 3.1 document of all this (served at
``GET /openapi.json``), stating what the router accepts so that a request valid by it is
answered; ``tests/unit/test_router_fuzz.py`` holds the two to each other. Neighbours:
``executor`` fills the ``PonderReport``; ``app`` maps errors to status codes. Pure: no I/O.

Token counts are approximate: Triton's LLM backends stream text, not token ids, so a
streamed response counts as one token, or as its whitespace-separated pieces when the
server coalesced several tokens into one response; prompt tokens are the prompt's pieces.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
)
from pydantic.json_schema import models_json_schema

from .budgets import Strategy
from .chat import ChatFormat, ChatTemplateError, split_reasoning
from .errors import PolicyError

_JSON = "application/json"
MAX_TOKENS_LIMIT = 1_048_576
"""Larger token requests are refused as absurd (tiers cap far below anyway)."""
_PIECE = re.compile(r"\S+")
_TEXT_CHAR = r"[^\s\x1c-\x1f\x85\ufeff]"
"""A character that is not blank to Python (``str.isspace``) nor to JSON Schema's regex
dialect (ECMA-262, whose whitespace lacks U+001C-U+001F and U+0085 but has U+FEFF): a
message "has text" when it holds one, by the same rule in ``/openapi.json`` and here."""


class RequestError(PolicyError):
    """A client's request is invalid; ``param`` names the field, ``status`` the HTTP code,
    ``code`` the metric ``reason`` (an oversized one counts as a rejection)."""

    reason = "invalid-request"

    def __init__(
        self, message: str, *, param: str | None = None, code: str | None = None,
        status: int = 400, error_type: str = "invalid_request_error",
    ) -> None:  # fmt: skip
        super().__init__(message)
        self.param = param
        self.code = code
        self.status = status
        self.error_type = error_type
        self.reason = code or self.reason
        self.counts_as_rejection = status == 413 or code == "context_length_exceeded"


def error_body(
    message: str, error_type: str, param: str | None = None, code: str | None = None
) -> dict[str, Any]:
    """OpenAI's error JSON: ``{"error": {"message", "type", "param", "code"}}``."""
    return {"error": {"message": message, "type": error_type, "param": param, "code": code}}


def count_tokens(text: str) -> int:
    """Approximate token count of ``text`` (see the module docstring)."""
    return len(_PIECE.findall(text))


def chunk_tokens(chunk: str) -> int:
    """Tokens in one streamed response: at least one, or its pieces when coalesced."""
    if not chunk:
        return 0
    pieces = len(_PIECE.findall(chunk))
    return pieces if pieces > 1 else 1


# -- requests -----------------------------------------------------------------------------

_REQUEST = ConfigDict(extra="forbid", strict=True, frozen=True, allow_inf_nan=False)
Effort = Literal["low", "medium", "high", "auto"]


def _integral(value: object) -> object:
    """JSON has one number type: ``2.0`` is the integer 2 (as JSON Schema says), ``2.5`` not."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


_WHOLE = BeforeValidator(_integral)
"""On an integer argument, after its bounds (so the bounds reach the JSON schema): a client
that serialises the integer as ``2.0`` (Python's ``json`` does for a float) is served."""
TokenCount = Annotated[int, Field(ge=1, le=MAX_TOKENS_LIMIT), _WHOLE]


class PonderOptions(BaseModel):
    """The ``ponder`` extension: hints and caps on the compute a request may spend."""

    model_config = _REQUEST

    difficulty: float | None = Field(default=None, ge=0.0, le=1.0,
                                     description="the client's own difficulty estimate")
    max_samples: Annotated[int, Field(ge=1, le=256), _WHOLE] | None = None
    strategy: Strategy | None = None


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True, frozen=True)

    include_usage: bool = False


class TextPart(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True, frozen=True)

    type: Literal["text"]
    text: str


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True, frozen=True)

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[TextPart] | None = None
    name: str | None = None

    @property
    def text(self) -> str:
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content)


class _CommonRequest(BaseModel):
    """Arguments shared by chat completions and completions."""

    model_config = _REQUEST

    model: str = Field(min_length=1, max_length=256)
    max_tokens: TokenCount | None = None
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    seed: Annotated[int, Field(ge=0, le=2**31 - 1), _WHOLE] | None = None
    stop: str | list[str] | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    user: str | None = Field(default=None, max_length=256)
    reasoning_effort: Effort = "auto"
    ponder: PonderOptions | None = None
    n: Annotated[int, Field(ge=1, le=128), _WHOLE] | None = None
    # Standard OpenAI arguments accepted and ignored (they do not change the answer).
    logprobs: Any = None
    top_logprobs: Any = None
    presence_penalty: Any = None
    frequency_penalty: Any = None
    logit_bias: Any = None
    metadata: Any = None
    store: Any = None
    service_tier: Any = None
    prompt_cache_key: Any = None
    safety_identifier: Any = None

    @field_validator("stop")
    @classmethod
    def _at_most_four_stops(cls, value: str | list[str] | None) -> str | list[str] | None:
        if isinstance(value, list) and len(value) > 4:
            raise ValueError("at most 4 stop sequences")
        return value

    @property
    def stop_list(self) -> list[str]:
        if self.stop is None:
            return []
        return [self.stop] if isinstance(self.stop, str) else list(self.stop)

    @property
    def include_usage(self) -> bool:
        return self.stream_options is not None and self.stream_options.include_usage


class ChatCompletionRequest(_CommonRequest):
    """``POST /v1/chat/completions``."""

    messages: list[ChatMessage] = Field(min_length=1, max_length=4096)
    max_completion_tokens: TokenCount | None = None
    response_format: Any = None
    tools: Any = None
    tool_choice: Any = None
    parallel_tool_calls: Any = None
    functions: Any = None
    function_call: Any = None
    modalities: Any = None
    prediction: Any = None
    audio: Any = None
    web_search_options: Any = None
    verbosity: Any = None

    @property
    def token_limit(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens


class CompletionRequest(_CommonRequest):
    """``POST /v1/completions`` (legacy): one prompt string."""

    prompt: str | list[str]
    best_of: Annotated[int, Field(ge=1, le=128), _WHOLE] | None = None
    echo: bool = False
    suffix: Any = None

    @property
    def token_limit(self) -> int | None:
        return self.max_tokens

    @property
    def prompt_text(self) -> str:
        return self.prompt if isinstance(self.prompt, str) else self.prompt[0]


AnyRequest = ChatCompletionRequest | CompletionRequest


def check_content_type(content_type: str | None) -> None:
    """Refuse (415) a body not declared JSON: OpenAI's clients always declare it, and a web
    page can post ``text/plain`` or an undeclared body across origins without asking."""
    media_type = (content_type or "").split(";", 1)[0].strip().lower()
    if media_type != _JSON:
        got = f"got {content_type!r}" if content_type else "the request has none"
        raise RequestError(f"Content-Type must be {_JSON}; {got}", status=415,
                           code="unsupported_media_type")  # fmt: skip


def parse_request(body: bytes, kind: type[AnyRequest]) -> AnyRequest:
    """Validate a JSON body; every fault is a ``RequestError`` naming the field."""
    try:
        request = kind.model_validate_json(body)
    except ValidationError as exc:
        raise _request_error(exc) from exc
    if request.n not in (None, 1):
        raise RequestError(
            "n > 1 is not supported: the router decides how many samples to draw; "
            "cap them with ponder.max_samples", param="n", code="unsupported_value",
        )  # fmt: skip
    if isinstance(request, CompletionRequest):
        if isinstance(request.prompt, list) and len(request.prompt) != 1:
            raise RequestError("prompt must be one string", param="prompt")
        if request.best_of not in (None, 1):
            raise RequestError("best_of > 1 is not supported: use ponder.max_samples "
                               "with ponder.strategy best-of-n", param="best_of")
        if request.echo:
            raise RequestError("echo is not supported", param="echo")
    elif not any(_is_user_text(m) for m in request.messages):
        raise RequestError("messages must hold a user message with text", param="messages")
    return request


def _request_error(exc: ValidationError) -> RequestError:
    error = exc.errors(include_url=False)[0]
    if error["type"] == "json_invalid":
        return RequestError(f"request body is not valid JSON: {error['msg']}", code="invalid_json")
    if error["type"] == "model_type":
        return RequestError("request body must be a JSON object", code="invalid_json")
    param = ".".join(str(part) for part in error["loc"] if not _is_union_tag(part))
    if error["type"] == "extra_forbidden":
        return RequestError(f"Unrecognized request argument supplied: {param}", param=param,
                            code="unknown_parameter")  # fmt: skip
    if error["type"] == "missing":
        return RequestError(f"Missing required parameter: {param}", param=param,
                            code="missing_required_parameter")  # fmt: skip
    return RequestError(f"Invalid value for {param}: {error['msg']}", param=param,
                        code="invalid_value")  # fmt: skip


def _is_union_tag(part: object) -> bool:
    """Pydantic names the union member it tried (``str``, ``list[TextPart]``) in ``loc``."""
    return isinstance(part, str) and ("[" in part or part in {"str", "int", "float", "bool"})


def render_prompt(messages: list[ChatMessage], chat: ChatFormat) -> str:
    """The ``text_input`` for Triton's LLM backends, which take one string: the messages
    in the model's chat template; 400 naming ``messages`` when the template refuses them."""
    turns = [{"role": m.role, "content": m.text} for m in messages]
    try:
        return chat.render(turns)
    except ChatTemplateError as exc:
        raise RequestError(str(exc), param="messages", code="invalid_value") from exc


def problem_text(messages: list[ChatMessage]) -> str:
    """What the difficulty estimator reads: the last user message."""
    return next(m.text for m in reversed(messages) if _is_user_text(m))


def _is_user_text(message: ChatMessage) -> bool:
    return message.role == "user" and re.search(_TEXT_CHAR, message.text) is not None


# -- responses ----------------------------------------------------------------------------

_RESPONSE = ConfigDict(frozen=True)


class CompletionTokensDetails(BaseModel):
    model_config = _RESPONSE

    reasoning_tokens: int = 0


class Usage(BaseModel):
    """Tokens: ``completion_tokens`` counts every sample (what the request cost);
    ``reasoning_tokens`` those not in the answer: the thinking of the sample returned
    (between its markers, returned or not) plus every token of the samples not returned."""

    model_config = _RESPONSE

    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    completion_tokens_details: CompletionTokensDetails


class BudgetReport(BaseModel):
    model_config = _RESPONSE

    max_tokens_per_sample: int
    max_samples: int
    shrunk: bool = False
    shrink_reason: str | None = None


class SampleCounts(BaseModel):
    model_config = _RESPONSE

    launched: int = 0
    completed: int = 0
    cancelled: int = 0
    failed: int = 0
    truncated: int = 0  # completed, but cut off at max_tokens (finish_reason length): no vote
    forced: int = 0  # cut off at max_tokens, then answered at the cue (budget forcing): a vote
    probed: int = 0  # stopped once its probes agreed (probe exits): votes with the probed answer
    low_confidence: int = 0  # cancelled while running for low confidence: no vote


class VoteCount(BaseModel):
    model_config = _RESPONSE

    answer: str
    votes: int


class PonderReport(BaseModel):
    """What a request cost and why: the ``ponder`` object of every response."""

    model_config = _RESPONSE

    difficulty: float
    difficulty_source: Literal["estimate", "hint"]
    tier: str
    strategy: str
    budget: BudgetReport
    samples: SampleCounts
    tokens_used: int
    stopped_early: bool
    stop_reason: str
    votes: list[VoteCount] = Field(default_factory=list)
    abstentions: int = 0
    answer: str | None = None
    aggregation: str
    answered_by: str
    escalated_from: str | None = None


class AssistantMessage(BaseModel):
    model_config = _RESPONSE

    role: Literal["assistant"] = "assistant"
    content: str
    reasoning_content: str | None = None


class ChatChoice(BaseModel):
    model_config = _RESPONSE

    index: int = 0
    message: AssistantMessage
    finish_reason: Literal["stop", "length"]
    logprobs: None = None


class ChatCompletion(BaseModel):
    model_config = _RESPONSE

    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[ChatChoice]
    usage: Usage
    ponder: PonderReport


class CompletionChoice(BaseModel):
    model_config = _RESPONSE

    index: int = 0
    text: str
    finish_reason: Literal["stop", "length"]
    logprobs: None = None


class Completion(BaseModel):
    model_config = _RESPONSE

    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: Usage
    ponder: PonderReport


class ModelCard(BaseModel):
    model_config = _RESPONSE

    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str


class ModelList(BaseModel):
    model_config = _RESPONSE

    object: Literal["list"] = "list"
    data: list[ModelCard]


# -- rendering ----------------------------------------------------------------------------

FinishReason = Literal["stop", "length"]


@dataclass(frozen=True, slots=True)
class RequestResult:
    """A finished request, before it is rendered as a completion or a stream's end."""

    text: str
    finish_reason: FinishReason
    prompt_tokens: int
    completion_tokens: int
    reasoning_tokens: int
    report: PonderReport
    reasoning: str | None = None
    """The chain of thought, once separated from ``text`` (``separate_reasoning``)."""

    @property
    def usage(self) -> Usage:
        return Usage(
            prompt_tokens=self.prompt_tokens, completion_tokens=self.completion_tokens,
            total_tokens=self.prompt_tokens + self.completion_tokens,
            completion_tokens_details=CompletionTokensDetails(
                reasoning_tokens=self.reasoning_tokens),
        )  # fmt: skip


def separate_reasoning(result: RequestResult, chat: ChatFormat, prompt: str) -> RequestResult:
    """``result`` with its chain of thought taken out of its text (``chat.split_reasoning``)
    and counted in ``reasoning_tokens``; kept as ``reasoning`` unless the service returns
    none. The thinking's tokens are its pieces, at most the returned sample's tokens."""
    delimiters = chat.delimiters
    if delimiters is None:
        return result
    reasoning, answer = split_reasoning(result.text, delimiters,
                                        opened=chat.opens_thinking(prompt))  # fmt: skip
    returned_tokens = result.completion_tokens - result.reasoning_tokens
    thinking_tokens = min(count_tokens(reasoning), returned_tokens)
    return replace(result, text=answer, reasoning_tokens=result.reasoning_tokens + thinking_tokens,
                   reasoning=reasoning if reasoning and chat.return_reasoning else None)


def completion_body(chat: bool, request_id: str, created: int, model: str,
                    result: RequestResult) -> bytes:  # fmt: skip
    """The JSON of a non-streamed chat completion (``chat``) or completion."""
    if chat:
        message = AssistantMessage(content=result.text, reasoning_content=result.reasoning)
        choice = ChatChoice(message=message, finish_reason=result.finish_reason)
        body: BaseModel = ChatCompletion(id=request_id, created=created, model=model,
                                         choices=[choice], usage=result.usage,
                                         ponder=result.report)  # fmt: skip
    else:
        body = Completion(
            id=request_id, created=created, model=model,
            choices=[CompletionChoice(text=result.text, finish_reason=result.finish_reason)],
            usage=result.usage, ponder=result.report,
        )  # fmt: skip
    return body.model_dump_json().encode()


def stream_chunk(
    chat: bool, request_id: str, created: int, model: str, content: str | None = None, *,
    role: bool = False, finish_reason: FinishReason | None = None,
    ponder: dict[str, Any] | None = None, reasoning: str | None = None,
) -> dict[str, Any]:  # fmt: skip
    """One SSE chunk: ``chat.completion.chunk`` (delta) or ``text_completion`` (text)."""
    if chat:
        delta: dict[str, Any] = {"role": "assistant"} if role else {}
        if reasoning is not None:
            delta["reasoning_content"] = reasoning
        if content is not None:
            delta["content"] = content
        choice = {"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}
        kind = "chat.completion.chunk"
    else:
        choice = {"index": 0, "text": content or "", "finish_reason": finish_reason,
                  "logprobs": None}  # fmt: skip
        kind = "text_completion"
    body = {"id": request_id, "object": kind, "created": created, "model": model,
            "choices": [choice]}  # fmt: skip
    if ponder is not None:
        body["ponder"] = ponder
    return body


def content_event(chat: bool, request_id: str, created: int, model: str, *,
                  reasoning: bool = False) -> Callable[[str], str]:  # fmt: skip
    """A fast renderer of the SSE event carrying one piece of text (the hot path of a
    stream), answer or (``reasoning``) thinking: the chunk's JSON is rendered once around
    a placeholder."""
    marker = "\u0000ponder\u0000"
    chunk = (stream_chunk(chat, request_id, created, model, reasoning=marker) if reasoning
             else stream_chunk(chat, request_id, created, model, marker))  # fmt: skip
    rendered = sse(chunk)
    prefix, suffix = rendered.split(json.dumps(marker), 1)
    return lambda text: prefix + json.dumps(text) + suffix


def usage_chunk(chat: bool, request_id: str, created: int, model: str,
                result: RequestResult) -> dict[str, Any]:  # fmt: skip
    """The last chunk when ``stream_options.include_usage``: no choices, the usage."""
    kind = "chat.completion.chunk" if chat else "text_completion"
    return {"id": request_id, "object": kind, "created": created, "model": model,
            "choices": [], "usage": result.usage.model_dump()}  # fmt: skip


def sse(body: dict[str, Any]) -> str:
    """One server-sent event carrying ``body`` as JSON."""
    return "data: " + json.dumps(body, separators=(",", ":")) + "\n\n"


# -- the OpenAPI document -----------------------------------------------------------------


class ErrorDetail(BaseModel):
    model_config = _RESPONSE

    message: str = Field(description="what is wrong, for a person to act on")
    type: str
    param: str | None = Field(description="the request field at fault, dotted")
    code: str | None


class ErrorResponse(BaseModel):
    """OpenAI's error shape, the body of every error response (``error_body``)."""

    model_config = _RESPONSE

    error: ErrorDetail


ERROR_STATUSES: dict[int, str] = {
    400: "the request is invalid (the message names the field)",
    401: "an API key is required",
    403: "the API key is not accepted",
    404: "the model does not exist",
    408: "the request body did not arrive before the request deadline",
    413: "the request body is too large",
    415: "the request body is not declared Content-Type: application/json",
    429: "too many requests; retry after Retry-After seconds",
    502: "the inference server failed",
    503: "no inference server became available in time; retry after Retry-After seconds",
    504: "the request deadline passed before any sample finished",
}
"""Every error status the completion endpoints answer, and what it means."""

_SSE_EVENT: dict[str, Any] = {
    "type": "object", "required": ["data"],
    "properties": {"data": {"type": "string", "description": "a JSON chunk, or [DONE]"}},
}  # fmt: skip
_USER_TEXT = {"type": "string", "pattern": _TEXT_CHAR}


def openapi_schema(model_name: str) -> dict[str, Any]:
    """The router's OpenAPI 3.1 document, built from the request and response models.

    It documents what the router accepts, not only the types: ``model`` is the served
    model, ``n``/``best_of`` are 1, ``echo`` is false, a completion has one prompt, and a
    chat holds a user message with text, so a request valid by this schema is answered 200.
    """
    refs, defs = models_json_schema(
        [(ChatCompletionRequest, "validation"), (CompletionRequest, "validation"),
         (ChatCompletion, "serialization"), (Completion, "serialization"),
         (ModelList, "serialization"), (ErrorResponse, "serialization")],
        ref_template="#/components/schemas/{model}",
    )  # fmt: skip
    schemas: dict[str, Any] = defs["$defs"]

    def strings(most: int, least: int = 0) -> dict[str, Any]:
        return {"type": "array", "items": {"type": "string"}, "minItems": least, "maxItems": most}

    def only_one() -> dict[str, Any]:
        return {"anyOf": [{"const": 1}, {"type": "null"}], "default": None}

    for name in ("ChatCompletionRequest", "CompletionRequest"):
        properties = schemas[name]["properties"]
        properties["model"] = {"type": "string", "enum": [model_name],
                               "description": "the model this service serves"}  # fmt: skip
        properties["n"] = only_one()
        properties["stop"] = {"anyOf": [{"type": "string"}, strings(4), {"type": "null"}],
                              "default": None}  # fmt: skip
    completion = schemas["CompletionRequest"]["properties"]
    completion["best_of"] = only_one()
    completion["echo"] = {"const": False, "default": False}
    completion["prompt"] = {"anyOf": [{"type": "string"}, strings(1, least=1)]}
    text_part = {"type": "object", "required": ["type", "text"],
                 "properties": {"type": {"const": "text"}, "text": _USER_TEXT}}  # fmt: skip
    user_text = {"anyOf": [_USER_TEXT, {"type": "array", "contains": text_part}]}
    schemas["ChatCompletionRequest"]["properties"]["messages"]["contains"] = {
        "type": "object", "required": ["role", "content"],
        "properties": {"role": {"const": "user"}, "content": user_text},
    }  # fmt: skip

    def operation(summary: str, request: str, response: str) -> dict[str, Any]:
        error = {_JSON: {"schema": refs[ErrorResponse, "serialization"]}}
        errors = {str(status): {"description": meaning, "content": error}
                  for status, meaning in ERROR_STATUSES.items()}  # fmt: skip
        return {
            "summary": summary,
            "requestBody": {"required": True, "content": {_JSON: {"schema": {
                "$ref": f"#/components/schemas/{request}"}}}},
            "responses": {
                "200": {"description": "the answer, or its server-sent events when stream is true",
                        "content": {_JSON: {"schema": {"$ref": f"#/components/schemas/{response}"}},
                                    "text/event-stream": {"schema": _SSE_EVENT}}},
                **errors,
            },
        }  # fmt: skip

    models = {"description": "the served model",
              "content": {_JSON: {"schema": refs[ModelList, "serialization"]}}}  # fmt: skip
    return {
        "openapi": "3.1.0",
        "info": {"title": "Ponder router", "version": "1",
                 "description": "OpenAI-compatible completions with a ponder report."},
        "paths": {
            "/v1/chat/completions": {"post": operation(
                "Create a chat completion", "ChatCompletionRequest", "ChatCompletion")},
            "/v1/completions": {"post": operation(
                "Create a completion (legacy)", "CompletionRequest", "Completion")},
            "/v1/models": {"get": {"summary": "List the served model",
                                   "responses": {"200": models}}},
        },
        "components": {
            "schemas": schemas,
            "securitySchemes": {"apiKey": {"type": "http", "scheme": "bearer",
                                           "description": "required when a key file is set"}},
        },
        "security": [{}, {"apiKey": []}],
    }  # fmt: skip

"""The OpenAI-compatible schemas: what is accepted, what is refused and how it is named."""

from __future__ import annotations

import json
from typing import Any

import pytest

from ponder_router.api import (
    ChatCompletionRequest,
    ChatMessage,
    CompletionRequest,
    RequestError,
    check_content_type,
    chunk_tokens,
    count_tokens,
    openapi_schema,
    parse_request,
    problem_text,
    render_prompt,
    stream_chunk,
)
from ponder_router.budgets import Strategy
from ponder_router.chat import ChatFormat, ChatPreset

USER = [{"role": "user", "content": "What is 1+1?"}]


def chat(**fields: Any) -> bytes:
    return json.dumps({"model": "m", "messages": USER, **fields}).encode()


def test_a_minimal_chat_request_gets_the_defaults() -> None:
    request = parse_request(chat(), ChatCompletionRequest)
    assert isinstance(request, ChatCompletionRequest)
    assert request.reasoning_effort == "auto"
    assert request.stream is False
    assert request.token_limit is None
    assert request.ponder is None


def test_the_ponder_extension_and_openai_arguments_are_read() -> None:
    body = chat(max_completion_tokens=100, temperature=0.5, top_p=0.9, seed=3, stop=["x"],
                reasoning_effort="high", user="u1",
                ponder={"difficulty": 0.3, "max_samples": 4, "strategy": "best-of-n"})
    request = parse_request(body, ChatCompletionRequest)
    assert request.token_limit == 100
    assert request.stop_list == ["x"]
    assert request.ponder is not None
    assert request.ponder.strategy is Strategy.BEST_OF_N
    assert request.ponder.max_samples == 4


@pytest.mark.parametrize(
    "fields",
    [{"n": 1}, {"logprobs": False}, {"presence_penalty": 0.1}, {"tools": []},
     {"response_format": {"type": "text"}}, {"stream_options": {"include_usage": True}},
     {"max_tokens": 5}, {"metadata": {"a": "b"}}],
)  # fmt: skip
def test_standard_openai_arguments_the_router_does_not_use_are_ignored(
    fields: dict[str, Any],
) -> None:
    parse_request(chat(**fields), ChatCompletionRequest)


@pytest.mark.parametrize(
    ("body", "param", "fragment"),
    [
        (b"{not json", None, "not valid JSON"),
        (b"[1, 2]", None, "JSON object"),
        (chat(n=3), "n", "ponder.max_samples"),
        (chat(temperature="hot"), "temperature", "Invalid value"),
        (chat(temperature=5), "temperature", "Invalid value"),
        (chat(max_completion_tokens=-1), "max_completion_tokens", "Invalid value"),
        (chat(max_completion_tokens=10**12), "max_completion_tokens", "Invalid value"),
        (chat(max_tokens="100"), "max_tokens", "Invalid value"),
        (chat(stream="yes"), "stream", "Invalid value"),
        (chat(reasoning_effort="extreme"), "reasoning_effort", "Invalid value"),
        (chat(ponder={"max_samples": 0}), "ponder.max_samples", "Invalid value"),
        (chat(ponder={"max_samples": 100000}), "ponder.max_samples", "Invalid value"),
        (chat(ponder={"difficulty": 2}), "ponder.difficulty", "Invalid value"),
        (chat(ponder={"strategy": "magic"}), "ponder.strategy", "Invalid value"),
        (chat(ponder={"colour": "red"}), "ponder.colour", "Unrecognized"),
        (chat(frobnicate=True), "frobnicate", "Unrecognized request argument"),
        (chat(stop=["a", "b", "c", "d", "e"]), "stop", "at most 4"),
        (chat(messages=[]), "messages", "Invalid value"),
        (chat(messages=[{"role": "robot", "content": "hi"}]), "messages.0.role", "Invalid"),
        (chat(messages=[{"role": "system", "content": "hi"}]), "messages", "user message"),
        (json.dumps({"messages": USER}).encode(), "model", "Missing required parameter"),
    ],
)  # fmt: skip
def test_a_bad_chat_request_is_refused_naming_the_field(
    body: bytes, param: str | None, fragment: str
) -> None:
    with pytest.raises(RequestError) as caught:
        parse_request(body, ChatCompletionRequest)
    assert caught.value.param == param
    assert fragment in str(caught.value)
    assert caught.value.status == 400


@pytest.mark.parametrize(
    ("fields", "param"),
    [({"prompt": ["a", "b"]}, "prompt"), ({"prompt": "a", "best_of": 3}, "best_of"),
     ({"prompt": "a", "echo": True}, "echo"), ({"prompt": 7}, "prompt")],
)  # fmt: skip
def test_a_bad_completion_request_is_refused_naming_the_field(
    fields: dict[str, Any], param: str
) -> None:
    with pytest.raises(RequestError) as caught:
        parse_request(json.dumps({"model": "m", **fields}).encode(), CompletionRequest)
    assert caught.value.param == param


def test_a_completion_prompt_may_be_a_list_of_one() -> None:
    request = parse_request(json.dumps({"model": "m", "prompt": ["x"]}).encode(),
                            CompletionRequest)  # fmt: skip
    assert isinstance(request, CompletionRequest)
    assert request.prompt_text == "x"


def test_text_parts_are_joined_and_the_last_user_message_is_the_problem() -> None:
    messages = [
        ChatMessage(role="system", content="Be brief."),
        ChatMessage(role="user", content=[{"type": "text", "text": "Solve "},  # type: ignore[list-item]
                                          {"type": "text", "text": "x+1=2."}]),
    ]  # fmt: skip
    assert problem_text(messages) == "Solve x+1=2."
    assert render_prompt(messages, ChatFormat()).endswith("assistant:")
    assert "<|im_start|>user\nSolve x+1=2.<|im_end|>" in render_prompt(
        messages, ChatFormat(preset=ChatPreset.CHATML))


def test_a_lone_user_message_is_the_prompt_as_is() -> None:
    assert render_prompt([ChatMessage(role="user", content="Hi")], ChatFormat()) == "Hi"


@pytest.mark.parametrize(
    ("chunk", "tokens"), [("", 0), ("word ", 1), ("\\boxed{4}.", 1), ("three words here", 3)]
)
def test_a_streamed_response_counts_as_one_token_or_its_pieces(chunk: str, tokens: int) -> None:
    assert chunk_tokens(chunk) == tokens
    assert count_tokens("a b  c") == 3


def test_stream_chunks_have_the_openai_shape() -> None:
    chat_chunk = stream_chunk(True, "id", 1, "m", "hi", role=True)
    assert chat_chunk["object"] == "chat.completion.chunk"
    assert chat_chunk["choices"][0]["delta"] == {"role": "assistant", "content": "hi"}
    text_chunk = stream_chunk(False, "id", 1, "m", "hi", finish_reason="stop")
    assert text_chunk["choices"][0]["text"] == "hi"
    assert text_chunk["choices"][0]["finish_reason"] == "stop"


# -- found by fuzzing (tests/unit/test_router_fuzz.py) ---------------------------------------


@pytest.mark.parametrize(
    ("fields", "attribute", "value"),
    [({"seed": 7.0}, "seed", 7), ({"max_tokens": 1e3}, "token_limit", 1000),
     ({"max_completion_tokens": 64.0}, "token_limit", 64), ({"n": 1.0}, "n", 1)],
)  # fmt: skip
def test_an_integer_argument_sent_as_a_whole_float_is_the_integer(
    fields: dict[str, Any], attribute: str, value: int
) -> None:
    request = parse_request(chat(**fields), ChatCompletionRequest)
    assert getattr(request, attribute) == value
    assert type(getattr(request, attribute)) is int


@pytest.mark.parametrize(
    ("literal", "param", "fragment"),
    [(b"2.5", "seed", "valid integer"), (b'"7"', "seed", "valid integer"),
     (b"1e400", "seed", "valid integer"), (b"NaN", "temperature", "finite number"),
     (b"Infinity", "top_p", "finite number"), (b"-Infinity", "temperature", "finite number"),
     (b"99999999999999999999999999", "seed", "less than or equal")],
)  # fmt: skip
def test_a_number_that_is_not_one_the_field_takes_is_refused_naming_it(
    literal: bytes, param: str, fragment: str
) -> None:
    body = b'{"model": "m", "messages": [{"role": "user", "content": "x"}], "%s": %s}' % (
        param.encode(), literal)  # fmt: skip
    with pytest.raises(RequestError) as caught:
        parse_request(body, ChatCompletionRequest)
    assert caught.value.param == param
    assert fragment in str(caught.value)


@pytest.mark.parametrize("blank", ["\x1f", "\x1c \x85", "\ufeff", "\u3000\t"])
def test_a_user_message_of_only_blank_characters_has_no_text(blank: str) -> None:
    with pytest.raises(RequestError, match="user message with text"):
        parse_request(chat(messages=[{"role": "user", "content": blank}]), ChatCompletionRequest)


@pytest.mark.parametrize(
    ("body", "fragment"),
    [(b"[" * 100_000, "recursion limit"), (b'{"model": "m\xff"}', "not valid JSON"),
     (b"", "not valid JSON"), (b"null", "JSON object"), (b'"hello"', "JSON object")],
)  # fmt: skip
def test_a_body_that_is_no_json_object_is_refused_without_crashing(
    body: bytes, fragment: str
) -> None:
    with pytest.raises(RequestError) as caught:
        parse_request(body, ChatCompletionRequest)
    assert fragment in str(caught.value)
    assert caught.value.status == 400


@pytest.mark.parametrize(
    "content_type", ["application/json", "application/json; charset=utf-8", "Application/JSON"]
)
def test_a_body_declared_json_is_read(content_type: str) -> None:
    check_content_type(content_type)


@pytest.mark.parametrize(
    ("content_type", "fragment"),
    [(None, "has none"), ("text/plain", "'text/plain'"),
     ("application/x-www-form-urlencoded", "form-urlencoded")],
)  # fmt: skip
def test_a_body_not_declared_json_is_refused_with_415_naming_the_header(
    content_type: str | None, fragment: str
) -> None:
    with pytest.raises(RequestError) as caught:
        check_content_type(content_type)
    assert caught.value.status == 415
    assert "Content-Type must be application/json" in str(caught.value)
    assert fragment in str(caught.value)


def test_every_bound_in_the_openapi_schema_is_a_json_schema_keyword() -> None:
    text = json.dumps(openapi_schema("m"))
    assert '"ge"' not in text
    assert '"le"' not in text
    tokens = openapi_schema("m")["components"]["schemas"]["ChatCompletionRequest"]["properties"]
    assert tokens["max_tokens"]["anyOf"][0] == {"type": "integer", "minimum": 1,
                                                "maximum": 1_048_576}  # fmt: skip


def test_the_openapi_schema_names_the_served_model_and_only_it() -> None:
    schemas = openapi_schema("qwen-7b")["components"]["schemas"]
    for name in ("ChatCompletionRequest", "CompletionRequest"):
        assert schemas[name]["properties"]["model"]["enum"] == ["qwen-7b"]

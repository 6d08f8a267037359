"""Each model's own chat format: presets, templates in a sandbox, reasoning separated.

The presets are held to golden strings of their model families' published formats; the
end-to-end checks go through httpx's ASGI transport into ``create_app`` (the real
``openai`` client among them) with a scripted Triton that thinks in ``<think>`` tags.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import openai
import pytest
from pydantic import ValidationError

from ponder_operator.api.spec import ReasoningServiceSpec, parse_spec
from ponder_operator.errors import SpecError
from ponder_operator.render import Owner, render_router_config
from ponder_router.app import create_app
from ponder_router.chat import (
    MAX_TEMPLATE_CHARS,
    THINK_TAGS,
    ChatFormat,
    ChatPreset,
    ChatTemplateError,
    ReasoningSplitter,
    split_reasoning,
)
from ponder_router.settings import RouterConfig
from ponder_router.triton import SampleParams
from test_router_fakes import FakeBackend, FakeFleet, FakeStream, Record, Script, constant

CHAT = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "What is 6*7?"},
    {"role": "assistant", "content": "<think>6*7</think>42"},
    {"role": "user", "content": "And 6*8?"},
]
GOLDEN = {
    ChatPreset.PLAIN: "system: Be brief.\n\nuser: What is 6*7?\n\n"
                      "assistant: <think>6*7</think>42\n\nuser: And 6*8?\n\nassistant:",
    ChatPreset.CHATML: "<|im_start|>system\nBe brief.<|im_end|>\n"
                       "<|im_start|>user\nWhat is 6*7?<|im_end|>\n"
                       "<|im_start|>assistant\n<think>6*7</think>42<|im_end|>\n"
                       "<|im_start|>user\nAnd 6*8?<|im_end|>\n<|im_start|>assistant\n",
    ChatPreset.LLAMA3: "<|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>"
                       "<|start_header_id|>user<|end_header_id|>\n\nWhat is 6*7?<|eot_id|>"
                       "<|start_header_id|>assistant<|end_header_id|>\n\n"
                       "<think>6*7</think>42<|eot_id|>"
                       "<|start_header_id|>user<|end_header_id|>\n\nAnd 6*8?<|eot_id|>"
                       "<|start_header_id|>assistant<|end_header_id|>\n\n",
    ChatPreset.DEEPSEEK_R1: "Be brief.<\uff5cUser\uff5c>What is 6*7?<\uff5cAssistant\uff5c>42"
                            "<\uff5cend\u2581of\u2581sentence\uff5c><\uff5cUser\uff5c>And 6*8?"
                            "<\uff5cAssistant\uff5c><think>\n",
    ChatPreset.GEMMA: "<start_of_turn>user\nBe brief.\n\nWhat is 6*7?<end_of_turn>\n"
                      "<start_of_turn>model\n<think>6*7</think>42<end_of_turn>\n"
                      "<start_of_turn>user\nAnd 6*8?<end_of_turn>\n<start_of_turn>model\n",
    ChatPreset.QWEN3: "<|im_start|>system\nBe brief.<|im_end|>\n"
                      "<|im_start|>user\nWhat is 6*7?<|im_end|>\n"
                      "<|im_start|>assistant\n42<|im_end|>\n"
                      "<|im_start|>user\nAnd 6*8?<|im_end|>\n<|im_start|>assistant\n",
}  # fmt: skip


# -- rendering ------------------------------------------------------------------------------


@pytest.mark.parametrize("preset", list(ChatPreset))
def test_each_preset_renders_its_model_familys_format(preset: ChatPreset) -> None:
    assert ChatFormat(preset=preset).render(CHAT) == GOLDEN[preset]


def test_a_template_from_a_tokenizer_config_renders_with_its_tokens() -> None:
    template = ("{{ bos_token }}{% for m in messages %}[{{ m.role }}] {{ m.content }}"
                "{{ eos_token }}{% endfor %}{% if add_generation_prompt %}[assistant]{% endif %}")
    chat = ChatFormat(template=template, bos_token="<s>", eos_token="</s>")

    assert chat.render(CHAT[1:2]) == "<s>[user] What is 6*7?</s>[assistant]"


def test_a_template_that_raises_refuses_the_messages() -> None:
    with pytest.raises(ChatTemplateError, match="roles must alternate"):
        ChatFormat(preset=ChatPreset.GEMMA).render([CHAT[1], CHAT[1]])


@pytest.mark.parametrize("template", [
    "{{ ''.__class__.__mro__ }}",
    "{{ messages.__class__ }}",
    "{{ messages['__class__'] }}",
    "{{ cycler.__init__.__globals__ }}",
    "{{ messages[0]._private }}",
])  # fmt: skip
def test_a_template_reaching_for_private_attributes_is_refused_when_compiled(
    template: str,
) -> None:
    with pytest.raises(ValidationError, match="private attribute"):
        ChatFormat(template=template)


@pytest.mark.parametrize("template", [
    "{% set name = '__cla' + 'ss__' %}{{ messages[name] }}",
    "{{ '{0.__class__}'.format(messages) }}",
    "{{ messages.append(1) }}",
    "{{ messages[0].update({'role': 'system'}) }}",
])  # fmt: skip
def test_the_sandbox_refuses_escapes_and_mutation_at_render_time(template: str) -> None:
    chat = ChatFormat(template=template)

    with pytest.raises(ChatTemplateError, match="unsafe"):
        chat.render(CHAT[1:2])


@pytest.mark.parametrize(("fields", "message"), [
    ({"template": "{% for m in messages %}"}, "does not compile"),
    ({"template": "{{ x"}, "does not compile"),
    ({"template": "x" * (MAX_TEMPLATE_CHARS + 1)}, "at most 65536 characters"),
    ({"preset": "chatml", "template": "{{ x }}"}, "at most one of preset and template"),
    ({"preset": "vicuna"}, "plain"),
    ({"thinking": {"start": "", "end": "</think>"}}, "at least 1 character"),
])  # fmt: skip
def test_a_bad_chat_format_is_refused_by_the_router_config_naming_the_field(
    fields: dict[str, Any], message: str,
) -> None:
    with pytest.raises(ValidationError, match=message) as caught:
        RouterConfig.model_validate({"service": "s", "modelName": "m", "tritonModel": "t",
                                     "endpoints": ["a:1"], "chat": fields})  # fmt: skip
    assert caught.value.errors()[0]["loc"][0] == "chat"


def test_a_template_that_does_not_compile_is_refused_by_the_operator_naming_the_field() -> None:
    spec = {"model": {"name": "m", "repository": {"pvc": {"claimName": "models"}},
                      "chat": {"template": "{% if %}"}}}  # fmt: skip

    with pytest.raises(SpecError) as caught:
        parse_spec(spec)

    assert caught.value.field_path == "spec.model.chat.template"
    assert "does not compile" in str(caught.value)


def test_the_operator_passes_the_chat_format_to_the_router() -> None:
    chat = {"preset": "deepseek-r1", "returnReasoning": False}
    spec = ReasoningServiceSpec.model_validate(
        {"model": {"name": "m", "repository": {"pvc": {"claimName": "models"}}, "chat": chat}})

    config = RouterConfig.model_validate(
        render_router_config(Owner(name="r1", namespace="ml", uid="u"), spec))

    assert config.chat == ChatFormat(preset=ChatPreset.DEEPSEEK_R1, return_reasoning=False)
    assert config.chat.delimiters == THINK_TAGS


# -- separating the thinking ----------------------------------------------------------------


@pytest.mark.parametrize(("text", "opened", "reasoning", "answer"), [
    ("<think>\nsix sevens\n</think>\n\n42", False, "six sevens\n", "42"),
    ("  <think>six sevens</think>42", False, "six sevens", "42"),
    ("six sevens\n</think>\n\n42", True, "six sevens\n", "42"),
    ("six sevens, still", True, "six sevens, still", ""),
    ("<think>cut off mid-thought", False, "cut off mid-thought", ""),
    (" 42, no thinking ", False, "", " 42, no thinking "),
    ("42 <think>later</think>", False, "", "42 <think>later</think>"),
])  # fmt: skip
def test_the_reasoning_is_separated_from_the_answer(text: str, opened: bool, reasoning: str,
                                                    answer: str) -> None:  # fmt: skip
    assert split_reasoning(text, THINK_TAGS, opened=opened) == (reasoning, answer)


def test_without_markers_a_reply_is_all_answer_verbatim() -> None:
    assert split_reasoning("<think>x</think> 42", None) == ("", "<think>x</think> 42")


@pytest.mark.parametrize("text", ["<think>\nsix sevens\n</think>\n\n42 is it",
                                  "<think>a</think>", "<thi", "no thoughts </think> here"])
@pytest.mark.parametrize("size", [1, 2, 3, 5])
def test_streamed_pieces_join_to_the_whole_replys_split(text: str, size: int) -> None:
    splitter = ReasoningSplitter(THINK_TAGS)
    pieces = [p for i in range(0, len(text), size) for p in splitter.feed(text[i:i + size])]
    pieces += splitter.close()

    reasoning = "".join(t for part, t in pieces if part == "reasoning")
    answer = "".join(t for part, t in pieces if part == "content")
    assert (reasoning, answer) == split_reasoning(text, THINK_TAGS)
    assert not any("<" in t and ">" in t and "think" in t for part, t in pieces
                   if part == "reasoning")  # a marker never leaks, even cut across chunks


# -- through the router -------------------------------------------------------------------

THOUGHT = ["Six ", "sevens ", "are ", "forty-two.", "\n</th", "ink>", "\n\n", "The ",
           "answer ", "is ", "\\boxed{42}."]
TOKENS = 9  # its whitespace-separated pieces, as a reply that arrives whole is counted


class ThinkingStream(FakeStream):
    """A DeepSeek-R1 reply: its prompt opened the thought, it closes it, then answers."""

    async def _chunks(self) -> AsyncIterator[str]:
        for chunk in THOUGHT:
            self.record.chunks.append(chunk)
            if self.record.streamed:
                yield chunk
        self.record.finished = True
        if not self.record.streamed:
            yield "".join(THOUGHT)


class ThinkingBackend(FakeBackend):
    def stream_sample(self, prompt: str, params: SampleParams, *, timeout_seconds: float,
                      stream: bool = True) -> FakeStream:  # fmt: skip
        record = Record(self.address, prompt, params, streamed=stream)
        self.records.append(record)
        return ThinkingStream(record, Script())


@asynccontextmanager
async def r1_router(**chat: Any) -> AsyncIterator[tuple[httpx.AsyncClient, FakeFleet]]:
    fleet = FakeFleet(constant(Script()))

    def factory(address: str) -> FakeBackend:
        return fleet.backends.setdefault(address, ThinkingBackend(address, fleet.script))

    config = RouterConfig.model_validate({
        "service": "r1", "modelName": "m", "tritonModel": "t", "endpoints": ["a:1"],
        "chat": {"preset": "deepseek-r1", **chat}})  # fmt: skip
    app = create_app(config, backend_factory=factory)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://router") as client:
            yield client, fleet


def ask(**fields: Any) -> dict[str, Any]:
    return {"model": "m", "messages": [{"role": "user", "content": "What is 6*7?"}],
            "ponder": {"difficulty": 0.05, "max_samples": 1}, **fields}  # fmt: skip


async def test_a_chat_reaches_triton_in_the_models_template_and_its_thinking_comes_apart() -> None:
    async with r1_router() as (client, fleet):
        body = (await client.post("/v1/chat/completions", json=ask())).json()

    assert fleet.records[0].prompt == ("<\uff5cUser\uff5c>What is 6*7?"
                                       "<\uff5cAssistant\uff5c><think>\n")
    message = body["choices"][0]["message"]
    assert message["reasoning_content"] == "Six sevens are forty-two.\n"
    assert message["content"] == "The answer is \\boxed{42}."
    assert body["ponder"]["answer"] == "42"
    usage = body["usage"]
    assert usage["completion_tokens"] == TOKENS
    assert usage["completion_tokens_details"]["reasoning_tokens"] == 4  # the thought's words


async def test_a_service_that_keeps_its_thinking_returns_none_but_counts_it() -> None:
    async with r1_router(returnReasoning=False) as (client, _):
        body = (await client.post("/v1/chat/completions", json=ask())).json()

    assert body["choices"][0]["message"]["reasoning_content"] is None
    assert body["choices"][0]["message"]["content"] == "The answer is \\boxed{42}."
    assert body["usage"]["completion_tokens_details"]["reasoning_tokens"] == 4


async def test_the_other_samples_count_as_reasoning_beside_the_answers_thinking() -> None:
    async with r1_router() as (client, fleet):
        vote = {"difficulty": 0.95, "max_samples": 3, "strategy": "vote"}
        body = (await client.post("/v1/chat/completions", json=ask(ponder=vote))).json()
    samples = len(fleet.records)
    assert samples > 1
    assert body["usage"]["completion_tokens"] == samples * TOKENS
    assert body["usage"]["completion_tokens_details"]["reasoning_tokens"] == (
        (samples - 1) * TOKENS + 4)


def deltas(text: str) -> list[dict[str, Any]]:
    events = [line.removeprefix("data: ") for line in text.split("\n\n") if line]
    return [d for e in events[:-1] for c in json.loads(e)["choices"] for d in [c["delta"]]]


@pytest.mark.parametrize(("difficulty", "ponder"), [
    (0.05, {}), (0.95, {"max_samples": 3, "strategy": "vote"})])
async def test_streamed_deltas_carry_the_thinking_then_the_answer(
    difficulty: float, ponder: dict[str, Any],
) -> None:
    async with r1_router() as (client, _):
        response = await client.post("/v1/chat/completions", json=ask(
            stream=True, ponder={"difficulty": difficulty, **ponder}))  # fmt: skip

    chunks = deltas(response.text)
    thinking = "".join(d.get("reasoning_content", "") for d in chunks)
    answer = "".join(d.get("content", "") for d in chunks)
    assert thinking == "Six sevens are forty-two.\n"
    assert answer == "The answer is \\boxed{42}."
    first_answer = next(i for i, d in enumerate(chunks) if d.get("content"))
    assert all("reasoning_content" not in d for d in chunks[first_answer:])


async def test_a_stream_without_returned_thinking_sends_only_the_answer() -> None:
    async with r1_router(returnReasoning=False) as (client, _):
        response = await client.post("/v1/chat/completions", json=ask(stream=True))

    chunks = deltas(response.text)
    assert all("reasoning_content" not in d for d in chunks)
    assert "".join(d.get("content", "") for d in chunks) == "The answer is \\boxed{42}."


async def test_the_openai_client_reads_the_reasoning_content() -> None:
    async with r1_router() as (client, _):
        sdk = openai.AsyncOpenAI(base_url="http://router/v1", api_key="none", max_retries=0,
                                 http_client=client)  # fmt: skip
        completion = await sdk.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "What is 6*7?"}],
            extra_body={"ponder": {"difficulty": 0.05, "max_samples": 1}})
        stream = await sdk.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "What is 6*7?"}], stream=True,
            extra_body={"ponder": {"difficulty": 0.05, "max_samples": 1}})
        streamed = [chunk async for chunk in stream]

    message = completion.choices[0].message
    assert message.content == "The answer is \\boxed{42}."
    assert getattr(message, "reasoning_content") == "Six sevens are forty-two.\n"  # noqa: B009
    assert completion.usage is not None
    assert completion.usage.completion_tokens_details is not None
    assert completion.usage.completion_tokens_details.reasoning_tokens == 4
    thinking = "".join(getattr(c.choices[0].delta, "reasoning_content", None) or ""
                       for c in streamed if c.choices)  # fmt: skip
    assert thinking == "Six sevens are forty-two.\n"

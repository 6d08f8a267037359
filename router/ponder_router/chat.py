"""Each model's own chat format: its Jinja chat template, its thinking delimiters.

Role: ``ChatFormat`` is the router config's ``chat`` section and the ReasoningService CRD's
``spec.model.chat`` (the operator's API imports it, so the descriptions are what
``kubectl explain`` shows). It names a preset (``PRESETS``) or carries the template from the
model's ``tokenizer_config.json``, compiled when the config or spec is validated, so a
template that does not compile is refused there. ``ChatFormat.render`` turns a chat into
the one ``text_input`` string Triton's LLM backends take; ``ReasoningSplitter`` separates a
reply's chain of thought from its answer, a chunk at a time as it streams, and
``split_reasoning`` does the same for a whole reply. Neighbours: ``api`` (``render_prompt``
and the responses' ``reasoning_content``), ``app`` (streamed deltas). Pure: no I/O.

Templates render as the serving engines (vLLM, transformers) render them: in Jinja's
``ImmutableSandboxedEnvironment`` with ``trim_blocks``/``lstrip_blocks``, given
``messages`` (dicts with ``role`` and ``content``), ``add_generation_prompt=True``,
``bos_token``, ``eos_token`` and ``raise_exception``. The sandbox refuses attribute access
to private and dunder names and mutation of the inputs; here such an access raises instead
of rendering as empty (Jinja's default), and a template naming a ``_``-prefixed attribute
is refused at validation. A template is the service owner's, not a client's; the sandbox
guards against mistakes and escapes, not against a template built to be slow.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping, Sequence
from enum import StrEnum
from typing import Any, Literal, NoReturn

from jinja2 import Template, TemplateError, nodes
from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.alias_generators import to_camel

from .errors import PolicyError

MAX_TEMPLATE_CHARS = 65_536
"""Longer templates are refused (the longest public ones, with tool calling, are ~15k)."""


class ChatTemplateError(PolicyError):
    """A chat template does not compile, or refused to render these messages."""


class ChatPreset(StrEnum):
    """Chat formats known by name (``PRESETS`` holds their templates)."""

    PLAIN = "plain"
    CHATML = "chatml"
    LLAMA3 = "llama3"
    DEEPSEEK_R1 = "deepseek-r1"
    GEMMA = "gemma"
    QWEN3 = "qwen3"


PRESETS: dict[ChatPreset, str] = {
    # No model's format: a lone user message as is, else "role: content" paragraphs.
    ChatPreset.PLAIN: (
        "{% if messages | length == 1 %}{{ messages[0]['content'] }}"
        "{% else %}{% for m in messages %}{{ m['role'] + ': ' + m['content'] + '\n\n' }}"
        "{% endfor %}{% if add_generation_prompt %}assistant:{% endif %}{% endif %}"
    ),
    # ChatML (Qwen2/2.5, QwQ, Yi, many fine-tunes), without a default system message.
    ChatPreset.CHATML: (
        "{% for m in messages %}"
        "{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>\n' }}"
        "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
    ),
    # Meta Llama 3 / 3.1 / 3.3 Instruct (no tools, no date line).
    ChatPreset.LLAMA3: (
        "{{ bos_token }}{% for m in messages %}"
        "{{ '<|start_header_id|>' + m['role'] + '<|end_header_id|>\n\n'"
        " + m['content'] | trim + '<|eot_id|>' }}{% endfor %}"
        "{% if add_generation_prompt %}"
        "{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
    ),
    # DeepSeek-R1 and its distills (the bars are U+FF5C, the space U+2581): system text
    # first, earlier answers without their thinking, and the reply opens its <think>.
    ChatPreset.DEEPSEEK_R1: (
        "{{ bos_token }}{% for m in messages %}"
        "{% if m['role'] in ['system', 'developer'] %}{{ m['content'] }}{% endif %}"
        "{% endfor %}{% for m in messages %}"
        "{% if m['role'] == 'user' %}{{ '<\uff5cUser\uff5c>' + m['content'] }}"
        "{% elif m['role'] == 'assistant' %}"
        "{{ '<\uff5cAssistant\uff5c>' + m['content'].split('</think>')[-1]"
        " + '<\uff5cend\u2581of\u2581sentence\uff5c>' }}"
        "{% endif %}{% endfor %}"
        "{% if add_generation_prompt %}{{ '<\uff5cAssistant\uff5c><think>\n' }}{% endif %}"
    ),
    # Gemma 2 / 3 instruct: no system role (its text opens the first user turn), the
    # assistant is "model", and roles must alternate.
    ChatPreset.GEMMA: (
        "{{ bos_token }}{% if messages[0]['role'] in ['system', 'developer'] %}"
        "{% set prefix = messages[0]['content'] + '\n\n' %}{% set turns = messages[1:] %}"
        "{% else %}{% set prefix = '' %}{% set turns = messages %}{% endif %}"
        "{% for m in turns %}"
        "{% if (m['role'] == 'user') != (loop.index0 % 2 == 0) %}"
        "{{ raise_exception('Conversation roles must alternate user/assistant/user/...') }}"
        "{% endif %}{% set role = 'model' if m['role'] == 'assistant' else m['role'] %}"
        "{{ '<start_of_turn>' + role + '\n' + (prefix if loop.first else '')"
        " + m['content'] | trim + '<end_of_turn>\n' }}{% endfor %}"
        "{% if add_generation_prompt %}{{ '<start_of_turn>model\n' }}{% endif %}"
    ),
    # Qwen3 (thinking): ChatML, earlier answers without their thinking; the reply opens
    # with <think> itself.
    ChatPreset.QWEN3: (
        "{% for m in messages %}{% set content = m['content'] %}"
        "{% if m['role'] == 'assistant' %}"
        "{% set content = content.split('</think>')[-1].lstrip('\n') %}{% endif %}"
        "{{ '<|im_start|>' + m['role'] + '\n' + content + '<|im_end|>\n' }}"
        "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
    ),
}
"""Each preset's Jinja template, written from the model family's published format."""


class ThinkingDelimiters(BaseModel):
    """The markers around a reply's chain of thought."""

    model_config = ConfigDict(
        frozen=True, extra="forbid", alias_generator=to_camel, populate_by_name=True
    )

    start: str = Field(min_length=1, max_length=64, description="Opens the thinking.")
    end: str = Field(min_length=1, max_length=64, description="Closes the thinking.")


THINK_TAGS = ThinkingDelimiters(start="<think>", end="</think>")
_PRESET_THINKING = {ChatPreset.DEEPSEEK_R1: THINK_TAGS, ChatPreset.QWEN3: THINK_TAGS}
_AT_MOST_ONE = "set at most one of preset and template"


class ChatFormat(BaseModel):
    """How chat messages become the model's prompt, and where its thinking is."""

    # Also the ReasoningService CRD's spec.model.chat (the operator's API imports it).

    model_config = ConfigDict(
        frozen=True, extra="forbid", alias_generator=to_camel, populate_by_name=True,
        json_schema_extra={"x-kubernetes-validations": [
            {"rule": "!has(self.preset) || !has(self.template)", "message": _AT_MOST_ONE}]},
    )  # fmt: skip

    preset: ChatPreset | None = Field(
        default=None,
        description="A known format: plain (role: content paragraphs), chatml, llama3, "
                    "deepseek-r1, gemma or qwen3. plain if neither preset nor template is "
                    "set.",
    )  # fmt: skip
    template: str | None = Field(
        default=None, min_length=1, max_length=MAX_TEMPLATE_CHARS,
        description="The model's Jinja chat template (chat_template in its "
                    "tokenizer_config.json), rendered in a sandbox with messages, "
                    "add_generation_prompt, bos_token, eos_token and raise_exception; "
                    "refused if it does not compile.",
    )  # fmt: skip
    bos_token: str = Field(
        default="", max_length=256,
        description="The template's bos_token. Triton's vLLM backend adds the tokenizer's "
                    "own BOS to text_input, so leave it empty there.",
    )  # fmt: skip
    eos_token: str = Field(default="", max_length=256, description="The template's eos_token.")
    thinking: ThinkingDelimiters | None = Field(
        default=None,
        description="Markers around the chain of thought, separated from the answer as "
                    "reasoning_content; unset: the preset's (<think>/</think> for "
                    "deepseek-r1 and qwen3), none for a template.",
    )  # fmt: skip
    return_reasoning: bool = Field(
        default=True,
        description="Return the chain of thought as reasoning_content; false: drop it "
                    "(its tokens still count as reasoning_tokens).",
    )  # fmt: skip

    @field_validator("template")
    @classmethod
    def _compiles(cls, template: str | None) -> str | None:
        if template is not None:
            try:
                compile_template(template)
            except ChatTemplateError as exc:
                raise ValueError(str(exc)) from exc
        return template

    @model_validator(mode="after")
    def _one_source(self) -> ChatFormat:
        if self.preset is not None and self.template is not None:
            raise ValueError(_AT_MOST_ONE)
        return self

    @property
    def source(self) -> str:
        """The Jinja template this format renders with."""
        return self.template or PRESETS[self.preset or ChatPreset.PLAIN]

    @property
    def delimiters(self) -> ThinkingDelimiters | None:
        """The thinking markers: the configured ones, else the preset's."""
        if self.thinking is not None or self.preset is None:
            return self.thinking
        return _PRESET_THINKING.get(self.preset)

    def render(self, messages: Sequence[Mapping[str, str]]) -> str:
        """The prompt of ``messages``, ending with an open assistant turn;
        ``ChatTemplateError`` when the template refuses them (``raise_exception``)."""
        try:
            return compile_template(self.source).render(
                messages=[dict(m) for m in messages], add_generation_prompt=True,
                bos_token=self.bos_token, eos_token=self.eos_token,
            )  # fmt: skip
        except TemplateError as exc:
            raise ChatTemplateError(f"the chat template refused the messages: {exc}") from exc

    def opens_thinking(self, prompt: str) -> bool:
        """Whether ``prompt`` ends inside an opened thought (DeepSeek-R1's template ends
        with ``<think>``): the reply then starts with thinking, without the opening marker."""
        marks = self.delimiters
        return marks is not None and prompt.rstrip().endswith(marks.start)


class _Sandbox(ImmutableSandboxedEnvironment):
    """The serving engines' sandbox, where an unsafe access fails instead of rendering ''."""

    def unsafe_undefined(self, obj: Any, attribute: str) -> NoReturn:
        raise SecurityError(f"access to attribute {attribute!r} of "
                            f"{type(obj).__name__!r} object is unsafe")  # fmt: skip


def _raise_exception(message: str) -> NoReturn:
    raise TemplateError(message)


def _sandbox() -> _Sandbox:
    env = _Sandbox(trim_blocks=True, lstrip_blocks=True)
    env.globals["raise_exception"] = _raise_exception
    # transformers' tojson: JSON as is, not HTML-escaped as Jinja's own.
    env.filters["tojson"] = lambda value, indent=None: json.dumps(
        value, ensure_ascii=False, indent=indent)
    return env


_ENV = _sandbox()


@functools.lru_cache(maxsize=32)
def compile_template(source: str) -> Template:
    """The compiled template; ``ChatTemplateError`` if it does not compile or names a
    private attribute (``x.__class__``, ``x['_y']``)."""
    try:
        tree = _ENV.parse(source)
    except TemplateError as exc:
        raise ChatTemplateError(f"the chat template does not compile: {exc}") from exc
    for node in tree.find_all((nodes.Getattr, nodes.Getitem)):
        assert isinstance(node, nodes.Getattr | nodes.Getitem)
        name = node.attr if isinstance(node, nodes.Getattr) else _constant(node.arg)
        if isinstance(name, str) and name.startswith("_"):
            raise ChatTemplateError(f"the chat template reads the private attribute {name!r} "
                                    f"(line {node.lineno})")  # fmt: skip
    return _ENV.from_string(tree)


def _constant(node: nodes.Node) -> object:
    return node.value if isinstance(node, nodes.Const) else None


# -- separating the thinking from the answer ------------------------------------------------

Part = Literal["reasoning", "content"]


class ReasoningSplitter:
    """Separates a reply's chain of thought from its answer, fed a chunk at a time.

    A reply without markers is all answer, verbatim. A reply that starts (after blanks)
    with the opening marker, or whose prompt opened the thought (``opened``), is thinking
    up to the closing marker and answer after it; a thought never closed (the sample was
    cut off) is all thinking. Blanks that start the thinking or follow its end are
    dropped. A marker split across chunks is held back until it is whole, so streamed
    pieces join to what ``split_reasoning`` returns for the whole reply.
    """

    def __init__(self, delimiters: ThinkingDelimiters | None, *, opened: bool = False) -> None:
        self._marks = delimiters
        self._state = "thinking" if opened and delimiters else "start" if delimiters else "answer"
        self._held = ""
        self._trim = self._state == "thinking"  # drop the blanks opening the current part

    def feed(self, text: str) -> list[tuple[Part, str]]:
        """The pieces of ``text`` that are certain now, in order."""
        out: list[tuple[Part, str]] = []
        buffer, self._held = self._held + text, ""
        marks = self._marks
        while buffer:
            if self._state == "answer" or marks is None:
                self._emit(out, "content", buffer)
                return out
            if self._state == "start":
                stripped = buffer.lstrip()
                if stripped.startswith(marks.start):
                    buffer, self._state, self._trim = stripped[len(marks.start):], "thinking", True
                elif marks.start.startswith(stripped):
                    self._held = buffer
                    return out
                else:
                    self._state, self._trim = "answer", False
                continue
            at = buffer.find(marks.end)
            if at < 0:
                keep = _partial_suffix(buffer, marks.end)
                self._emit(out, "reasoning", buffer[:len(buffer) - keep])
                self._held = buffer[len(buffer) - keep:]
                return out
            self._emit(out, "reasoning", buffer[:at])
            buffer, self._state, self._trim = buffer[at + len(marks.end):], "answer", True
        return out

    def close(self) -> list[tuple[Part, str]]:
        """What was held back, at the end of the reply."""
        out: list[tuple[Part, str]] = []
        held, self._held = self._held, ""
        self._emit(out, "reasoning" if self._state == "thinking" else "content", held)
        return out

    def _emit(self, out: list[tuple[Part, str]], part: Part, text: str) -> None:
        if self._trim:
            text = text.lstrip()
            self._trim = not text
        if text:
            out.append((part, text))


def _partial_suffix(text: str, marker: str) -> int:
    """The length of the longest end of ``text`` that begins ``marker`` (it may be cut)."""
    for size in range(min(len(text), len(marker) - 1), 0, -1):
        if marker.startswith(text[-size:]):
            return size
    return 0


def split_reasoning(text: str, delimiters: ThinkingDelimiters | None, *,
                    opened: bool = False) -> tuple[str, str]:  # fmt: skip
    """``(reasoning, answer)`` of a whole reply, by ``ReasoningSplitter``'s rules."""
    splitter = ReasoningSplitter(delimiters, opened=opened)
    parts = {"reasoning": "", "content": ""}
    for part, piece in [*splitter.feed(text), *splitter.close()]:
        parts[part] += piece
    return parts["reasoning"], parts["content"]

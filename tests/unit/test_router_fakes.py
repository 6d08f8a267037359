"""Transport-level fakes for the router's unit tests: a scripted Triton replica.

``FakeBackend`` implements ``SampleBackend``: each sample streams ``tokens`` words at
``token_seconds`` each and ends with ``The answer is \\boxed{X}.``, where the script
(a function of prompt and seed) picks X, the length, or a failure, and what the replica
says about the sample besides its text (``finish_reason``, ``cumulative_logprob``,
``output_tokens``: the vLLM backend's additional outputs; None: not sent; with
``logprob_per_token`` a running ``cumulative_logprob`` with every response); a sample asked for
without streaming arrives in one piece at its end, as from Triton's LLM backends. It records every
started, finished and cancelled sample, so tests can assert on what Triton would see.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import pytest

from ponder_router.errors import UpstreamError
from ponder_router.triton import EndpointUnavailableError, SampleParams, SampleSignals


@dataclass(frozen=True)
class Script:
    """What one sample does."""

    answer: str | None = "42"
    tokens: int = 5
    token_seconds: float = 0.0
    fail_after: int | None = None  # tokens, then an error
    error: type[UpstreamError] = UpstreamError
    first_token_delay: float = 0.0
    finish_reason: str | None = None
    cumulative_logprob: float | None = None
    output_tokens: int | None = None
    logprob_per_token: float | None = None  # sends a running cumulative_logprob per response
    text: str | None = None  # written instead of the words and the answer (a probe's answer)


ScriptFn = Callable[[str, SampleParams], Script]


def constant(script: Script) -> ScriptFn:
    return lambda prompt, params: script


def by_seed(scripts: dict[int, Script], default: Script) -> ScriptFn:
    """Scripts by sample index (seed minus the request's seed 1000)."""
    return lambda prompt, params: scripts.get((params.seed or 0) - 1000, default)


@dataclass
class Record:
    address: str
    prompt: str
    params: SampleParams
    chunks: list[str] = field(default_factory=list)
    finished: bool = False
    cancelled: bool = False
    failed: bool = False
    streamed: bool = True


class FakeStream:
    def __init__(self, record: Record, script: Script) -> None:
        self.record = record
        self.script = script
        self.signals = SampleSignals()

    async def _chunks(self) -> AsyncIterator[str]:
        script = self.script
        if script.first_token_delay:
            await asyncio.sleep(script.first_token_delay)
        words = [f"step{i} " for i in range(script.tokens)]
        if script.answer is not None:
            words += ["\nThe ", "answer ", "is ", f"\\boxed{{{script.answer}}}."]
        if script.text is not None:
            words = [script.text]
        pending: list[str] = []
        for i, word in enumerate(words):
            if script.fail_after is not None and i >= script.fail_after:
                self.record.failed = True
                raise script.error(f"fake failure on {self.record.address}")
            if script.token_seconds:
                await asyncio.sleep(script.token_seconds)
            else:
                await asyncio.sleep(0)
            self.record.chunks.append(word)
            pending.append(word)
            if script.logprob_per_token is not None:
                self.signals.cumulative_logprob = (i + 1) * script.logprob_per_token
            if self.record.streamed:  # one response per token, else one for the sample
                yield pending.pop()
        self.record.finished = True
        logprob = script.cumulative_logprob
        if logprob is None:
            logprob = self.signals.cumulative_logprob
        self.signals = SampleSignals(script.finish_reason, logprob, script.output_tokens)
        if pending:
            yield "".join(pending)

    def __aiter__(self) -> AsyncIterator[str]:
        return self._chunks()

    def cancel(self) -> None:
        if not self.record.finished:
            self.record.cancelled = True


class FakeBackend:
    """A scripted replica; ``records`` lists every sample it was asked for."""

    def __init__(self, address: str, script: ScriptFn, *, unreachable: bool = False,
                 score: Callable[[str], float] | None = None) -> None:  # fmt: skip
        self.address = address
        self.script = script
        self.unreachable = unreachable
        self.scorer = score
        self.records: list[Record] = []
        self.scored_by: list[str] = []  # the verifier model of every score asked for
        self.closed = False

    def stream_sample(self, prompt: str, params: SampleParams, *, timeout_seconds: float,
                      stream: bool = True) -> FakeStream:  # fmt: skip
        record = Record(self.address, prompt, params, streamed=stream)
        self.records.append(record)
        script = self.script(prompt, params)
        if self.unreachable:
            script = Script(fail_after=0, error=EndpointUnavailableError)
        return FakeStream(record, script)

    async def score(self, model: str, text: str, *, timeout_seconds: float) -> float:
        self.scored_by.append(model)
        if self.scorer is None:
            raise UpstreamError(f"no verifier model {model}")
        return self.scorer(text)

    async def close(self) -> None:
        self.closed = True


class FakeFleet:
    """Backends by address, created on demand by the pool (``factory``)."""

    def __init__(self, script: ScriptFn, *, unreachable: frozenset[str] = frozenset(),
                 score: Callable[[str], float] | None = None) -> None:  # fmt: skip
        self.script = script
        self.unreachable = unreachable
        self.score = score
        self.backends: dict[str, FakeBackend] = {}

    def factory(self, address: str) -> FakeBackend:
        backend = FakeBackend(address, self.script, unreachable=address in self.unreachable,
                              score=self.score)  # fmt: skip
        self.backends[address] = backend
        return backend

    @property
    def records(self) -> list[Record]:
        return [r for b in self.backends.values() for r in b.records]

    @property
    def scored_by(self) -> list[str]:
        return [model for b in self.backends.values() for model in b.scored_by]


async def test_a_fake_sample_streams_its_words_then_the_answer() -> None:
    backend = FakeBackend("a:1", constant(Script(answer="7", tokens=2)))
    stream = backend.stream_sample("p", SampleParams(max_tokens=10), timeout_seconds=1)
    text = "".join([chunk async for chunk in stream])
    assert text.endswith("The answer is \\boxed{7}.")
    assert backend.records[0].finished


async def test_a_fake_sample_fails_where_its_script_says() -> None:
    backend = FakeBackend("a:1", constant(Script(fail_after=1)))
    stream = backend.stream_sample("p", SampleParams(max_tokens=10), timeout_seconds=1)
    with pytest.raises(UpstreamError):
        _ = [chunk async for chunk in stream]
    assert backend.records[0].failed

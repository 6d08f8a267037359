"""Forks the probes of one streaming sample and says when its answer has settled.

Role: the I/O half of probe exits, between ``executor`` (which streams the sample, feeds
its progress to ``SampleProber.observe`` after each chunk and stops the sample once that
says it settled) and ``probes`` (the pure rule: when a probe is due, when the answers
agree). A probe is one short request on the sample's own replica (its prefix is cached
there): the sample's prompt, its text so far and the probe cue (``ProbeConfig.cue_text``),
for at most ``ProbeConfig.max_tokens``, ending at its stop strings, with the sample's seed,
fetched whole; its answer is read with the eaten stop string put back (``probes.read_probe``).
One that stopped inside the answer (at the first ``}`` of ``\\frac{1}{2}``) goes on after
that string in a next request, within the same ``max_tokens``. One probe runs at a time
per sample; a probe that fails reads as no answer (it breaks the agreement). A probe
counts as running work on its replica while it runs; ``close`` cancels a running one on
Triton (a probe never outlives its sample, so never its request) and returns the tokens
its finished probes generated, which count as the sample's (a probe cut short is not
counted: the server does not say how far it got).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, replace

from .answers import EqualityMode
from .api import chunk_tokens
from .endpoints import Endpoint, EndpointPool
from .errors import UpstreamError
from .metrics import RouterMetrics
from .probes import ProbeConfig, ProbeReading, ProbeState, probe_confidence, read_probe
from .triton import SampleParams, SampleStream

logger = logging.getLogger(__name__)

_MAX_PIECES = 8
"""Requests one probe may take: a stop string inside the answer (the first ``}`` of
``\\frac{1}{2}``) ends one request, and the probe goes on after it in the next."""


@dataclass(frozen=True, slots=True)
class _Piece:
    """What one request of a probe generated."""

    text: str
    tokens: int
    stopped: bool
    """It ended before its ``max_tokens``: at a stop string or the end of its answer."""
    logprob: float | None


class SampleProber:
    """The probes of one sample on ``endpoint`` (see the module docstring)."""

    def __init__(self, *, pool: EndpointPool, endpoint: Endpoint, prompt: str,
                 params: SampleParams, cue: str, config: ProbeConfig, equality: EqualityMode,
                 extract: Callable[[str], str | None], timeout_seconds: float,
                 metrics: RouterMetrics) -> None:  # fmt: skip
        self.pool = pool
        self.endpoint = endpoint
        self.prompt = prompt
        self.params = replace(params, max_tokens=config.max_tokens, stop=config.stop)
        self.cue = cue
        self.state = ProbeState(config, equality)
        self.extract = extract
        self.timeout_seconds = timeout_seconds
        self.metrics = metrics
        self.tokens = 0
        self.sent = 0
        self.answer_text: str | None = None
        """The cue and the settled probe's text: the sample's answer, once settled."""
        self._task: asyncio.Task[None] | None = None
        self._stream: SampleStream | None = None
        self._closed = False

    @property
    def settled(self) -> bool:
        return self.answer_text is not None

    def observe(self, text: Callable[[], str], tokens: int) -> bool:
        """The sample reached ``tokens`` with ``text()`` so far: fork a probe when one is
        due and none is running. Whether the sample's answer has settled."""
        if self.answer_text is None and self._task is None and self.state.due(tokens):
            self.state.fired(tokens)
            self.sent += 1
            self.metrics.probes.inc()
            self._task = asyncio.get_running_loop().create_task(self._probe(text()))
        return self.answer_text is not None

    async def _probe(self, text: str) -> None:
        prefix = self.prompt + text
        written = self.cue
        answer: str | None = None
        logprob: float | None = 0.0
        used = 0
        try:
            for _ in range(_MAX_PIECES):
                params = replace(self.params, max_tokens=self.params.max_tokens - used)
                piece = await self._generate(prefix + written, params)
                used += piece.tokens
                logprob = None if logprob is None or piece.logprob is None \
                    else logprob + piece.logprob  # fmt: skip
                answer, written = read_probe(written + piece.text, self.extract,
                                             self.params.stop, stopped=piece.stopped)  # fmt: skip
                if (answer is not None or not piece.stopped or not self.params.stop
                        or used >= self.params.max_tokens):  # fmt: skip
                    break
                written += self.params.stop[0]  # it stopped inside the answer: go on after it
        except UpstreamError as exc:
            logger.info("a probe failed, it reads as no answer: %s", exc)
            answer = None
        finally:
            self._task = None
        if self.state.record(ProbeReading(answer, probe_confidence(logprob))) is not None \
                and not self._closed:  # fmt: skip
            self.answer_text = written

    async def _generate(self, prompt: str, params: SampleParams) -> _Piece:
        """One request of a probe."""
        expected = float(params.max_tokens)
        stream = self._stream = self.endpoint.backend.stream_sample(
            prompt, params, timeout_seconds=self.timeout_seconds, stream=False)
        self.endpoint.start(expected)
        chunks: list[str] = []
        try:
            async for chunk in stream:
                chunks.append(chunk)
        finally:
            stream.cancel()  # a no-op once it ended; else Triton stops it
            self._stream = None
            self.pool.release(self.endpoint, expected)
            counted = stream.signals.output_tokens
            tokens = counted if counted is not None else chunk_tokens("".join(chunks))
            if not self._closed:  # a probe cut short by its sample's end is not counted
                self.tokens += tokens
                self.metrics.probe_tokens.inc(tokens)
        reason = stream.signals.finish_reason
        stopped = reason == "stop" if reason is not None else tokens < params.max_tokens
        return _Piece("".join(chunks), tokens, stopped, stream.signals.cumulative_logprob)

    def close(self) -> int:
        """Cancel a running probe (on Triton too); the tokens all finished probes
        generated."""
        self._closed = True
        if self._stream is not None:
            self._stream.cancel()
        if self._task is not None:
            self._task.cancel()
        return self.tokens

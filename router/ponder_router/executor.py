"""Runs one request: budget, admission, samples in waves, early stop, aggregation.

Role: the adapter that strings the pure policy together with the I/O. For each request
``Executor.plan`` estimates difficulty (or takes the client's hint), with the weights of
the config's ``budgets.estimator`` unless an estimator was given, or, once it is warm, with
the prompt prior (``prior_model``) that every finished vote request teaches; assigns a
budget (``budgets.assign_budget``, load-aware when the pool is at its replica ceiling),
and a ``RequestRun`` then

1. ``admit``: takes an admission slot (``admission``) and, when no Triton replica exists
   yet (scale from zero), holds until one appears or the deadline passes (503);
2. ``execute``: launches samples in waves (``aggregate.plan_next_wave``) on the replica
   with the least outstanding work (``endpoints``), retrying a failed sample once on
   another replica; extracts each finished sample's answer (``answers``), asks
   ``aggregate.should_stop`` after each, cancels the samples still running once it says
   stop (Triton stops them), and aggregates: majority vote, the last revision, or
   best-of-n by a verifier model, the tier's or else the service's (majority vote when
   none answers, and the report says so). When the stop rule has a ``score_threshold``
   a best-of-n request scores each sample with an answer as it finishes and stops once
   one scores that high (drawing one sample at a time after its first wave); otherwise
   it scores its samples at the end. At the deadline it answers from the samples
   finished so far, or fails with 504 when there are none. A sample cut off at its
   ``max_tokens`` is continued on the same replica with the answer cue (``forcing``):
   its answer is a forced vote, not an abstention. With ``probes`` enabled a sample is
   streamed and probed every ``interval_tokens`` (``probing``); once its probes agree
   it is cancelled and votes with the probed answer. A request's samples (and their
   probes and forced answers) run on its home replica until it is saturated
   (``affinity``). A run that ``escalate_when_contested`` (set by ``app`` for an
   escalating tier with first-wave agreement) stops at the first sample its plan finds
   ``contested`` and raises ``EscalationNeededError``: an agreeing first wave answers
   here, a contested one goes to the larger service.

Confidence (``confidence``, the config's ``confidence``): the executor owns the service's
``ConfidenceGate`` and hands it to every request's plan, which weighs votes by confidence
and feeds the gate each finished sample's confidence (``exp(cumulative_logprob /
tokens)``). With cancellation on, every sample streams from Triton response by response,
and after each response a sample whose running confidence the gate refuses (once the
request holds a vote) is cancelled on Triton: it abstains, counted in the report's
``samples.low_confidence`` and ``ponder_router_low_confidence_cancels_total``.

Streaming (``EventSink``): a single-sample budget streams that sample's tokens as they
arrive; a multi-sample budget cannot know upfront which sample will be the answer, so it
streams a progress event as each sample finishes, then the chosen sample's text. Only a
sample forwarded to a client is streamed from Triton token by token; every other sample
comes back whole in one response (far less gRPC work per sample, same cancellation).

Live state (queued requests, running samples, expected tokens still to generate) feeds
the ``metrics`` gauges the autoscaler reads.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Protocol

from .admission import Admission
from .api import RequestResult, chunk_tokens
from .budgets import (
    Budget,
    DemandModel,
    LoadState,
    Strategy,
    assign_budget,
    expected_request_tokens,
)
from .confidence import ConfidenceGate, sample_confidence
from .demand import expected_remaining_tokens
from .demand_learning import DemandLearner
from .difficulty import DifficultyEstimate, DifficultyEstimator
from .endpoints import Endpoint, EndpointPool, NoEndpointError
from .errors import DeadlineExceededError, UpstreamError
from .metrics import RouterMetrics
from .offered import OfferedLoad
from .plan import FailureAction, Outcome, RequestPlan
from .prior import observe_plan
from .probing import SampleProber
from .settings import RouterConfig, VerifierConfig
from .triton import EndpointUnavailableError, SampleParams, SampleStream, SampleTimeoutError

if TYPE_CHECKING:  # scikit-learn is imported only where a prior is enabled (``app``)
    from .prior_model import LearnedPrior

logger = logging.getLogger(__name__)

_REVISE_SUFFIX = (
    "\n\nA previous attempt at this problem:\n{previous}\n\nReview the attempt above, "
    "correct any mistake, and give the final answer in \\boxed{{}}."
)


class EscalationNeededError(Exception):
    """A run that escalates when contested saw disagreement: the larger service answers.
    Not a failure; ``app`` forwards the request (``escalation``)."""


class EventSink(Protocol):
    """Where a streaming request's events go."""

    def token(self, text: str) -> None: ...

    def progress(self, report: dict[str, object]) -> None: ...


@dataclass(frozen=True, slots=True)
class RequestSpec:
    """A validated request, in the router's terms."""

    request_id: str
    prompt: str
    problem: str
    prompt_tokens: int
    tenant: str
    effort: str = "auto"
    temperature: float | None = None
    top_p: float | None = None
    seed: int | None = None
    stop: tuple[str, ...] = ()
    max_tokens: int | None = None
    max_samples: int | None = None
    strategy: Strategy | None = None
    difficulty_hint: float | None = None
    streaming: bool = False


@dataclass(slots=True)
class Sample:
    """One sample's text and fate."""

    index: int
    chunks: list[str] = field(default_factory=list)
    tokens: int = 0
    finished: bool = False
    answer: str | None = None
    finish_reason: str | None = None  # the model server's, when it sends one
    cumulative_logprob: float | None = None
    forced_text: str | None = None  # the answer cue and its continuation (budget forcing)
    probed_text: str | None = None  # the cue and the settled probe's text (probe exits)
    low_confidence: bool = False  # cancelled for low running confidence: abstains
    logprob_tokens: int = 0  # the tokens ``cumulative_logprob`` covers (not a forced tail)

    @property
    def forced(self) -> bool:
        """Cut off at ``max_tokens``, then continued at the answer cue: a vote."""
        return self.forced_text is not None

    @property
    def probed(self) -> bool:
        """Stopped once its probes agreed: votes with the probed answer."""
        return self.probed_text is not None

    @property
    def truncated(self) -> bool:
        """Cut off at ``max_tokens`` (the server said ``length``) and not forced to
        answer: never a vote."""
        return self.finish_reason == "length" and not self.forced

    def capped(self, max_tokens: int) -> bool:
        """Cut off at ``max_tokens``: the server said ``length``, or, from a model that
        sends no signals, it used them all."""
        if self.finish_reason is None:
            return self.tokens >= max_tokens
        return self.finish_reason == "length"

    @property
    def text(self) -> str:
        return "".join(self.chunks)

    @property
    def confidence(self) -> float | None:
        """The geometric-mean token probability (None: the server sent no logprob)."""
        return sample_confidence(self.cumulative_logprob, self.logprob_tokens)


def override_strategy(budget: Budget, strategy: Strategy | None, config: RouterConfig) -> Budget:
    """The budget with a client's ``ponder.strategy`` (within the budget's samples)."""
    if strategy is None or strategy is budget.strategy or budget.max_samples == 1:
        return budget
    if strategy is Strategy.SINGLE:
        update: dict[str, object] = {"strategy": strategy, "max_samples": 1, "wave_size": 1}
    elif strategy is Strategy.REVISE:
        update = {"strategy": strategy, "wave_size": 1}
    else:
        update = {"strategy": strategy}
    changed = budget.model_copy(update=update)
    expected = expected_request_tokens(changed, config.budgets.demand_model)
    return changed.model_copy(update={"expected_tokens": expected})


class RequestRun:
    """One request's journey through the router (see the module docstring)."""

    def __init__(self, executor: Executor, spec: RequestSpec, estimate: DifficultyEstimate,
                 budget: Budget, config: RouterConfig) -> None:  # fmt: skip
        self.executor = executor
        self.spec = spec
        self.estimate = estimate
        self.budget = budget
        self.config = config
        self.started_at = executor.clock()
        self.deadline = self.started_at + config.admission.request_timeout_seconds
        self.samples: list[Sample] = []
        self.running_tokens = 0
        self.finished_samples = 0
        self.first_token_at: float | None = None
        self.queued = False
        self.admitted = False
        self.escalated_tokens = 0
        self.escalate_when_contested = False
        self.home: str | None = None  # the replica this request's samples run on (affinity)
        self.extra_sample_ratio: float | None = None  # the prior's, once warm
        self.extract = config.answers.extractor_function()
        self.plan = RequestPlan.for_request(
            budget, config.stopping, can_score=config.verifier_for(budget.tier) is not None,
            equality=config.answers.equality)
        if config.confidence.enabled:
            self.plan.confidence = executor.confidence_gate(config)

    @property
    def escalates_on_evidence(self) -> bool:
        """An escalating tier whose first wave may agree: that wave runs here first."""
        budget = self.budget
        return (budget.escalate_to is not None and budget.stop_on_first_wave_agreement
                and budget.strategy is Strategy.VOTE and budget.wave_size >= 2)  # fmt: skip

    @property
    def budget_tokens(self) -> int:
        return self.budget.max_tokens_per_sample * self.budget.max_samples

    def remaining_seconds(self) -> float:
        return self.deadline - self.executor.clock()

    def demand_tokens(self) -> float:
        """Expected tokens this request still generates (its share of the demand gauge)."""
        forcing = self.config.forcing
        return expected_remaining_tokens(
            self.budget, self.executor.demand_model(self.config, self.budget.tier),
            samples_finished=self.finished_samples,
            running_samples=self.plan.running, running_tokens=self.running_tokens,
            answer_tokens=forcing.answer_tokens if forcing.enabled else 0,
            extra_sample_ratio=self.extra_sample_ratio)

    # -- admission ---------------------------------------------------------------------

    async def admit(self) -> None:
        """Take a slot, then hold for a first Triton replica; raises 429/503 errors."""
        ex = self.executor
        ex.live.add(self)
        self._set_queued(True)
        try:
            await ex.admission.acquire(self.spec.tenant, self.remaining_seconds())
            self.admitted = True
            if not await ex.pool.wait_for_endpoint(self.remaining_seconds()):
                raise NoEndpointError(
                    "no inference replica became available before the request deadline; "
                    "the service may be scaling up from zero", retry_after_seconds=30,
                )  # fmt: skip
        except BaseException:
            self.finish()
            raise

    def _set_queued(self, queued: bool) -> None:
        if queued != self.queued:
            self.queued = queued
            self.executor.queued += 1 if queued else -1

    def finish(self) -> None:
        """Give back the slot and leave the live state; idempotent."""
        ex = self.executor
        self._set_queued(False)
        ex.live.discard(self)
        if self.admitted:
            self.admitted = False
            ex.admission.release(self.spec.tenant, ex.clock() - self.started_at)

    # -- samples -----------------------------------------------------------------------

    def _params(self, index: int) -> SampleParams:
        spec = self.spec
        return SampleParams(
            max_tokens=self.budget.sample_max_tokens(index), temperature=spec.temperature,
            top_p=spec.top_p, seed=(self.executor.base_seed(spec) + index) % 2**31,
            stop=spec.stop,
        )  # fmt: skip

    def _prompt(self, index: int) -> str:
        if self.budget.strategy is not Strategy.REVISE or index == 0:
            return self.spec.prompt
        previous = next((s for s in reversed(self.samples) if s.finished), None)
        if previous is None:
            return self.spec.prompt
        return self.spec.prompt + _REVISE_SUFFIX.format(previous=previous.text)

    async def _run_sample(self, sample: Sample, sink: EventSink | None) -> Sample:
        ex = self.executor
        prompt, params = self._prompt(sample.index), self._params(sample.index)
        expected = self.config.budgets.demand_model.token_fill_ratio * params.max_tokens
        forward = sink if self.budget.max_samples == 1 else None
        tried: set[str] = set()
        for attempt in (1, 2):  # a failed sample is retried once, on another replica if any
            endpoint = self._pick(frozenset(tried)) or self._pick(frozenset())
            if endpoint is None:
                raise NoEndpointError("no inference replica is available",
                                      retry_after_seconds=5)  # fmt: skip
            tried.add(endpoint.address)
            try:
                await self._stream_on(endpoint, sample, prompt, params, expected, forward,
                                      probe=self.config.probes.enabled)  # fmt: skip
            except UpstreamError as exc:
                ex.metrics.upstream_failures.inc()
                if isinstance(exc, EndpointUnavailableError):
                    ex.pool.mark_down(endpoint)
                retry = attempt == 1 and not isinstance(exc, SampleTimeoutError)
                if not retry or (forward is not None and sample.chunks):
                    raise
                logger.warning("sample failed, retrying once: %s", exc,
                               extra={"request_id": self.spec.request_id})  # fmt: skip
                sample.chunks.clear()
                self.running_tokens -= sample.tokens
                sample.tokens = 0
                continue
            if (self.config.forcing.enabled and not sample.low_confidence
                    and self.budget.forces(sample.index)
                    and sample.capped(params.max_tokens)):  # fmt: skip
                await self._force(endpoint, sample, prompt, params, forward)
            break
        return sample

    def _pick(self, exclude: frozenset[str]) -> Endpoint | None:
        """A replica for a sample: the request's home while it has room (``affinity``)."""
        pool, affinity = self.executor.pool, self.config.affinity
        if not affinity.enabled:
            return pool.pick(exclude)
        endpoint = pool.pick(exclude, home=self.home,
                             max_running=affinity.max_samples_per_replica)  # fmt: skip
        if endpoint is not None and (self.home is None or not pool.usable(self.home)):
            self.home = endpoint.address
        return endpoint

    async def _force(self, endpoint: Endpoint, sample: Sample, prompt: str,
                     params: SampleParams, forward: EventSink | None) -> None:  # fmt: skip
        """Budget forcing: continue a capped sample on the same replica (its prefix is
        cached there) with the answer cue, for ``answer_tokens`` more; when that fails the
        sample stays truncated and abstains."""
        forcing = self.config.forcing
        cue = forcing.cue_text(self.config.chat)
        tail = Sample(index=sample.index)
        answer_params = replace(params, max_tokens=forcing.answer_tokens)
        if forward is not None:
            forward.token(cue)
        try:
            await self._stream_on(endpoint, tail, prompt + sample.text + cue, answer_params,
                                  float(forcing.answer_tokens), forward, gated=False)  # fmt: skip
        except UpstreamError as exc:
            self.executor.metrics.upstream_failures.inc()
            self.running_tokens -= tail.tokens
            logger.warning("forcing an answer failed, the sample abstains: %s", exc,
                           extra={"request_id": self.spec.request_id})  # fmt: skip
            return
        sample.forced_text = cue + tail.text
        sample.chunks += [cue, *tail.chunks]
        sample.tokens += tail.tokens

    async def _stream_on(self, endpoint: Endpoint, sample: Sample, prompt: str,
                         params: SampleParams, expected: float,
                         forward: EventSink | None, *, probe: bool = False,
                         gated: bool = True) -> None:  # fmt: skip
        ex = self.executor
        self._set_queued(False)
        timeout = max(min(self.config.admission.sample_timeout_seconds,
                          self.remaining_seconds()), 0.001)  # fmt: skip
        endpoint.start(expected)
        ex.inflight_samples += 1
        stream: SampleStream | None = None
        done = False
        prober = self._prober(endpoint, prompt, params, timeout) if probe else None
        gate = self.plan.confidence if gated and self.plan.confidence is not None \
            and self.plan.confidence.config.cancel else None  # fmt: skip
        try:
            stream = endpoint.backend.stream_sample(
                prompt, params, timeout_seconds=timeout,
                stream=forward is not None or probe or gate is not None)  # fmt: skip
            async for chunk in stream:
                if not chunk:
                    continue
                if self.first_token_at is None:
                    self.first_token_at = ex.clock()
                    ex.metrics.time_to_first_token.observe(self.first_token_at - self.started_at)
                self._count_tokens(sample, stream, chunk)
                sample.chunks.append(chunk)
                if forward is not None:
                    forward.token(chunk)
                if gate is not None and self._unconfident(gate, sample, stream):
                    return  # the finally cancels it on Triton
                if prober is not None and prober.observe(lambda: sample.text, sample.tokens):
                    break  # settled: the finally cancels the rest of the sample on Triton
            if prober is not None and prober.answer_text is not None:
                self._settle(sample, prober.answer_text, forward)
                return
            done = True
            self._count_tokens(sample, stream, "")
            sample.finish_reason = stream.signals.finish_reason
            sample.cumulative_logprob = stream.signals.cumulative_logprob
            sample.logprob_tokens = sample.tokens
        finally:
            if stream is not None and not done:
                stream.cancel()  # a failure, a stop or a client gone: Triton stops the sample
            if prober is not None:  # its probes end with it; their tokens are the sample's
                probe_tokens = prober.close()
                sample.tokens += probe_tokens
                self.running_tokens += probe_tokens
            ex.inflight_samples -= 1
            ex.pool.release(endpoint, expected)

    def _prober(self, endpoint: Endpoint, prompt: str, params: SampleParams,
                timeout_seconds: float) -> SampleProber:  # fmt: skip
        config = self.config
        return SampleProber(pool=self.executor.pool, endpoint=endpoint, prompt=prompt,
                            params=params, cue=config.probes.cue_text(config.forcing, config.chat),
                            config=config.probes, equality=config.answers.equality,
                            extract=self.extract, timeout_seconds=timeout_seconds,
                            metrics=self.executor.metrics)  # fmt: skip

    def _settle(self, sample: Sample, answer_text: str, forward: EventSink | None) -> None:
        """The sample's probes agreed: the settled probe's answer ends its text."""
        sample.probed_text = answer_text
        sample.chunks.append(answer_text)
        sample.finish_reason = "stop"  # stopped on an answer: neither capped nor truncated
        metrics = self.executor.metrics
        metrics.probe_exits.inc()
        cap = self.budget.sample_max_tokens(sample.index)
        metrics.probe_unspent_tokens.inc(max(cap - sample.tokens, 0))
        if forward is not None:
            forward.token(answer_text)

    def _unconfident(self, gate: ConfidenceGate, sample: Sample, stream: SampleStream) -> bool:
        """The gate refuses the running sample (the plan allows a cancel): mark it."""
        running = sample_confidence(stream.signals.cumulative_logprob, sample.tokens)
        if not self.plan.may_cancel or not gate.should_cancel(running, sample.tokens):
            return False
        sample.low_confidence = True
        sample.cumulative_logprob = stream.signals.cumulative_logprob
        sample.logprob_tokens = sample.tokens
        return True

    def _count_tokens(self, sample: Sample, stream: SampleStream, chunk: str) -> None:
        """The sample's tokens: the server's count (``num_output_tokens``) when it sends
        one, else an estimate from the chunks."""
        counted = stream.signals.output_tokens
        tokens = counted - sample.tokens if counted is not None else chunk_tokens(chunk)
        sample.tokens += tokens
        self.running_tokens += tokens

    # -- the wave loop -----------------------------------------------------------------

    async def execute(self, sink: EventSink | None = None) -> RequestResult:
        """Run the samples and aggregate (see the module docstring); always ``finish``es."""
        try:
            result = await self._execute(sink)
        finally:
            self.finish()
        self.executor.learn(self)
        return result

    async def _execute_single(self, sink: EventSink | None) -> RequestResult:
        """One sample, awaited in place: the common case needs no task and no waves."""
        plan = self.plan
        sample = Sample(index=plan.launch()[0])
        self.samples.append(sample)
        try:
            async with asyncio.timeout(max(self.remaining_seconds(), 0)):
                await self._run_sample(sample, sink)
        except (TimeoutError, SampleTimeoutError) as exc:
            # The sample's gRPC deadline is capped by the request's, so it may fire first:
            # a sample timeout at the request deadline is the request timing out (504).
            if isinstance(exc, SampleTimeoutError) and self.remaining_seconds() > 0.25:
                raise
            plan.deadline()
            raise DeadlineExceededError("the request deadline passed before the sample "
                                        "finished") from exc  # fmt: skip
        finally:
            self.running_tokens = 0
        self._finish_sample(sample)
        plan.decide()
        return await self._answer()

    def _finish_sample(self, sample: Sample) -> bool:
        """Hand a finished sample's answer to the plan; True: score it now."""
        sample.finished = True
        text = sample.text
        if sample.forced_text is not None:
            text = sample.forced_text
            self.executor.metrics.forced_answers.inc()
        if sample.probed_text is not None:
            text = sample.probed_text
        self.finished_samples += 1
        if sample.truncated:
            self.executor.metrics.truncated_samples.inc()
        if sample.low_confidence:
            self.executor.metrics.low_confidence_cancels.inc()
        extracted = self.extract(text)
        score_now = self.plan.finish(sample.index, extracted, sample.tokens,
                                     truncated=sample.truncated,
                                     cumulative_logprob=sample.cumulative_logprob,
                                     forced=sample.forced, probed=sample.probed,
                                     confidence=sample.confidence,
                                     low_confidence=sample.low_confidence)  # fmt: skip
        sample.answer = self.plan.finished[-1].answer  # the plan's: a truncation abstains
        return score_now

    async def _score(self, sample: Sample) -> None:
        """Score one finished sample as it finishes; on failure the plan stops scoring."""
        verifier = self.config.verifier_for(self.budget.tier)
        assert verifier is not None  # the plan scores only when the tier has a verifier
        try:
            async with asyncio.timeout(verifier.timeout_seconds):
                score = await self.executor.score(self, verifier, sample)
        except (UpstreamError, TimeoutError) as exc:
            logger.warning("verifier unavailable, drawing the rest without it: %s", exc,
                           extra={"request_id": self.spec.request_id})  # fmt: skip
            self.plan.verifier_unavailable()
            return
        self.plan.record_score(sample.index, score)

    async def _execute(self, sink: EventSink | None) -> RequestResult:
        """Samples in the plan's waves until it stops or the deadline passes (2+ samples)."""
        if self.budget.max_samples == 1:
            return await self._execute_single(sink)
        plan = self.plan
        running: dict[asyncio.Task[Sample], Sample] = {}
        try:
            while not plan.stopped:
                for index in plan.launch():
                    sample = Sample(index=index)
                    self.samples.append(sample)
                    running[asyncio.ensure_future(self._run_sample(sample, sink))] = sample
                if not running:
                    break
                done, _ = await asyncio.wait(running, timeout=max(self.remaining_seconds(), 0),
                                             return_when=asyncio.FIRST_COMPLETED)  # fmt: skip
                if not done:
                    plan.deadline()
                    break
                for task in done:
                    sample = running.pop(task)
                    self.running_tokens -= sample.tokens
                    error = task.exception()
                    if error is not None:
                        action = plan.fail(sample.index)
                        if action is FailureAction.GIVE_UP:
                            raise error
                        if action is FailureAction.STOP:
                            break
                        continue
                    if self._finish_sample(sample):
                        await self._score(sample)
                    plan.decide()
                    if self.escalate_when_contested and plan.contested:
                        raise EscalationNeededError(self.budget.escalate_to)
                    if sink is not None:
                        sink.progress(self._progress())
                    if plan.stopped:
                        break
        finally:
            for task in running:
                task.cancel()
            if running:
                await asyncio.gather(*running, return_exceptions=True)
                self.running_tokens = 0
        if not plan.finished:
            if plan.outcome is Outcome.DEADLINE:
                raise DeadlineExceededError("the request deadline passed before any sample "
                                            "finished")  # fmt: skip
            raise UpstreamError("every sample failed on the inference server")
        return await self._answer()

    def _progress(self) -> dict[str, object]:
        state = self.plan.state
        return {"event": "progress", "samples_launched": self.plan.launched + self.plan.failed,
                "samples_completed": state.samples, "leader_votes": state.leader_votes,
                "votes": state.votes}  # fmt: skip

    async def _answer(self) -> RequestResult:
        """Score what best-of-n still needs, let the plan choose, and build the result."""
        plan = self.plan
        verifier = self.config.verifier_for(self.budget.tier)
        reachable = True
        if (self.budget.strategy is Strategy.BEST_OF_N and verifier is not None
                and any(f.answer is not None for f in plan.finished)):  # fmt: skip
            reachable = self.executor.pool.pick() is not None
            if reachable and not plan.verifier_failed:
                await self.executor.score_unscored(self, verifier)
        choice = plan.choose(verifier.model if verifier is not None else None,
                             verifier_reachable=reachable)  # fmt: skip
        chosen = self.samples_by_index[plan.finished[choice.position].index]
        used = sum(s.tokens for s in self.samples)
        report = plan.report(
            choice, difficulty=self.estimate.score,
            difficulty_source="hint" if self.spec.difficulty_hint is not None else "estimate",
            tokens_used=used, answered_by=self.config.service,
        )  # fmt: skip
        if plan.stopped_early:
            self.executor.metrics.early_stops.inc()
        length = chosen.truncated or (chosen.finish_reason is None and chosen.answer is None
                                      and not chosen.forced
                                      and chosen.tokens
                                      >= self.budget.sample_max_tokens(chosen.index))
        return RequestResult(
            text=chosen.text, finish_reason="length" if length else "stop",
            prompt_tokens=self.spec.prompt_tokens, completion_tokens=used,
            reasoning_tokens=used - chosen.tokens, report=report,
        )  # fmt: skip

    @property
    def samples_by_index(self) -> dict[int, Sample]:
        return {s.index: s for s in self.samples}

    @property
    def outcome(self) -> str:
        """How sampling ended: ``ok``, ``deadline`` or ``upstream-failures``."""
        return self.plan.outcome.value


@dataclass
class Executor:
    """Shared state of a router process: config, pool, admission, metrics, live requests."""

    config: RouterConfig
    pool: EndpointPool
    admission: Admission
    metrics: RouterMetrics
    estimator: DifficultyEstimator | None = None  # None: the config's (budgets.estimator)
    prior: LearnedPrior | None = None  # learned from finished requests (``prior``)
    clock: Callable[[], float] = time.monotonic
    live: set[RequestRun] = field(default_factory=set)
    queued: int = 0
    inflight_samples: int = 0
    _random: random.Random = field(default_factory=random.Random)
    _gate: ConfidenceGate | None = None
    _demand: DemandLearner | None = None
    _offered: OfferedLoad | None = None

    def __post_init__(self) -> None:
        self.metrics.bind_live_state(lambda: self.queued, lambda: self.inflight_samples,
                                     self.demand_tokens)  # fmt: skip

    def demand_tokens(self) -> float:
        return sum(run.demand_tokens() for run in list(self.live))

    def confidence_gate(self, config: RouterConfig) -> ConfidenceGate:
        """The service's confidence gate under ``config``: its window survives a config
        change that keeps the window's size."""
        knobs = config.confidence
        if self._gate is None or self._gate.config.window != knobs.window:
            self._gate = ConfidenceGate(knobs)
        self._gate.config = knobs
        return self._gate

    def demand_learner(self, config: RouterConfig) -> DemandLearner | None:
        """The service's demand learner under ``config`` (None: learning off); it starts
        over when the configured prior, the tiers or the learning knobs change."""
        knobs, prior = config.demand_learning, config.budgets.demand_model
        if not knobs.enabled:
            return None
        tiers = {tier.name for tier in config.budgets.tiers}
        learner = self._demand
        if (learner is None or learner.prior != prior or learner.config != knobs
                or not learner.tiers() <= tiers):  # fmt: skip
            self._demand = learner = DemandLearner(prior, knobs)
        return learner

    def demand_model(self, config: RouterConfig, tier: str) -> DemandModel:
        """``tier``'s demand model: the learned one, or the configured prior."""
        learner = self.demand_learner(config)
        return config.budgets.demand_model if learner is None else learner.model(tier)

    def base_seed(self, spec: RequestSpec) -> int:
        return spec.seed if spec.seed is not None else self._random.getrandbits(31)

    def offered_load(self, config: RouterConfig) -> OfferedLoad:
        """The offered load (``offered``), averaged over ``capacity.horizonSeconds``; a
        config change to the horizon starts a new average."""
        window = config.capacity.horizon_seconds
        if self._offered is None or self._offered.window_seconds != window:
            self._offered = OfferedLoad(window)
        return self._offered

    def load(self, config: RouterConfig) -> LoadState:
        """The pool's load for budget shrinking (only matters at the replica ceiling)."""
        capacity = config.capacity
        if not capacity.at_ceiling:
            return LoadState.idle()
        return LoadState.from_demand(
            demand_tokens=self.demand_tokens(),
            capacity_tokens_per_second=capacity.tokens_per_second,
            horizon_seconds=capacity.horizon_seconds, at_ceiling=True,
            offered_tokens_per_second=self.offered_load(config).tokens_per_second(
                self.clock()),
        )  # fmt: skip

    def plan(self, spec: RequestSpec) -> RequestRun:
        """Estimate, assign the budget (``PolicyError`` for impossible caps), make the run."""
        config = self.config
        prior = self.prior if self.prior is not None and self.prior.warm else None
        if spec.difficulty_hint is not None or self.estimator is not None:
            prior = None  # the client's hint, or an estimator given on purpose, wins
        if spec.difficulty_hint is not None:
            estimate = DifficultyEstimate(score=spec.difficulty_hint)
        elif prior is not None:
            estimate = prior.estimate(spec.problem)
        else:
            estimator = self.estimator or config.budgets.feature_estimator()
            estimate = estimator.estimate(spec.problem)
        learner = self.demand_learner(config)
        learned = learner.models() if learner is not None else None

        def budget_at(load: LoadState) -> Budget:
            return assign_budget(estimate, spec.effort, load, config.budgets,
                                 requested_max_tokens=spec.max_tokens,
                                 requested_max_samples=spec.max_samples, demand=learned,
                                 rule_bar=config.stopping.log_odds_bar())  # fmt: skip

        budget = budget_at(self.load(config))
        self.offered_load(config).offer(self.clock(), budget,
                                        lambda: budget_at(LoadState.idle()))  # fmt: skip
        budget = override_strategy(budget, spec.strategy, config)
        run = RequestRun(self, spec, estimate, budget, config)
        if prior is not None:
            run.extra_sample_ratio = prior.expected_extra_ratio(estimate.score)
        return run

    def learn(self, run: RequestRun) -> None:
        """Teach the demand learner and the prior what a finished request's samples showed
        (text hashed, dropped)."""
        if run.plan.outcome is not Outcome.OK:
            return
        learner = self.demand_learner(run.config)
        if learner is not None:
            learner.observe(run.plan)
        if self.prior is None:
            return
        observation = observe_plan(run.plan)
        if observation is not None:
            self.prior.learn(run.spec.problem, observation)

    async def score(self, run: RequestRun, verifier: VerifierConfig, sample: Sample) -> float:
        """The verifier's score of one sample (``UpstreamError`` when none can answer)."""
        endpoint = self.pool.pick()
        if endpoint is None:
            raise UpstreamError("no inference replica to run the verifier on")
        return await endpoint.backend.score(verifier.model, run.spec.prompt + "\n\n" + sample.text,
                                            timeout_seconds=verifier.timeout_seconds)

    async def score_unscored(self, run: RequestRun, verifier: VerifierConfig) -> None:
        """Score, at once, the finished samples the verifier has not scored yet; when it
        cannot answer in time the plan falls back to a vote."""
        samples = run.samples_by_index
        missing = [samples[f.index] for f in run.plan.unscored()]
        try:
            async with asyncio.timeout(verifier.timeout_seconds):
                scored = await asyncio.gather(*(self.score(run, verifier, s) for s in missing))
        except (UpstreamError, TimeoutError) as exc:
            logger.warning("verifier unavailable, falling back to vote: %s", exc)
            run.plan.verifier_unavailable()
            return
        for sample, value in zip(missing, scored, strict=True):
            run.plan.record_score(sample.index, value)

    def update(self, config: RouterConfig) -> None:
        """A new config: later requests use it; running ones keep theirs."""
        self.config = config
        self.admission.update(config.admission)

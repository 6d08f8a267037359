"""Runs one request: budget, admission, samples in waves, early stop, aggregation.

Role: the adapter that strings the pure policy together with the I/O. For each request
``Executor.plan`` estimates difficulty (or takes the client's hint), with the weights of
the config's ``budgets.estimator`` unless an estimator was given, and assigns a budget
(``budgets.assign_budget``, load-aware when the pool is at its replica ceiling), and a
``RequestRun`` then

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
   finished so far, or fails with 504 when there are none.

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
from dataclasses import dataclass, field
from typing import Protocol

from .admission import Admission
from .aggregate import StopDecision, StopReason, Tally, plan_next_wave, should_stop, tally
from .answers import get_extractor
from .api import (
    BudgetReport,
    PonderReport,
    RequestResult,
    SampleCounts,
    VoteCount,
    chunk_tokens,
)
from .budgets import (
    Budget,
    LoadState,
    Strategy,
    assign_budget,
    expected_request_tokens,
)
from .difficulty import DifficultyEstimate, DifficultyEstimator
from .endpoints import Endpoint, EndpointPool, NoEndpointError
from .errors import DeadlineExceededError, UpstreamError
from .metrics import RouterMetrics
from .settings import RouterConfig, VerifierConfig
from .triton import EndpointUnavailableError, SampleParams, SampleStream, SampleTimeoutError

logger = logging.getLogger(__name__)

_EARLY = frozenset({StopReason.DECIDED, StopReason.CONFIDENT, StopReason.WINDOW_AGREED,
                    StopReason.AHEAD, StopReason.CONVERGED, StopReason.VERIFIED})  # fmt: skip
_REVISE_SUFFIX = (
    "\n\nA previous attempt at this problem:\n{previous}\n\nReview the attempt above, "
    "correct any mistake, and give the final answer in \\boxed{{}}."
)


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

    @property
    def text(self) -> str:
        return "".join(self.chunks)


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
        self.outcome = "ok"
        self.escalated_tokens = 0
        self.scores: dict[int, float] = {}  # verifier scores by sample index, as they come
        self.verifier_failed = False

    @property
    def budget_tokens(self) -> int:
        return self.budget.max_tokens_per_sample * self.budget.max_samples

    def remaining_seconds(self) -> float:
        return self.deadline - self.executor.clock()

    def demand_tokens(self) -> float:
        """Expected tokens this request still generates (its share of the demand gauge)."""
        model = self.config.budgets.demand_model
        expected = expected_request_tokens(self.budget, model,
                                           samples_finished=self.finished_samples)  # fmt: skip
        return max(expected - self.running_tokens, 0.0)

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
            max_tokens=self.budget.max_tokens_per_sample, temperature=spec.temperature,
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
            endpoint = ex.pool.pick(frozenset(tried)) or ex.pool.pick()
            if endpoint is None:
                raise NoEndpointError("no inference replica is available",
                                      retry_after_seconds=5)  # fmt: skip
            tried.add(endpoint.address)
            try:
                await self._stream_on(endpoint, sample, prompt, params, expected, forward)
                break
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
        return sample

    async def _stream_on(self, endpoint: Endpoint, sample: Sample, prompt: str,
                         params: SampleParams, expected: float,
                         forward: EventSink | None) -> None:  # fmt: skip
        ex = self.executor
        self._set_queued(False)
        timeout = max(min(self.config.admission.sample_timeout_seconds,
                          self.remaining_seconds()), 0.001)  # fmt: skip
        endpoint.start(expected)
        ex.inflight_samples += 1
        stream: SampleStream | None = None
        done = False
        try:
            stream = endpoint.backend.stream_sample(prompt, params, timeout_seconds=timeout,
                                                    stream=forward is not None)  # fmt: skip
            async for chunk in stream:
                if not chunk:
                    continue
                if self.first_token_at is None:
                    self.first_token_at = ex.clock()
                    ex.metrics.time_to_first_token.observe(self.first_token_at - self.started_at)
                tokens = chunk_tokens(chunk)
                sample.tokens += tokens
                self.running_tokens += tokens
                sample.chunks.append(chunk)
                if forward is not None:
                    forward.token(chunk)
            done = True
        finally:
            if stream is not None and not done:
                stream.cancel()  # a failure, a stop or a client gone: Triton stops the sample
            ex.inflight_samples -= 1
            ex.pool.release(endpoint, expected)

    # -- the wave loop -----------------------------------------------------------------

    async def execute(self, sink: EventSink | None = None) -> RequestResult:
        """Run the samples and aggregate (see the module docstring); always ``finish``es."""
        try:
            return await self._execute(sink)
        finally:
            self.finish()

    async def _execute_single(self, sink: EventSink | None) -> RequestResult:
        """One sample, awaited in place: the common case needs no task and no waves."""
        sample = Sample(index=0)
        self.samples.append(sample)
        try:
            async with asyncio.timeout(max(self.remaining_seconds(), 0)):
                await self._run_sample(sample, sink)
        except (TimeoutError, SampleTimeoutError) as exc:
            # The sample's gRPC deadline is capped by the request's, so it may fire first:
            # a sample timeout at the request deadline is the request timing out (504).
            if isinstance(exc, SampleTimeoutError) and self.remaining_seconds() > 0.25:
                raise
            self.outcome = "deadline"
            raise DeadlineExceededError("the request deadline passed before the sample "
                                        "finished") from exc  # fmt: skip
        finally:
            self.running_tokens = 0
        sample.finished = True
        sample.answer = get_extractor(self.config.extractor)(sample.text)
        self.finished_samples = 1
        # One vote needs no normalised key: the answer stands for itself.
        key = sample.answer
        state = Tally(keys=(key,), counts=((key, 1),) if key is not None else ())
        decision = StopDecision(stop=True, reason=StopReason.BUDGET_EXHAUSTED)
        return await self._aggregate([sample], state, decision, 1, 0, 0)

    def _verifier_on_the_way(self) -> VerifierConfig | None:
        """The verifier that scores samples as they finish: best-of-n under a stop rule
        with a ``score_threshold``, when the tier has a verifier."""
        if self.budget.strategy is not Strategy.BEST_OF_N:
            return None
        if self.config.stopping.score_threshold is None:
            return None
        return self.config.verifier_for(self.budget.tier)

    async def _score_as_it_finishes(self, verifier: VerifierConfig, sample: Sample) -> None:
        """Score one finished sample (``self.scores``); on failure stop scoring."""
        try:
            async with asyncio.timeout(verifier.timeout_seconds):
                self.scores[sample.index] = await self.executor.score(self, verifier, sample)
        except (UpstreamError, TimeoutError) as exc:
            logger.warning("verifier unavailable, drawing the rest without it: %s", exc,
                           extra={"request_id": self.spec.request_id})  # fmt: skip
            self.verifier_failed = True

    async def _execute(self, sink: EventSink | None) -> RequestResult:
        """Samples in waves until ``should_stop``, the budget or the deadline (2+ samples)."""
        if self.budget.max_samples == 1:
            return await self._execute_single(sink)
        budget, rule = self.budget, self.config.stopping
        verifier = self._verifier_on_the_way()
        if verifier is None and rule.score_threshold is not None:
            rule = rule.model_copy(update={"score_threshold": None})  # nothing to score with
        extract = get_extractor(self.config.extractor)
        running: dict[asyncio.Task[Sample], Sample] = {}
        completed: list[Sample] = []
        state = tally(())
        launched = failed = 0
        decision = StopDecision(stop=False, reason=StopReason.CONTINUE)
        cancelled = 0
        try:
            while True:
                for _ in range(plan_next_wave(budget, launched, state, rule)):
                    sample = Sample(index=launched + failed)
                    self.samples.append(sample)
                    running[asyncio.ensure_future(self._run_sample(sample, sink))] = sample
                    launched += 1
                if not running:
                    break
                done, _ = await asyncio.wait(running, timeout=max(self.remaining_seconds(), 0),
                                             return_when=asyncio.FIRST_COMPLETED)  # fmt: skip
                if not done:
                    decision = StopDecision(stop=True, reason=StopReason.CONTINUE)
                    self.outcome = "deadline"
                    break
                for task in done:
                    sample = running.pop(task)
                    self.running_tokens -= sample.tokens
                    error = task.exception()
                    if error is not None:
                        failed += 1
                        launched -= 1  # a failed sample is replaced, up to half the budget
                        if failed < budget.max_samples // 2:
                            continue
                        if not completed:
                            raise error
                        self.outcome = "upstream-failures"
                        decision = StopDecision(stop=True, reason=StopReason.CONTINUE)
                        break
                    sample.finished = True
                    sample.answer = extract(sample.text)
                    completed.append(sample)
                    self.finished_samples += 1
                    state = state.add(sample.answer)
                    if verifier is not None and sample.answer is not None:
                        await self._score_as_it_finishes(verifier, sample)
                        if self.verifier_failed:  # draw the rest at once, vote at the end
                            verifier = None
                            rule = rule.model_copy(update={"score_threshold": None})
                    best = max(self.scores.values(), default=None)
                    decision = should_stop(state, rule, budget, best_score=best)
                    if sink is not None:
                        sink.progress(self._progress(launched, state))
                    if decision.stop:
                        break
                if decision.stop:
                    break
        finally:
            cancelled = len(running)
            for task in running:
                task.cancel()
            if running:
                await asyncio.gather(*running, return_exceptions=True)
                self.running_tokens = 0
        if not completed:
            if self.outcome == "deadline":
                raise DeadlineExceededError("the request deadline passed before any sample "
                                            "finished")  # fmt: skip
            raise UpstreamError("every sample failed on the inference server")
        return await self._aggregate(completed, state, decision, launched, cancelled, failed)

    def _progress(self, launched: int, state: Tally) -> dict[str, object]:
        return {"event": "progress", "samples_launched": launched,
                "samples_completed": state.samples, "leader_votes": state.leader_votes,
                "votes": state.votes}  # fmt: skip

    async def _aggregate(self, completed: list[Sample], state: Tally, decision: StopDecision,
                         launched: int, cancelled: int, failed: int) -> RequestResult:  # fmt: skip
        budget = self.budget
        chosen, aggregation = completed[0], budget.strategy.value
        if budget.strategy is Strategy.REVISE:
            chosen = completed[-1]
        elif budget.strategy is Strategy.BEST_OF_N:
            chosen, aggregation = await self.executor.pick_best(self, completed, state)
        elif state.leader is not None:
            index = state.first_index(state.leader)
            chosen = completed[index if index is not None else 0]
        early = decision.reason in _EARLY and state.samples < budget.max_samples
        stop_reason = decision.reason.value if self.outcome == "ok" else self.outcome
        used = sum(s.tokens for s in self.samples)
        report = PonderReport(
            difficulty=round(self.estimate.score, 4),
            difficulty_source="hint" if self.spec.difficulty_hint is not None else "estimate",
            tier=budget.tier, strategy=budget.strategy.value,
            budget=BudgetReport(max_tokens_per_sample=budget.max_tokens_per_sample,
                                max_samples=budget.max_samples, shrunk=budget.shrunk,
                                shrink_reason=budget.shrink_reason),
            samples=SampleCounts(launched=launched + failed, completed=len(completed),
                                 cancelled=cancelled, failed=failed),
            tokens_used=used, stopped_early=early, stop_reason=stop_reason,
            votes=[VoteCount(answer=_display(completed, state, key), votes=n)
                   for key, n in state.counts],
            abstentions=state.abstentions, answer=chosen.answer, aggregation=aggregation,
            answered_by=self.config.service,
        )  # fmt: skip
        if early:
            self.executor.metrics.early_stops.inc()
        length = chosen.answer is None and chosen.tokens >= budget.max_tokens_per_sample
        return RequestResult(
            text=chosen.text, finish_reason="length" if length else "stop",
            prompt_tokens=self.spec.prompt_tokens, completion_tokens=used,
            reasoning_tokens=used - chosen.tokens, report=report,
        )  # fmt: skip


def _display(completed: list[Sample], state: Tally, key: str) -> str:
    """An answer as first written by a sample (the tally holds normalised keys)."""
    index = state.first_index(key)
    answer = completed[index].answer if index is not None else None
    return answer if answer is not None else key


@dataclass
class Executor:
    """Shared state of a router process: config, pool, admission, metrics, live requests."""

    config: RouterConfig
    pool: EndpointPool
    admission: Admission
    metrics: RouterMetrics
    estimator: DifficultyEstimator | None = None  # None: the config's (budgets.estimator)
    clock: Callable[[], float] = time.monotonic
    live: set[RequestRun] = field(default_factory=set)
    queued: int = 0
    inflight_samples: int = 0
    _random: random.Random = field(default_factory=random.Random)

    def __post_init__(self) -> None:
        self.metrics.bind_live_state(lambda: self.queued, lambda: self.inflight_samples,
                                     self.demand_tokens)  # fmt: skip

    def demand_tokens(self) -> float:
        return sum(run.demand_tokens() for run in list(self.live))

    def base_seed(self, spec: RequestSpec) -> int:
        return spec.seed if spec.seed is not None else self._random.getrandbits(31)

    def load(self, config: RouterConfig) -> LoadState:
        """The pool's load for budget shrinking (only matters at the replica ceiling)."""
        capacity = config.capacity
        if not capacity.at_ceiling:
            return LoadState.idle()
        return LoadState.from_demand(
            demand_tokens=self.demand_tokens(),
            capacity_tokens_per_second=capacity.tokens_per_second,
            horizon_seconds=capacity.horizon_seconds, at_ceiling=True,
        )  # fmt: skip

    def plan(self, spec: RequestSpec) -> RequestRun:
        """Estimate, assign the budget (``PolicyError`` for impossible caps), make the run."""
        config = self.config
        if spec.difficulty_hint is not None:
            estimate = DifficultyEstimate(score=spec.difficulty_hint)
        else:
            estimator = self.estimator or config.budgets.feature_estimator()
            estimate = estimator.estimate(spec.problem)
        budget = assign_budget(estimate, spec.effort, self.load(config), config.budgets,
                               requested_max_tokens=spec.max_tokens,
                               requested_max_samples=spec.max_samples)  # fmt: skip
        budget = override_strategy(budget, spec.strategy, config)
        return RequestRun(self, spec, estimate, budget, config)

    async def score(self, run: RequestRun, verifier: VerifierConfig, sample: Sample) -> float:
        """The verifier's score of one sample (``UpstreamError`` when none can answer)."""
        endpoint = self.pool.pick()
        if endpoint is None:
            raise UpstreamError("no inference replica to run the verifier on")
        return await endpoint.backend.score(verifier.model, run.spec.prompt + "\n\n" + sample.text,
                                            timeout_seconds=verifier.timeout_seconds)

    async def pick_best(self, run: RequestRun, completed: list[Sample],
                        state: Tally) -> tuple[Sample, str]:  # fmt: skip
        """Best-of-n by the tier's verifier (``RouterConfig.verifier_for``), scoring the
        samples not scored as they finished (``RequestRun.scores``); majority vote when
        there is none or it cannot answer. The reason returned names the model."""
        fallback = completed[state.first_index(state.leader) or 0] if state.leader else completed[0]
        verifier = run.config.verifier_for(run.budget.tier)
        if verifier is None:
            return fallback, "vote (best-of-n without a verifier configured)"
        candidates = [s for s in completed if s.answer is not None]
        if not candidates or self.pool.pick() is None:
            return fallback, "vote (best-of-n: nothing for the verifier to score)"
        if run.verifier_failed:
            return fallback, f"vote (verifier {verifier.model} unavailable)"
        missing = [s for s in candidates if s.index not in run.scores]
        try:
            async with asyncio.timeout(verifier.timeout_seconds):
                scored = await asyncio.gather(*(self.score(run, verifier, s) for s in missing))
        except (UpstreamError, TimeoutError) as exc:
            logger.warning("verifier unavailable, falling back to vote: %s", exc)
            return fallback, f"vote (verifier {verifier.model} unavailable)"
        scores = {**run.scores, **{s.index: v for s, v in zip(missing, scored, strict=True)}}
        best = max(range(len(candidates)), key=lambda i: (scores[candidates[i].index], -i))
        return candidates[best], f"best-of-n (verifier {verifier.model})"

    def update(self, config: RouterConfig) -> None:
        """A new config: later requests use it; running ones keep theirs."""
        self.config = config
        self.admission.update(config.admission)

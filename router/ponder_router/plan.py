"""One request's decisions, as a pure synchronous state machine: ``RequestPlan``.

Role: the single place where a request decides how many samples to launch, what a
finished or failed sample changes, when to stop and why, which answer it gives and what
its ``ponder`` report says. Whoever moves the samples drives it:

- the live ``executor`` (streaming, cancellation, retries, deadlines: the I/O only);
- ``replay_request`` below, for samples recorded in a data set (the offline evaluator's
  reference, and the simulator's), in the order the samples finish.

Neighbours: ``aggregate`` holds the stop rules and the wave rule (``should_stop``,
``plan_next_wave``) that this module applies; ``budgets`` gives the ``Budget``. Pure: no
I/O, no clock, no logging.

The life of a request::

    plan = RequestPlan(budget, rule, scores_as_they_finish=...)
    while not plan.stopped:
        for index in plan.launch():                   # the next wave's sample indices
            ...start sample index...
        ...a sample ends...
        plan.fail(index)                              # -> FailureAction
        # or
        if plan.finish(index, answer, tokens):        # True: score it now
            plan.record_score(index, score)           # or plan.verifier_unavailable()
        plan.decide()                                 # -> StopDecision
    plan.deadline()                                   # when time runs out first
    pick = plan.choose(verifier_model)                # which sample answers, and how
    report = plan.report(...)

Rules it applies beyond ``aggregate``: a truncated sample (cut off at ``max_tokens``)
abstains whatever its text says and is counted in the report's ``samples.truncated`` (one
whose answer was forced at the cap votes, counted in ``samples.forced``, and so does one
stopped once its probes agreed, counted in ``samples.probed``); a
failed sample is replaced (it does not count as launched) while fewer than half the
budget's samples have failed; past that the request stops with what it has
(``upstream-failures``), or fails when it has nothing. A ``best-of-n`` request scores
each sample as it finishes only when the rule has a ``score_threshold`` and a verifier
can score; otherwise the threshold is dropped (nothing could reach it) and the samples
are scored at the end. The answer is the vote's leader; the last sample's for
``revise``; for ``best-of-n`` the best-scored sample with an answer (ties: the earlier),
or the leader when no verifier is configured, there is nothing to score, or the verifier
failed. With the service's ``confidence.ConfidenceGate`` (``confidence``), each finished
sample's confidence weighs its vote when weighting is on (the stop rule and the leader
then read the weighted tally, ``confidence.should_stop_weighted``) and joins the gate's
window; a sample the executor cancelled for low confidence abstains (``samples.
low_confidence``), and ``may_cancel`` holds off cancelling until the request has a vote.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from .aggregate import StopDecision, StopReason, StopRule, Tally, plan_next_wave, should_stop
from .answers import EqualityMode
from .api import BudgetReport, PonderReport, SampleCounts, VoteCount
from .budgets import Budget, Strategy
from .confidence import ConfidenceGate, should_stop_weighted, weighted_leader

EARLY_REASONS = frozenset({
    StopReason.DECIDED, StopReason.CONFIDENT, StopReason.WINDOW_AGREED, StopReason.AHEAD,
    StopReason.FIRST_WAVE_AGREED, StopReason.CONVERGED, StopReason.VERIFIED,
})  # fmt: skip
"""Stop reasons that end a request before its budget is spent."""


class Outcome(StrEnum):
    """How a request's sampling ended, beside the stop rule's reason."""

    OK = "ok"
    DEADLINE = "deadline"
    UPSTREAM_FAILURES = "upstream-failures"


class FailureAction(StrEnum):
    """What a failed sample leads to."""

    REPLACE = "replace"  # launch another in its place (the next ``launch``)
    STOP = "stop"  # too many failures: answer from the finished samples
    GIVE_UP = "give-up"  # too many failures and nothing finished: the request fails


@dataclass(frozen=True, slots=True)
class FinishedSample:
    """A finished sample as the plan saw it."""

    index: int
    answer: str | None
    tokens: int
    truncated: bool = False
    """Cut off at ``max_tokens`` (the server's ``finish_reason: length``); never a vote."""
    cumulative_logprob: float | None = None
    """The model server's log-probability of the sample's text, when it sends one."""
    forced: bool = False
    """Cut off at ``max_tokens``, then answered at the answer cue (budget forcing): a vote."""
    probed: bool = False
    """Stopped once its probes agreed (probe exits); it votes with the probed answer."""
    confidence: float | None = None
    """The sample's confidence (a probability; ``confidence.sample_confidence`` live)."""
    low_confidence: bool = False
    """Cancelled while running for low confidence (``confidence.ConfidenceGate``): abstains."""


@dataclass(frozen=True, slots=True)
class Choice:
    """The sample that answers (its position in ``RequestPlan.finished``) and how it won."""

    position: int
    aggregation: str


@dataclass
class RequestPlan:
    """One request's decisions (see the module docstring)."""

    budget: Budget
    rule: StopRule
    scores_as_they_finish: bool = False
    equality: EqualityMode = "numeric"
    launched: int = 0  # samples launched and not failed
    failed: int = 0
    finished: list[FinishedSample] = field(default_factory=list)
    state: Tally = field(default_factory=lambda: Tally(keys=(), counts=()))
    scores: dict[int, float] = field(default_factory=dict)  # verifier scores by index
    verifier_failed: bool = False
    decision: StopDecision = field(default=StopDecision(stop=False, reason=StopReason.CONTINUE))
    outcome: Outcome = Outcome.OK
    confidence: ConfidenceGate | None = None  # the service's; None: confidence unused
    weights: list[float] = field(default_factory=list)  # each finished sample's vote weight

    def __post_init__(self) -> None:
        if not self.scores_as_they_finish and self.rule.score_threshold is not None:
            self.rule = self.rule.model_copy(update={"score_threshold": None})

    @classmethod
    def for_request(cls, budget: Budget, rule: StopRule, *, can_score: bool,
                    equality: EqualityMode = "numeric") -> RequestPlan:  # fmt: skip
        """The plan for ``budget``: it scores samples as they finish when it is best-of-n,
        the rule has a ``score_threshold`` and ``can_score`` (a verifier is configured)."""
        scoring = (budget.strategy is Strategy.BEST_OF_N and rule.score_threshold is not None
                   and can_score)  # fmt: skip
        return cls(budget, rule, scores_as_they_finish=scoring, equality=equality)

    # -- what happens ------------------------------------------------------------------

    @property
    def stopped(self) -> bool:
        return self.decision.stop

    @property
    def contested(self) -> bool:
        """Running, and a finished sample disagrees with the leader or abstained: the
        evidence an escalating envelope acts on. Checked after every sample of a tier with
        first-wave agreement, it first holds within the first wave (an agreeing one stops)."""
        return not self.stopped and self.state.leader_votes < self.state.samples

    def launch(self, count: int | None = None) -> range:
        """The indices of the samples to launch now: the next wave (``plan_next_wave``),
        or ``count`` of them (the sequential baselines); none once stopped. A sample's
        index counts every sample launched before it, failed ones included."""
        if self.stopped:
            return range(0)
        if count is None:
            count = plan_next_wave(self.budget, self.launched, self.state, self.rule)
        first = self.launched + self.failed
        self.launched += count
        return range(first, first + count)

    @property
    def running(self) -> int:
        """Samples launched that have neither finished nor failed."""
        return self.launched - len(self.finished)

    def finish(self, index: int, answer: str | None, tokens: int, *, truncated: bool = False,
               cumulative_logprob: float | None = None, forced: bool = False,
               probed: bool = False, confidence: float | None = None,
               low_confidence: bool = False) -> bool:  # fmt: skip
        """A sample finished with ``answer`` (``None``: it abstains; a ``truncated`` or
        ``low_confidence`` one always abstains; a ``forced`` or ``probed`` one votes) and
        ``confidence`` (a probability; its vote's weight when the gate weighs votes). True
        when the verifier should score it now (then ``record_score`` or
        ``verifier_unavailable``)."""
        if truncated or low_confidence:
            answer = None
        self.finished.append(FinishedSample(index, answer, tokens, truncated, cumulative_logprob,
                                            forced, probed, confidence,
                                            low_confidence))  # fmt: skip
        self.state = self.state.add(answer, self.equality)
        if self.confidence is not None:
            self.weights.append(self.confidence.weight(confidence))
            self.confidence.observe(confidence)
        return self.scores_as_they_finish and not self.verifier_failed and answer is not None

    def record_score(self, index: int, score: float) -> None:
        self.scores[index] = score

    def verifier_unavailable(self) -> None:
        """The verifier failed: draw the rest without it and vote at the end."""
        self.verifier_failed = True
        if self.scores_as_they_finish:
            self.scores_as_they_finish = False
            self.rule = self.rule.model_copy(update={"score_threshold": None})

    def decide(self) -> StopDecision:
        """Whether to stop after the samples finished so far (``aggregate.should_stop``)."""
        best = max(self.scores.values(), default=None)
        if self.weighted:
            self.decision = should_stop_weighted(self.state, self.weights, self.rule,
                                                 self.budget, best_score=best)  # fmt: skip
        else:
            self.decision = should_stop(self.state, self.rule, self.budget, best_score=best)
        return self.decision

    @property
    def may_cancel(self) -> bool:
        """The confidence gate may cancel a running sample: it is on and the request already
        holds a vote (so a question on which every sample is unconfident still answers)."""
        return (self.confidence is not None and self.confidence.config.cancel
                and self.state.votes > 0)  # fmt: skip

    @property
    def weighted(self) -> bool:
        """Votes are weighted by confidence (``ConfidenceConfig.weighting``)."""
        return self.confidence is not None and self.confidence.config.weighting

    def fail(self, index: int) -> FailureAction:
        """A sample failed (after the executor's own retry)."""
        del index  # failures are counted, not kept
        self.failed += 1
        self.launched -= 1
        if self.failed < self.budget.max_samples // 2:
            return FailureAction.REPLACE
        if not self.finished:
            return FailureAction.GIVE_UP
        self.outcome = Outcome.UPSTREAM_FAILURES
        self.decision = StopDecision(stop=True, reason=StopReason.CONTINUE)
        return FailureAction.STOP

    def deadline(self) -> None:
        """The request's deadline passed: stop where it stands."""
        self.outcome = Outcome.DEADLINE
        self.decision = StopDecision(stop=True, reason=StopReason.CONTINUE)

    # -- the answer --------------------------------------------------------------------

    def unscored(self) -> list[FinishedSample]:
        """Finished samples with an answer that the verifier has not scored."""
        return [s for s in self.finished if s.answer is not None and s.index not in self.scores]

    def _leader_position(self) -> int:
        leader = weighted_leader(self.state, self.weights) if self.weighted else self.state.leader
        if leader is None:
            return 0
        position = self.state.first_index(leader)
        return position if position is not None else 0

    def choose(self, verifier_model: str | None, *, verifier_reachable: bool = True) -> Choice:
        """The answering sample. For best-of-n, call after scoring ``unscored()`` (or
        ``verifier_unavailable``); ``verifier_model`` None: none is configured."""
        if not self.finished:
            raise ValueError("no finished sample to choose from")
        strategy = self.budget.strategy
        if strategy is Strategy.REVISE:
            return Choice(len(self.finished) - 1, strategy.value)
        if strategy is not Strategy.BEST_OF_N:
            return Choice(self._leader_position(), strategy.value)
        vote = self._leader_position()
        if verifier_model is None:
            return Choice(vote, "vote (best-of-n without a verifier configured)")
        candidates = [i for i, s in enumerate(self.finished) if s.answer is not None]
        if not candidates or not verifier_reachable:
            return Choice(vote, "vote (best-of-n: nothing for the verifier to score)")
        if self.verifier_failed or any(self.finished[i].index not in self.scores
                                       for i in candidates):  # fmt: skip
            return Choice(vote, f"vote (verifier {verifier_model} unavailable)")
        best = max(candidates, key=lambda i: (self.scores[self.finished[i].index], -i))
        return Choice(best, f"best-of-n (verifier {verifier_model})")

    @property
    def truncated(self) -> int:
        """Finished samples that were cut off at ``max_tokens``."""
        return sum(s.truncated for s in self.finished)

    @property
    def forced(self) -> int:
        """Finished samples whose answer was forced at the cap."""
        return sum(s.forced for s in self.finished)

    @property
    def probed(self) -> int:
        """Finished samples stopped once their probes agreed."""
        return sum(s.probed for s in self.finished)

    @property
    def low_confidence(self) -> int:
        """Samples cancelled while running for low confidence."""
        return sum(s.low_confidence for s in self.finished)

    @property
    def stopped_early(self) -> bool:
        return (self.decision.reason in EARLY_REASONS
                and self.state.samples < self.budget.max_samples)  # fmt: skip

    @property
    def stop_reason(self) -> str:
        """The report's ``stop_reason``: the rule's reason, or how sampling ended."""
        return self.decision.reason.value if self.outcome is Outcome.OK else self.outcome.value

    def report(self, choice: Choice, *, difficulty: float, difficulty_source: str,
               tokens_used: int, answered_by: str) -> PonderReport:  # fmt: skip
        """The ``ponder`` object of the response."""
        budget, state = self.budget, self.state
        return PonderReport(
            difficulty=round(difficulty, 4),
            difficulty_source="hint" if difficulty_source == "hint" else "estimate",
            tier=budget.tier, strategy=budget.strategy.value,
            budget=BudgetReport(max_tokens_per_sample=budget.max_tokens_per_sample,
                                max_samples=budget.max_samples, shrunk=budget.shrunk,
                                shrink_reason=budget.shrink_reason),
            samples=SampleCounts(launched=self.launched + self.failed,
                                 completed=len(self.finished), cancelled=self.running,
                                 failed=self.failed, truncated=self.truncated,
                                 forced=self.forced, probed=self.probed,
                                 low_confidence=self.low_confidence),
            tokens_used=tokens_used, stopped_early=self.stopped_early,
            stop_reason=self.stop_reason,
            votes=[VoteCount(answer=self._display(key), votes=n) for key, n in state.counts],
            abstentions=state.abstentions, answer=self.finished[choice.position].answer,
            aggregation=choice.aggregation, answered_by=answered_by,
        )  # fmt: skip

    def _display(self, key: str) -> str:
        """An answer as first written by a sample (the tally holds normalised keys)."""
        position = self.state.first_index(key)
        answer = self.finished[position].answer if position is not None else None
        return answer if answer is not None else key


# -- recorded samples ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RecordedSample:
    """A sample from a data set: its answer, tokens and verifier score, if any; a
    ``truncated`` one (cut off at the generator's token limit) abstains."""

    answer: str | None
    tokens: int = 0
    score: float | None = None
    truncated: bool = False
    cumulative_logprob: float | None = None
    confidence: float | None = None
    running: tuple[tuple[int, float], ...] = ()
    """(tokens written, running confidence) at points along the sample before its end, in
    order: where a confidence gate may cancel it. Empty: only ``confidence`` is known,
    and the replay takes it as the running confidence from the first token on."""
    low_confidence: bool = False
    checkpoints: tuple[tuple[int, str | None], ...] = ()
    """Its trajectory, ``(prefix_tokens, answer)`` in trace order (empty: none recorded)."""
    forced: bool = False
    """Cut at its cap and answered there (budget forcing, ``cut_at``)."""

    def cut_at(self, cap: int, forcing_tokens: int | None) -> RecordedSample:
        """This sample under a ``cap``: itself when within it; else truncated, or, with
        budget forcing (``forcing_tokens``, the answer allowance) and a trajectory, a vote
        for its last checkpoint's answer within the cap (the first when none is)."""
        if self.tokens <= cap:
            return self
        if forcing_tokens is None or not self.checkpoints:
            return RecordedSample(None, cap, self.score, truncated=True)
        reached = [answer for tokens, answer in self.checkpoints if tokens <= cap]
        answer = reached[-1] if reached else self.checkpoints[0][1]
        return RecordedSample(answer, cap + forcing_tokens, self.score, forced=True)


@dataclass(frozen=True, slots=True)
class RecordedOutcome:
    """What one request spent and answered when replayed from recorded samples."""

    launched: int
    completed: int
    answer: str | None
    tokens: int
    verifier_calls: int
    stop_reason: str
    waves: int = 0  # launches that started a sample: sequential rounds (one a sample if
    # replay_request runs with waves=False), the latency cost


def replay_request(plan: RequestPlan, samples: Sequence[RecordedSample], *,
                   verifier_model: str | None = None,
                   waves: bool = True,
                   forcing_tokens: int | None = None) -> RecordedOutcome:  # fmt: skip
    """Drive ``plan`` with ``samples`` as if they finished in this order.

    Sample ``i`` of the request is ``samples[i]``. A sample longer than its cap
    (``Budget.sample_max_tokens(i)``) is cut off there: truncated, it abstains, unless
    ``forcing_tokens`` is given, the budget forces it (``Budget.forces(i)``) and it has
    checkpoints (``RecordedSample.cut_at``: budget forcing, answering at the cap).
    ``waves=False`` launches one sample at a time (the papers' sequential baselines).
    Tokens: the finished samples' in full, and each sample cancelled at the stop as far as
    it got, taken as the smaller of its length and the stopping sample's. The verifier is
    the data's scores: it scores every finished sample with an answer when the data carry
    scores and the plan is best-of-n (``verifier_model`` names it in the aggregation; None
    when no scores). With the plan's confidence gate cancelling (``may_cancel``: once the
    request holds a vote), a sample is cut at its first running point past ``min_tokens``
    below the gate's threshold as it stands when the sample finishes (``_gated``): it
    abstains and costs the tokens to that point.
    """
    budget = plan.budget
    cut = [s.cut_at(budget.sample_max_tokens(i), forcing_tokens if budget.forces(i) else None)
           for i, s in enumerate(samples)]
    scored = plan.budget.strategy is Strategy.BEST_OF_N and verifier_model is not None
    calls = 0
    done = 0
    launched_upto = 0
    rounds = 0
    while not plan.stopped:
        wave = plan.launch() if waves else plan.launch(1 if plan.running == 0 else 0)
        launched_upto = max(launched_upto, wave.stop)
        rounds += len(wave) > 0
        if done >= len(cut) or done >= launched_upto:
            raise ValueError("the plan ran out of samples before its stopping rule fired")
        if plan.may_cancel and plan.confidence is not None:
            cut[done] = _gated(plan.confidence, cut[done])
        sample = cut[done]
        if plan.finish(done, sample.answer, sample.tokens, truncated=sample.truncated,
                       cumulative_logprob=sample.cumulative_logprob, forced=sample.forced,
                       confidence=sample.confidence,
                       low_confidence=sample.low_confidence):  # fmt: skip
            plan.record_score(done, _score(sample))
            calls += 1
        done += 1
        plan.decide()
    if scored:
        for finished in plan.unscored():
            plan.record_score(finished.index, _score(cut[finished.index]))
            calls += 1
    choice = plan.choose(verifier_model)
    stopper = cut[done - 1].tokens
    tokens = sum(s.tokens for s in cut[:done]) + sum(
        min(s.tokens, stopper) for s in cut[done:launched_upto])
    return RecordedOutcome(launched=launched_upto, completed=done,
                           answer=plan.finished[choice.position].answer, tokens=tokens,
                           verifier_calls=calls, stop_reason=plan.stop_reason,
                           waves=rounds)  # fmt: skip


def _score(sample: RecordedSample) -> float:
    if sample.score is None:
        raise ValueError("a best-of-n replay with a verifier needs every sample's score")
    return sample.score


def _gated(gate: ConfidenceGate, sample: RecordedSample) -> RecordedSample:
    """``sample``, or where ``gate`` cancels it: at its first running point (or, with none
    recorded, at ``min_tokens`` with its final confidence) that the gate refuses."""
    if sample.truncated or sample.confidence is None:
        return sample
    points = sample.running or ((gate.config.min_tokens, sample.confidence),)
    for tokens, running in points:
        if tokens < sample.tokens and gate.should_cancel(running, tokens):
            return RecordedSample(None, tokens, sample.score, confidence=running,
                                  low_confidence=True)  # fmt: skip
    return sample

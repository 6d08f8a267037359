"""Aggregation of sampled answers and adaptive stopping: when a request has thought enough.

Role: after ``answers`` has pulled an answer out of each finished sample, this module
counts them (``Tally``), picks the answer (majority, score-weighted vote, best-of-N by a
verifier score) and decides, after every sample, whether to stop (``should_stop``) and how
many samples the next wave launches (``plan_next_wave``). A sample without an extractable
answer is an abstention: it uses budget but casts no vote. Pure and fast: no I/O, no
clock, no logging; the hot-path values are slotted frozen dataclasses.

Stopping rules (Aggarwal et al. 2023, Adaptive-Consistency; Li et al. 2024, ESC):

- ``settled`` (the default): stop once the samples the budget has left would keep the
  leader ahead of the runner-up with probability >= ``threshold`` (0.97 unset;
  ``settled_probability``: the shares of leader, runner-up and the rest Dirichlet given
  the votes, the votes to come drawn from them). Early in a wide budget it behaves like
  ``beta``; near its end, with few votes left to overturn a lead, it stops sooner.
- ``beta``: stop once P(p_leader > p_runner_up) >= ``threshold``, where the leader's share
  of the two top answers is Beta(leader + 1, runner_up + 1) distributed. A tier may set
  its own threshold (``Budget.stop_threshold``), which replaces the rule's.
- ``window``: stop once the last ``window`` votes all agree.
- ``margin``: stop once the leader has ``margin`` more votes than the runner-up. This is
  Wald's sequential probability ratio test between the two leading answers: for a fixed
  pair of answer probabilities the log-likelihood ratio after ``a`` and ``b`` votes is
  ``(a - b) log(p1 / p2)``, so the test's boundary is a constant lead; for two simple
  hypotheses no test with the same error rates needs fewer samples on average (Wald and
  Wolfowitz 1948). Answers to a question are not two simple hypotheses, so this is a
  motivation, not a proof: ``ponder evaluate`` measures it beside Adaptive-Consistency.
  The beta rule asks for a lead that grows with the votes cast, which spends samples on
  contested questions where more of them rarely change the answer. A tier may set its
  own lead (``Budget.stop_margin``), which replaces the rule's.
- always, for ``vote``: stop once the leader cannot be overtaken within the budget
  (the answer is then the one maj@max_samples would give).
- first-wave agreement, for a ``vote`` tier that asks for it
  (``Budget.stop_on_first_wave_agreement``): stop once the whole first wave (at least two
  samples) has finished with one answer. The tier's budget is then an envelope: the prior
  sets how much unanimous evidence suffices (the first wave), and any disagreement or
  abstention in it leaves the request to the rule above, up to ``max_samples``. A single
  vote is never agreement.
- ``score_threshold``, for ``best-of-n``: stop once the best verifier score of a finished
  sample with an answer reaches it (that sample would be the answer of any larger draw
  unless a later one scores higher); without it best-of-n draws all its samples.

Two guards come before the rules: under a load shrink that lowered the bar
(``Budget.stop_scale``) no rule stops before the leader leads by ``Budget.stop_min_lead``
votes; and a tier that escalates and asks for first-wave agreement lets no rule stop
before its whole first wave has finished (``awaits_first_wave``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from .answers import EqualityMode, answer_key
from .budgets import SETTLED_THRESHOLD, Budget, Strategy
from .errors import PolicyError
from .waves import WaveSizing, later_wave_size, projected_samples


@dataclass(frozen=True, slots=True)
class Tally:
    """Votes so far: each finished sample's answer key in arrival order (``None`` abstains)."""

    keys: tuple[str | None, ...]
    counts: tuple[tuple[str, int], ...]  # most votes first, ties broken by first seen

    @property
    def samples(self) -> int:
        return len(self.keys)

    @property
    def votes(self) -> int:
        return self.samples - self.abstentions

    @property
    def abstentions(self) -> int:
        return self.keys.count(None)

    @property
    def leader(self) -> str | None:
        return self.counts[0][0] if self.counts else None

    @property
    def leader_votes(self) -> int:
        return self.counts[0][1] if self.counts else 0

    @property
    def runner_up(self) -> str | None:
        return self.counts[1][0] if len(self.counts) > 1 else None

    @property
    def runner_up_votes(self) -> int:
        return self.counts[1][1] if len(self.counts) > 1 else 0

    def first_index(self, key: str) -> int | None:
        """The arrival index of the first sample that voted for ``key``."""
        return self.keys.index(key) if key in self.keys else None

    def add(self, answer: str | None, mode: EqualityMode = "numeric") -> Tally:
        """This tally with one more finished sample."""
        key = None if answer is None else answer_key(answer, mode)
        return _from_keys((*self.keys, key))


BETA_THRESHOLD = 0.95
"""The beta rule's default threshold: Adaptive-Consistency's. The settled rule's,
``SETTLED_THRESHOLD``, is ``budgets``' (the load shrink's default bar reads it too)."""


class StopRuleKind(StrEnum):
    """The stopping rules, spelled as in the CRD's ``spec.budgets.stopping.rule``."""

    BETA = "beta"
    SETTLED = "settled"  # the samples the budget has left would not change the answer
    WINDOW = "window"
    MARGIN = "margin"
    NEVER = "none"  # draw every sample the budget allows


class StopRule(BaseModel):
    """When to stop drawing samples because the answers already agree."""

    # Also the ReasoningService CRD's spec.budgets.stopping (the operator's API imports it),
    # so the docstring and descriptions are what kubectl explain shows.

    model_config = ConfigDict(
        frozen=True, extra="forbid", alias_generator=to_camel, populate_by_name=True
    )

    kind: StopRuleKind = Field(
        default=StopRuleKind.SETTLED, alias="rule",
        description="beta (stop once the leading answer wins with posterior probability "
                    "threshold), settled (stop once the samples maxSamples leaves would "
                    "keep the leading answer ahead with probability threshold), window "
                    "(stop once the last window answers agree), margin "
                    "(stop once the leading answer is margin votes ahead of the next: a "
                    "sequential probability ratio test) or none (draw maxSamples).",
    )  # fmt: skip
    threshold: float | None = Field(
        default=None, gt=0.5, lt=1.0,
        description="Probability the beta and settled rules need (above 0.5: a coin flip "
                    "would stop at once; below 1: it is never reached). Unset: 0.97 for "
                    "settled, 0.95 (Adaptive-Consistency's) for beta.",
    )  # fmt: skip
    window: int = Field(default=5, ge=2, le=64,
                        description="Consecutive agreeing answers the window rule needs.")
    margin: int = Field(default=3, ge=1, le=64,
                        description="Votes the leading answer must be ahead by under the "
                                    "margin rule.")  # fmt: skip
    score_threshold: float | None = Field(
        default=None, ge=-1e6, le=1e6, allow_inf_nan=False,
        description="Verifier score at which a best-of-n request stops: after its first "
                    "wave it draws one sample at a time, each scored as it finishes, and "
                    "stops once one with an answer scores this high. Unset: best-of-n "
                    "draws maxSamples and scores them at the end.",
    )  # fmt: skip
    later_waves: WaveSizing = Field(
        default=WaveSizing.LOOKAHEAD,
        description="How many samples a vote's later waves launch once the running ones "
                    "could not settle it: minimal (just enough that the rule could fire "
                    "if all agree: fewest samples, most rounds), first-wave (never fewer "
                    "than the first wave), doubling (never fewer than launched so far) or "
                    "lookahead (the default: what the rule is expected to need at the "
                    "tally's own rates, between the first wave and doubling).",
    )  # fmt: skip

    def threshold_for(self, budget: Budget) -> float:
        """The beta or settled threshold for ``budget``: its tier's own, else the rule's;
        a load shrink (``Budget.stop_scale``) divides its log-odds (``should_stop`` still
        asks a lead of ``Budget.stop_min_lead`` votes: ``below_shrunk_floor``)."""
        threshold = self.rule_threshold if budget.stop_threshold is None else (
            budget.stop_threshold)  # fmt: skip
        if budget.stop_scale <= 1.0:
            return threshold
        return 1.0 / (1.0 + math.exp(-math.log(threshold / (1.0 - threshold))
                                     / budget.stop_scale))  # fmt: skip

    def margin_for(self, budget: Budget) -> int:
        """The lead the margin rule needs for ``budget``: its tier's own, else the rule's,
        its bar divided by a load shrink's ``Budget.stop_scale`` (``_scaled_lead``)."""
        margin = self.margin if budget.stop_margin is None else budget.stop_margin
        return _scaled_lead(margin, budget)

    def window_for(self, budget: Budget) -> int:
        """The agreeing answers the window rule needs for ``budget``, its bar divided by a
        load shrink's ``Budget.stop_scale`` (``_scaled_lead``)."""
        return _scaled_lead(self.window, budget)

    def log_odds_bar(self) -> float:
        """How much agreement this rule needs, in log-odds: the beta threshold's, or for a
        lead of L votes (margin, window) the log-odds a unanimous lead of L gives under
        the beta rule, ln(2^L - 1). What the load shrink's agreement step divides
        (``budgets.assign_budget``'s ``rule_bar``)."""
        if self.kind is StopRuleKind.MARGIN:
            return _lead_log_odds(self.margin)
        if self.kind is StopRuleKind.WINDOW:
            return _lead_log_odds(self.window)
        return math.log(self.rule_threshold / (1.0 - self.rule_threshold))

    @property
    def rule_threshold(self) -> float:
        """``threshold``, or the rule's own default when unset."""
        if self.threshold is not None:
            return self.threshold
        return SETTLED_THRESHOLD if self.kind is StopRuleKind.SETTLED else BETA_THRESHOLD


DEFAULT_STOP_RULE = StopRule()


class StopReason(StrEnum):
    CONTINUE = "continue"
    BUDGET_EXHAUSTED = "budget-exhausted"
    DECIDED = "decided"
    SETTLED = "settled"
    CONFIDENT = "confident"
    WINDOW_AGREED = "window-agreed"
    AHEAD = "leader-ahead"
    FIRST_WAVE_AGREED = "first-wave-agreed"
    CONVERGED = "converged"
    VERIFIED = "verified"


@dataclass(frozen=True, slots=True)
class StopDecision:
    stop: bool
    reason: StopReason


def tally(answers: Iterable[str | None], mode: EqualityMode = "numeric") -> Tally:
    """Count ``answers`` (``None`` = abstention), equal answers under ``mode`` together."""
    return _from_keys(tuple(None if a is None else answer_key(a, mode) for a in answers))


def majority_vote(answers: Sequence[str | None], mode: EqualityMode = "numeric") -> str | None:
    """The most frequent answer (ties: the one seen first), as first written; ``None`` if all
    samples abstained."""
    counted = tally(answers, mode)
    return None if counted.leader is None else _representative(answers, counted, counted.leader)


def weighted_vote(
    answers: Sequence[str | None], scores: Sequence[float], mode: EqualityMode = "numeric"
) -> str | None:
    """The answer with the largest total score; scores are non-negative (e.g. verifier
    probabilities). Ties go to the answer seen first."""
    _check_scores(answers, scores)
    if any(score < 0.0 for score in scores):
        raise PolicyError("weighted_vote needs non-negative scores (use probabilities)")
    counted = tally(answers, mode)
    totals: dict[str, float] = {}
    for key, score in zip(counted.keys, scores, strict=True):
        if key is not None:
            totals[key] = totals.get(key, 0.0) + score
    if not totals:
        return None
    best = max(totals, key=lambda k: totals[k])  # dicts keep first-seen order for ties
    return _representative(answers, counted, best)


def best_of_n(answers: Sequence[str | None], scores: Sequence[float]) -> str | None:
    """The answer of the highest-scoring sample that has one (ties: the earlier sample)."""
    _check_scores(answers, scores)
    best: tuple[float, str] | None = None
    for answer, score in zip(answers, scores, strict=True):
        if answer is not None and (best is None or score > best[0]):
            best = (score, answer)
    return None if best is None else best[1]


def beta_leader_probability(leader_votes: int, runner_up_votes: int) -> float:
    """P(q > 1/2) for q ~ Beta(leader_votes + 1, runner_up_votes + 1), exactly.

    For integer parameters the Beta tail is a binomial sum:
    P(q > 1/2) = P(Binomial(n, 1/2) <= leader_votes), n = leader_votes + runner_up_votes + 1.
    """
    if leader_votes < 0 or runner_up_votes < 0:
        raise PolicyError("vote counts cannot be negative")
    n = leader_votes + runner_up_votes + 1
    return sum(math.comb(n, j) for j in range(leader_votes + 1)) / (1 << n)


def beta_stop(state: Tally, threshold: float = 0.95) -> bool:
    """Adaptive-Consistency's rule: the leader beats the runner-up with probability >= threshold."""
    if state.votes == 0:
        return False
    return beta_leader_probability(state.leader_votes, state.runner_up_votes) >= threshold


@lru_cache(maxsize=1 << 16)
def settled_probability(leader: float, runner_up: float, others: float,
                        remaining: int) -> float:  # fmt: skip
    """P(the leader is still ahead of the runner-up after ``remaining`` more votes).

    The votes' shares of (leader, runner-up, every other answer) are Dirichlet(leader + 1,
    runner_up + 1, others + 1) given the counts so far; the next ``remaining`` votes are
    drawn from them (Dirichlet-multinomial, computed as two beta-binomials: the leader's
    share, then the runner-up's of the rest). A tie counts half. Exact, O(remaining^2)
    multiplications (the pmfs by their ratio recurrence), and cached: the router asks it
    after every finished sample and while sizing a wave.
    The counts may be weights (``confidence``); each vote to come counts one.
    """
    if min(leader, runner_up, others, remaining) < 0:
        raise PolicyError("vote counts cannot be negative")
    if remaining == 0:
        return 1.0 if leader > runner_up else 0.5 if leader == runner_up else 0.0
    total = 0.0
    to_leader_pmf = _beta_binomial_pmf(remaining, leader + 1, runner_up + others + 2)
    for to_leader, p_leader in enumerate(to_leader_pmf):
        rest_pmf = _beta_binomial_pmf(remaining - to_leader, runner_up + 1, others + 1)
        for to_runner_up, p_runner_up in enumerate(rest_pmf):
            gap = leader + to_leader - runner_up - to_runner_up
            if gap < 0:
                break
            total += (1.0 if gap > 0 else 0.5) * p_leader * p_runner_up
    return min(total, 1.0)


def _beta_binomial_pmf(n: int, a: float, b: float) -> list[float]:
    """P(k successes of n) for k = 0..n when the success probability is Beta(a, b): the
    first term from log-gammas, the rest by pmf(k + 1) / pmf(k) =
    (n - k)(k + a) / ((k + 1)(n - k - 1 + b))."""
    p = math.exp(math.lgamma(n + b) + math.lgamma(a + b) - math.lgamma(n + a + b)
                 - math.lgamma(b))  # fmt: skip
    pmf = [p]
    for k in range(n):
        p *= (n - k) * (k + a) / ((k + 1) * (n - k - 1 + b))
        pmf.append(p)
    return pmf


def settled_stop(state: Tally, remaining: int,
                 threshold: float = SETTLED_THRESHOLD) -> bool:
    """The budget-aware rule: the ``remaining`` samples the budget allows would keep the
    leader ahead with probability >= ``threshold`` (``settled_probability``). Near the
    end of a budget few samples are left to overturn a lead, so it stops sooner than a
    rule that asks about the long run (``beta_stop``)."""
    if state.votes == 0:
        return False
    others = state.votes - state.leader_votes - state.runner_up_votes
    return settled_probability(state.leader_votes, state.runner_up_votes, others,
                               max(remaining, 0)) >= threshold  # fmt: skip


def window_stop(answers: Sequence[str | None], window: int = 5) -> bool:
    """ESC's rule: the last ``window`` votes (abstentions skipped) are all the same answer.

    ``answers`` are compared as given: pass answer keys (``Tally.keys``) or normalised text.
    """
    votes = [a for a in answers if a is not None]
    return len(votes) >= window and len(set(votes[-window:])) == 1


def margin_stop(state: Tally, margin: int = 3) -> bool:
    """The sequential probability ratio test: the leader leads by ``margin`` votes."""
    return state.votes > 0 and state.leader_votes - state.runner_up_votes >= margin


def below_shrunk_floor(state: Tally, budget: Budget) -> bool:
    """A load shrink lowered the stopping bar (``Budget.stop_scale``) and the leader is
    not yet ``Budget.stop_min_lead`` votes ahead: no rule may stop on agreement yet."""
    return (budget.stop_scale > 1.0
            and state.leader_votes - state.runner_up_votes < budget.stop_min_lead)  # fmt: skip


def awaits_first_wave(state: Tally, budget: Budget) -> bool:
    """``budget`` escalates (``escalate_to``) on a contested first wave, asks whether its
    whole first wave agrees, and part of that wave has not finished: the agreement rules
    wait for the wave, the evidence the escalation acts on (only a decided vote stops
    sooner). Elsewhere an early stop may cancel first-wave samples still running."""
    return (budget.escalate_to is not None and budget.stop_on_first_wave_agreement
            and state.samples < budget.wave_size)  # fmt: skip


def first_wave_agrees(state: Tally, budget: Budget) -> bool:
    """The first-wave agreement rule: ``budget`` asks for it and its first wave of at
    least two samples (``state`` holds exactly those) all voted for one answer."""
    return (budget.stop_on_first_wave_agreement and budget.strategy is Strategy.VOTE
            and budget.wave_size >= 2 and state.samples == budget.wave_size
            and state.leader_votes == state.samples)  # fmt: skip


def _first_wave_may_agree(budget: Budget, samples_done: int, state: Tally) -> bool:
    """Only the first wave is launched, part of it still runs, and what finished agrees."""
    return (budget.stop_on_first_wave_agreement and budget.wave_size >= 2
            and samples_done == budget.wave_size and state.samples < budget.wave_size
            and state.leader_votes == state.samples)  # fmt: skip


def should_stop(
    state: Tally, rule: StopRule, budget: Budget, *, best_score: float | None = None
) -> StopDecision:
    """Whether a request stops sampling now, and why (see the module docstring).

    ``best_score`` is the highest verifier score among the finished samples that have an
    answer (``best-of-n`` only; None while none is scored).
    """
    if state.samples >= budget.max_samples:
        return StopDecision(stop=True, reason=StopReason.BUDGET_EXHAUSTED)
    if budget.strategy is Strategy.BEST_OF_N:
        verified = (rule.score_threshold is not None and best_score is not None
                    and best_score >= rule.score_threshold)  # fmt: skip
        return StopDecision(stop=True, reason=StopReason.VERIFIED) if verified else _CONTINUE
    if rule.kind is StopRuleKind.NEVER:
        return _CONTINUE
    if budget.strategy is Strategy.REVISE:
        converged = window_stop(state.keys, window=2)
        return StopDecision(stop=True, reason=StopReason.CONVERGED) if converged else _CONTINUE
    remaining = budget.max_samples - state.samples
    if state.votes and state.leader_votes > state.runner_up_votes + remaining:
        return StopDecision(stop=True, reason=StopReason.DECIDED)
    if first_wave_agrees(state, budget):
        return StopDecision(stop=True, reason=StopReason.FIRST_WAVE_AGREED)
    if below_shrunk_floor(state, budget) or awaits_first_wave(state, budget):
        return _CONTINUE
    if rule.kind is StopRuleKind.BETA and beta_stop(state, rule.threshold_for(budget)):
        return StopDecision(stop=True, reason=StopReason.CONFIDENT)
    if rule.kind is StopRuleKind.SETTLED and settled_stop(
            state, remaining, rule.threshold_for(budget)):  # fmt: skip
        return StopDecision(stop=True, reason=StopReason.SETTLED)
    if rule.kind is StopRuleKind.WINDOW and window_stop(state.keys, rule.window_for(budget)):
        return StopDecision(stop=True, reason=StopReason.WINDOW_AGREED)
    if rule.kind is StopRuleKind.MARGIN and margin_stop(state, rule.margin_for(budget)):
        return StopDecision(stop=True, reason=StopReason.AHEAD)
    return _CONTINUE


def plan_next_wave(
    budget: Budget, samples_done: int, state: Tally, rule: StopRule = DEFAULT_STOP_RULE
) -> int:
    """How many samples to launch now.

    ``samples_done`` counts samples launched so far (finished or still running); ``state``
    holds the finished ones. The first wave is ``budget.wave_size`` (set by the difficulty
    prior). A later ``vote`` wave launches only when the samples still running could not
    make the stopping rule fire even if they all agreed with the leader; ``revise`` goes one
    at a time; ``best-of-n`` launches the rest at once, or, with a ``score_threshold``,
    one at a time (each sample may be the one the verifier accepts). Under first-wave
    agreement nothing more launches while the rest of an agreeing first wave runs.
    A later ``vote`` wave is at least that bound, sized by ``rule.later_waves``
    (``waves.later_wave_size``: the trade between samples and sequential rounds).
    """
    remaining = budget.max_samples - samples_done
    if remaining <= 0:
        return 0
    if samples_done == 0:
        return min(budget.wave_size, remaining)
    in_flight = max(samples_done - state.samples, 0)
    if budget.strategy is Strategy.BEST_OF_N:
        return remaining if rule.score_threshold is None else 0 if in_flight else 1
    if budget.strategy is not Strategy.VOTE:  # revise: each sample revises the one before
        return 0 if in_flight else 1
    if rule.kind is StopRuleKind.NEVER:
        return remaining
    if _first_wave_may_agree(budget, samples_done, state):
        return 0
    if rule.kind is StopRuleKind.WINDOW:
        votes = [k for k in state.keys if k is not None]
        streak = next((i for i, k in enumerate(reversed(votes)) if k != votes[-1]), len(votes))
        needed = max(rule.window_for(budget) - streak, 1)
    elif rule.kind is StopRuleKind.MARGIN:
        needed = max(rule.margin_for(budget) - state.leader_votes + state.runner_up_votes, 1)
    else:  # beta or settled: the fewest agreeing votes that reach the threshold
        threshold = rule.threshold_for(budget)
        others = state.votes - state.leader_votes - state.runner_up_votes
        unfinished = budget.max_samples - state.samples

        def confident(more: int) -> bool:
            leader, runner_up = state.leader_votes + more, state.runner_up_votes
            if rule.kind is StopRuleKind.SETTLED:
                chance = settled_probability(leader, runner_up, others, unfinished - more)
            else:
                chance = beta_leader_probability(leader, runner_up)
            return chance >= threshold

        needed = 1
        while needed < remaining and not confident(needed):
            needed += 1
    if state.votes:
        # The vote is also decided once the leader cannot be overtaken (``should_stop``):
        # k more agreeing samples do that when leader + k > runner_up + max - (done + k).
        unlaunched_gap = (state.runner_up_votes + budget.max_samples - state.samples
                          - state.leader_votes)
        needed = min(needed, max(unlaunched_gap // 2 + 1, 1))
    return later_wave_size(
        rule.later_waves, needed_samples=min(needed, remaining), running_samples=in_flight,
        launched_samples=samples_done, first_wave_samples=budget.wave_size,
        remaining_samples=remaining,
        expected_samples=lambda: _expected_samples(budget, state, rule, needed))


def _expected_samples(budget: Budget, state: Tally, rule: StopRule, needed: int) -> int:
    """More samples the rule is expected to need, the tally projected at its own rates
    (``waves.projected_samples``); the window rule keeps the optimistic ``needed``."""
    if rule.kind is StopRuleKind.WINDOW or not state.votes:
        return needed
    unlaunched = budget.max_samples - state.samples
    threshold, margin = rule.threshold_for(budget), rule.margin_for(budget)

    others = state.votes - state.leader_votes - state.runner_up_votes

    def stops(more: int, leader: int, runner_up: int) -> bool:
        if leader > runner_up + unlaunched - more:
            return True
        if rule.kind is StopRuleKind.MARGIN:
            return leader - runner_up >= margin
        if rule.kind is StopRuleKind.SETTLED:
            rest = others + int(more * others / state.samples + 0.5)
            return settled_probability(leader, runner_up, rest, unlaunched - more) >= threshold
        return beta_leader_probability(leader, runner_up) >= threshold

    return projected_samples(samples=state.samples, leader_votes=state.leader_votes,
                             runner_up_votes=state.runner_up_votes,
                             remaining_samples=unlaunched, stops=stops)  # fmt: skip


_CONTINUE = StopDecision(stop=False, reason=StopReason.CONTINUE)


def _lead_log_odds(lead: int) -> float:
    """The beta rule's log-odds for a unanimous lead of ``lead`` votes: P = 1 - 2^-lead."""
    return math.log(2.0**lead - 1.0) if lead > 1 else 0.0


def _scaled_lead(lead: int, budget: Budget) -> int:
    """The least lead whose log-odds reach ``lead``'s divided by the load shrink's
    ``Budget.stop_scale``, never below ``Budget.stop_min_lead`` nor above ``lead``."""
    if budget.stop_scale <= 1.0:
        return lead
    bar = _lead_log_odds(lead) / budget.stop_scale
    scaled = next((k for k in range(1, lead + 1) if _lead_log_odds(k) >= bar - 1e-12), lead)
    return min(lead, max(scaled, budget.stop_min_lead))


def _from_keys(keys: tuple[str | None, ...]) -> Tally:
    counts: dict[str, int] = {}
    for key in keys:
        if key is not None:
            counts[key] = counts.get(key, 0) + 1
    ordered = sorted(counts.items(), key=lambda item: -item[1])  # stable: first seen wins ties
    return Tally(keys=keys, counts=tuple(ordered))


def _representative(answers: Sequence[str | None], counted: Tally, key: str) -> str | None:
    index = counted.first_index(key)
    return None if index is None else answers[index]


def _check_scores(answers: Sequence[str | None], scores: Sequence[float]) -> None:
    if len(answers) != len(scores):
        raise PolicyError(f"{len(answers)} answers but {len(scores)} scores")
    if any(not math.isfinite(score) for score in scores):
        raise PolicyError("scores must be finite numbers")

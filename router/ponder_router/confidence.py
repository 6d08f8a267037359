"""Per-sample confidence: weighted votes and early cancellation of unconfident samples.

Role: the confidence policy beside ``aggregate``'s plain counts. A sample's confidence is
a probability: live, the geometric-mean token probability ``exp(cumulative_logprob /
tokens)`` of its text (``sample_confidence``); offline, whatever the data carry. Two
knobs (``ConfidenceConfig``, the CRD's ``spec.budgets.confidence``), each off by default
and each reducing to today's behaviour when off or when a sample carries no confidence:

- **weighting**: each vote weighs ``2 x`` its confidence's mid-rank among the service's
  recent finished samples (``ConfidenceGate.weight``): 1 at the median, 0 to 2 in all, so
  on average a vote still counts one. Ranks, not raw values, because a geometric-mean
  token probability lives in a narrow band (0.7 to 0.8 for the stand-in) that differs
  from model to model: the rank is self-calibrating. The stop rules then read the weighted
  tally (``should_stop_weighted``): beta on the weighted counts (a Beta posterior with
  real-valued pseudo-counts), margin on the weighted lead, first-wave agreement only when
  the unanimous wave is not unconfident (mean weight at least ``FIRST_WAVE_MIN_WEIGHT``),
  and the answer is the weighted leader. Until the window holds ``minWindow``
  confidences every weight is 1.
- **cancellation** (DeepConf, Fu et al. 2025, made self-calibrating): the threshold is
  the ``percentile``-th percentile of the same window, learned from the service's own
  traffic, with no warm-up batch per request; a running sample whose running confidence
  is below it after ``minTokens`` tokens is cancelled and abstains. Until the window
  holds ``minWindow`` confidences nothing is cancelled, nor while the request holds no
  vote yet (its first vote always counts). A cancelled sample's running
  confidence enters the window too: were only survivors kept, the percentile would
  climb with every cancellation.

Defaults (``bench/bench_confidence.py``): both knobs off, so a service behaves as before
until it opts in. ``percentile`` 60: with the first-vote guard, Adaptive-Consistency with
both knobs on saved 36 %, 41 % and 50 % of tokens at unchanged accuracy (within a paired
standard error) on the stand-in, Qwen (reward score as the proxy) and the Gemma traces;
in a sweep (3 orderings) 45 saved 32 to 38 % and cost Gemma 1.6 points, 80 launched
half as many samples again on the stand-in for a few points more. A cancelled sample
never removes a request's only vote (``RequestPlan.may_cancel``): without that guard a
question on which every sample is unconfident had no answer left, and percentile 60 cost
Qwen 20 points.

``ConfidenceGate`` is the service's state (a bounded window, no I/O, no clock); the
executor owns one, the offline replay one per replayed stream of requests.
"""

from __future__ import annotations

import bisect
import math
from collections import deque
from collections.abc import Sequence

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from .aggregate import (
    StopDecision,
    StopReason,
    StopRule,
    StopRuleKind,
    Tally,
    awaits_first_wave,
    below_shrunk_floor,
    beta_leader_probability,
    settled_probability,
    should_stop,
)
from .budgets import Budget, Strategy

MAX_WEIGHT = 2.0
"""The weight of the most confident vote (the median's is 1)."""
FIRST_WAVE_MIN_WEIGHT = 0.5
"""Mean weight a unanimous first wave needs to stop when votes are weighted."""
_SERIES_TERMS = 100_000  # bound on the incomplete beta series (it converges long before)


class ConfidenceConfig(BaseModel):
    """Per-sample confidence in the vote and the stop rule, and early cancellation of
    unconfident samples (a sample's confidence: its geometric-mean token probability)."""

    # Also the ReasoningService CRD's spec.budgets.confidence (the operator's API imports
    # it), so the docstring and descriptions are what kubectl explain shows.

    model_config = ConfigDict(
        frozen=True, extra="forbid", alias_generator=to_camel, populate_by_name=True
    )

    weighting: bool = Field(
        default=False,
        description="Weigh each vote by its confidence's rank among the service's recent "
                    "samples (0 to 2, the median 1); the stop rules read the weighted votes.",
    )  # fmt: skip
    cancel: bool = Field(
        default=False,
        description="Cancel a running sample whose confidence so far is below the "
                    "percentile of recent samples' (it abstains); streams every sample.",
    )  # fmt: skip
    percentile: float = Field(
        default=60.0, gt=0.0, lt=100.0,
        description="Percentile of recent samples' confidences below which a running "
                    "sample is cancelled.",
    )  # fmt: skip
    window: int = Field(default=1000, ge=10, le=100_000,
                        description="Recent finished samples' confidences kept (the window).")
    min_window: int = Field(
        default=100, ge=1, le=100_000,
        description="Confidences the window needs before it weighs votes or cancels "
                    "samples (at most window).",
    )  # fmt: skip
    min_tokens: int = Field(
        default=256, ge=1, le=1_000_000,
        description="Tokens a sample writes before its running confidence may cancel it.",
    )  # fmt: skip

    @property
    def enabled(self) -> bool:
        return self.weighting or self.cancel


def sample_confidence(cumulative_logprob: float | None, tokens: int) -> float | None:
    """The geometric-mean token probability of ``tokens`` tokens whose log-probability
    sums to ``cumulative_logprob`` (None: no signal, or no token yet)."""
    if cumulative_logprob is None or tokens <= 0 or not math.isfinite(cumulative_logprob):
        return None
    return min(1.0, math.exp(min(cumulative_logprob, 0.0) / tokens))


class ConfidenceGate:
    """The service's recent finished samples' confidences (a bounded window) and what
    follows from them: vote weights and the cancellation threshold."""

    def __init__(self, config: ConfidenceConfig) -> None:
        self.config = config
        self._recent: deque[float] = deque(maxlen=config.window)
        self._sorted: list[float] = []

    def __len__(self) -> int:
        return len(self._recent)

    @property
    def ready(self) -> bool:
        """The window holds enough confidences to act on."""
        return len(self._recent) >= min(self.config.min_window, self.config.window)

    def observe(self, confidence: float | None) -> None:
        """One more finished (or cancelled) sample's confidence; None is ignored."""
        if confidence is None or not math.isfinite(confidence):
            return
        if len(self._recent) == self._recent.maxlen:
            oldest = self._recent[0]
            del self._sorted[bisect.bisect_left(self._sorted, oldest)]
        self._recent.append(confidence)
        bisect.insort(self._sorted, confidence)

    def threshold(self) -> float | None:
        """The cancellation threshold: the window's ``percentile``-th percentile (nearest
        rank); None until the window is ready."""
        if not self.ready:
            return None
        rank = math.ceil(self.config.percentile / 100 * len(self._sorted)) - 1
        return self._sorted[max(rank, 0)]

    def weight(self, confidence: float | None) -> float:
        """A vote's weight: ``MAX_WEIGHT`` times the confidence's mid-rank in the window;
        1 when weighting is off, the window not ready or the confidence missing."""
        if not self.config.weighting or confidence is None or not self.ready:
            return 1.0
        below = bisect.bisect_left(self._sorted, confidence)
        equal = bisect.bisect_right(self._sorted, confidence) - below
        return MAX_WEIGHT * (below + equal / 2) / len(self._sorted)

    def should_cancel(self, running_confidence: float | None, tokens: int) -> bool:
        """Cancel a running sample: cancellation is on, it wrote ``min_tokens``, and its
        running confidence is below the threshold."""
        if not self.config.cancel or running_confidence is None:
            return False
        if tokens < self.config.min_tokens:
            return False
        threshold = self.threshold()
        return threshold is not None and running_confidence < threshold


# -- the weighted tally and stop rule ------------------------------------------------------


def weighted_counts(state: Tally, weights: Sequence[float]) -> tuple[tuple[str, float], ...]:
    """Each answer's total weight, largest first (ties: the answer seen first)."""
    if len(weights) != state.samples:
        raise ValueError(f"{state.samples} samples but {len(weights)} weights")
    totals: dict[str, float] = {}
    for key, weight in zip(state.keys, weights, strict=True):
        if key is not None:
            totals[key] = totals.get(key, 0.0) + weight
    return tuple(sorted(totals.items(), key=lambda item: -item[1]))


def weighted_leader(state: Tally, weights: Sequence[float]) -> str | None:
    """The answer with the largest total weight (ties: the one seen first)."""
    counts = weighted_counts(state, weights)
    return counts[0][0] if counts else None


def beta_leader_probability_weighted(leader: float, runner_up: float) -> float:
    """P(q > 1/2) for q ~ Beta(leader + 1, runner_up + 1) with real-valued pseudo-counts;
    exact (``beta_leader_probability``) for integers. The regularised incomplete beta
    I_x(a, b) = x^a (1 - x)^b / (a B(a, b)) 2F1(a + b, 1; a + 1; x) (DLMF 8.17.8), whose
    series converges geometrically at x = 1/2."""
    if leader < 0 or runner_up < 0:
        raise ValueError("weights cannot be negative")
    if leader.is_integer() and runner_up.is_integer():
        return beta_leader_probability(int(leader), int(runner_up))
    a, b, x = leader + 1.0, runner_up + 1.0, 0.5
    term, total, n = 1.0, 1.0, 0
    while n < _SERIES_TERMS and (n <= b or term > 1e-17 * total):
        term *= x * (a + b + n) / (a + 1 + n)
        total += term
        n += 1
    log_front = (a * math.log(x) + b * math.log1p(-x) - math.log(a)
                 - math.lgamma(a) - math.lgamma(b) + math.lgamma(a + b))  # fmt: skip
    below = math.exp(log_front + math.log(total))
    return min(1.0, max(0.0, 1.0 - below))


def should_stop_weighted(
    state: Tally, weights: Sequence[float], rule: StopRule, budget: Budget, *,
    best_score: float | None = None,
) -> StopDecision:  # fmt: skip
    """``aggregate.should_stop`` on the weighted tally (see the module docstring); the
    same decision whenever every weight is 1, and for everything but a ``vote``."""
    if all(w == 1.0 for w in weights) or budget.strategy is not Strategy.VOTE or (
            rule.kind in (StopRuleKind.NEVER, StopRuleKind.WINDOW)
            or state.samples >= budget.max_samples):  # fmt: skip
        return should_stop(state, rule, budget, best_score=best_score)
    counts = weighted_counts(state, weights)
    lead = counts[0][1] if counts else 0.0
    second = counts[1][1] if len(counts) > 1 else 0.0
    remaining = budget.max_samples - state.samples
    if counts and lead > second + MAX_WEIGHT * remaining:
        return StopDecision(stop=True, reason=StopReason.DECIDED)
    if (budget.stop_on_first_wave_agreement and budget.wave_size >= 2
            and state.samples == budget.wave_size and state.leader_votes == state.samples
            and lead >= FIRST_WAVE_MIN_WEIGHT * state.samples):  # fmt: skip
        return StopDecision(stop=True, reason=StopReason.FIRST_WAVE_AGREED)
    if (not counts or lead <= 0.0 or below_shrunk_floor(state, budget)
            or awaits_first_wave(state, budget)):  # fmt: skip
        return StopDecision(stop=False, reason=StopReason.CONTINUE)
    if rule.kind is StopRuleKind.BETA and (
            beta_leader_probability_weighted(lead, second) >= rule.threshold_for(budget)):
        return StopDecision(stop=True, reason=StopReason.CONFIDENT)
    if rule.kind is StopRuleKind.SETTLED and settled_probability(
            lead, second, max(sum(w for _, w in counts) - lead - second, 0.0),
            remaining) >= rule.threshold_for(budget):  # fmt: skip
        return StopDecision(stop=True, reason=StopReason.SETTLED)
    if rule.kind is StopRuleKind.MARGIN and lead - second >= rule.margin_for(budget):
        return StopDecision(stop=True, reason=StopReason.AHEAD)
    return StopDecision(stop=False, reason=StopReason.CONTINUE)

"""The confidence policy: the gate's window, weights and threshold, the weighted stop rule,
and ``RequestPlan`` with confidence (live-style and replayed)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from ponder_router.aggregate import StopReason, StopRule, StopRuleKind, should_stop, tally
from ponder_router.budgets import Budget, Strategy
from ponder_router.confidence import (
    MAX_WEIGHT,
    ConfidenceConfig,
    ConfidenceGate,
    beta_leader_probability_weighted,
    sample_confidence,
    should_stop_weighted,
    weighted_leader,
)
from ponder_router.plan import RecordedSample, RequestPlan, replay_request

RULES = [StopRule(), StopRule(threshold=0.6), StopRule(kind=StopRuleKind.MARGIN, margin=2),
         StopRule(kind=StopRuleKind.WINDOW, window=3), StopRule(kind=StopRuleKind.NEVER)]


def budget(max_samples: int = 16, wave_size: int = 4, *, first_wave: bool = False,
           strategy: Strategy = Strategy.VOTE, max_tokens: int = 4096) -> Budget:  # fmt: skip
    return Budget(tier="hard", strategy=strategy, max_tokens_per_sample=max_tokens,
                  max_samples=max_samples, wave_size=wave_size, expected_tokens=0.0,
                  stop_on_first_wave_agreement=first_wave)  # fmt: skip


def warm_gate(config: ConfidenceConfig, values: list[float]) -> ConfidenceGate:
    gate = ConfidenceGate(config)
    for value in values:
        gate.observe(value)
    return gate


WEIGH = ConfidenceConfig(weighting=True, min_window=10, window=100)
CANCEL = ConfidenceConfig(cancel=True, percentile=20.0, min_window=10, window=100, min_tokens=50)
TENTHS = [i / 10 for i in range(10)]  # 0.0 ... 0.9


# -- the signal ---------------------------------------------------------------------------


@pytest.mark.parametrize(("logprob", "tokens", "expected"), [
    (None, 10, None), (-1.0, 0, None), (float("-inf"), 5, None),
    (0.0, 4, 1.0), (-10 * math.log(2), 10, 0.5), (3.0, 2, 1.0),
])  # fmt: skip
def test_a_samples_confidence_is_its_geometric_mean_token_probability(
    logprob: float | None, tokens: int, expected: float | None,
) -> None:
    got = sample_confidence(logprob, tokens)
    assert got == (None if expected is None else pytest.approx(expected))


# -- the gate -----------------------------------------------------------------------------


def test_a_gate_never_cancels_nor_weighs_until_its_window_holds_min_window() -> None:
    gate = warm_gate(ConfidenceConfig(weighting=True, cancel=True, min_window=10,
                                      min_tokens=1), [0.9] * 9)  # fmt: skip

    assert gate.threshold() is None
    assert not gate.should_cancel(0.01, 10_000)
    assert gate.weight(0.99) == 1.0
    gate.observe(0.9)
    assert gate.ready
    assert gate.should_cancel(0.01, 10_000)


def test_the_threshold_is_the_windows_percentile_by_nearest_rank() -> None:
    gate = warm_gate(CANCEL, TENTHS)

    assert gate.threshold() == pytest.approx(0.1)  # 20th percentile of ten: the second
    assert gate.should_cancel(0.05, 50)
    assert not gate.should_cancel(0.1, 50)
    assert not gate.should_cancel(0.05, 49), "before min_tokens nothing is cancelled"
    assert not gate.should_cancel(None, 500), "a sample without a signal is never cancelled"


def test_the_window_forgets_the_oldest_confidence_first() -> None:
    gate = warm_gate(ConfidenceConfig(cancel=True, window=10, min_window=10,
                                      percentile=50.0), [0.0] * 10 + [0.8] * 10)  # fmt: skip

    assert len(gate) == 10
    assert gate.threshold() == pytest.approx(0.8)


def test_cancelling_is_off_unless_configured() -> None:
    gate = warm_gate(WEIGH, TENTHS)
    assert not gate.should_cancel(0.0, 10_000)


@given(st.lists(st.floats(0, 1), min_size=10, max_size=60), st.floats(0, 1))
def test_weights_lie_between_zero_and_max_and_grow_with_confidence(
    window: list[float], confidence: float,
) -> None:
    gate = warm_gate(WEIGH, window)

    weight = gate.weight(confidence)
    assert 0.0 <= weight <= MAX_WEIGHT
    assert gate.weight(min(confidence + 0.1, 1.0)) >= weight


@given(st.lists(st.floats(0, 1), min_size=10, max_size=60, unique=True))
def test_the_mean_weight_over_the_window_is_one(window: list[float]) -> None:
    gate = warm_gate(WEIGH, window)
    assert sum(gate.weight(c) for c in window) / len(window) == pytest.approx(1.0)


def test_weights_are_one_when_weighting_is_off_or_the_confidence_missing() -> None:
    assert warm_gate(CANCEL, TENTHS).weight(0.9) == 1.0
    assert warm_gate(WEIGH, TENTHS).weight(None) == 1.0


def test_min_window_cannot_be_zero_and_the_percentile_must_be_inside_zero_and_100() -> None:
    with pytest.raises(ValidationError, match="minWindow"):
        ConfidenceConfig.model_validate({"minWindow": 0})
    with pytest.raises(ValidationError, match="percentile"):
        ConfidenceConfig.model_validate({"percentile": 100})


# -- the weighted stop rule ------------------------------------------------------------------


@given(st.integers(0, 30), st.integers(0, 30))
def test_the_weighted_beta_tail_equals_the_exact_one_near_integers(a: int, b: int) -> None:
    exact = beta_leader_probability_weighted(float(a), float(b))
    near = beta_leader_probability_weighted(a + 1e-9, b + 1e-9)
    assert near == pytest.approx(exact, abs=1e-6)


answers = st.lists(st.sampled_from(["1", "2", "3", None]), min_size=1, max_size=16)


@given(answers, st.sampled_from(RULES), st.integers(2, 16), st.integers(1, 4), st.booleans())
def test_with_every_weight_one_the_weighted_rule_is_todays_rule(
    keys: list[str | None], rule: StopRule, max_samples: int, wave: int, first_wave: bool,
) -> None:
    state, plan_budget = tally(keys), budget(max(max_samples, len(keys)), wave,
                                             first_wave=first_wave)  # fmt: skip

    assert (should_stop_weighted(state, [1.0] * len(keys), rule, plan_budget)
            == should_stop(state, rule, plan_budget))  # fmt: skip


def test_two_confident_votes_stop_the_margin_rule_that_two_plain_votes_do_not() -> None:
    rule, state = StopRule(kind=StopRuleKind.MARGIN, margin=3), tally(["7", "7"])

    assert not should_stop(state, rule, budget()).stop
    assert should_stop_weighted(state, [1.8, 1.8], rule, budget()).reason is StopReason.AHEAD


def test_confident_votes_reach_the_beta_threshold_sooner() -> None:
    state = tally(["7", "7", "7"])

    beta = StopRule(kind=StopRuleKind.BETA)
    assert not should_stop(state, beta, budget()).stop
    assert should_stop_weighted(state, [1.9, 1.9, 1.9], beta,
                                budget()).reason is StopReason.CONFIDENT  # fmt: skip


def test_confident_votes_settle_the_default_rule_sooner() -> None:
    state = tally(["7", "7"])  # two plain votes of 64: far from settled

    assert not should_stop(state, StopRule(), budget(max_samples=64)).stop
    assert should_stop_weighted(state, [2.0, 2.0], StopRule(), budget(
        max_samples=64)).reason is StopReason.SETTLED  # fmt: skip


def test_an_unconfident_unanimous_first_wave_does_not_stop_a_confident_one_does() -> None:
    first = budget(wave_size=3, first_wave=True)
    state = tally(["7", "7", "7"])

    assert not should_stop_weighted(state, [0.2, 0.3, 0.1], StopRule(), first).stop
    assert should_stop_weighted(state, [0.9, 1.2, 0.8], StopRule(),
                                first).reason is StopReason.FIRST_WAVE_AGREED  # fmt: skip


def test_the_weighted_leader_can_differ_from_the_most_voted_answer() -> None:
    state = tally(["1", "1", "2"])
    assert state.leader == "1"
    assert weighted_leader(state, [0.2, 0.3, 1.9]) == "2"


# -- the plan ------------------------------------------------------------------------------


def test_a_weighted_plan_answers_with_the_weighted_leader_and_reports_plain_votes() -> None:
    plan = RequestPlan(budget(max_samples=3, wave_size=3), StopRule(kind=StopRuleKind.NEVER),
                       confidence=warm_gate(WEIGH, TENTHS))  # fmt: skip
    plan.launch()
    for index, (answer, conf) in enumerate([("1", 0.05), ("1", 0.05), ("2", 0.95)]):
        plan.finish(index, answer, 10, confidence=conf)
    plan.decide()

    choice = plan.choose(None)
    report = plan.report(choice, difficulty=0.5, difficulty_source="estimate",
                         tokens_used=30, answered_by="svc")  # fmt: skip
    assert report.answer == "2"
    assert [(v.answer, v.votes) for v in report.votes] == [("1", 2), ("2", 1)]


def test_a_plan_without_weighting_answers_with_the_majority() -> None:
    plan = RequestPlan(budget(max_samples=3, wave_size=3), StopRule(kind=StopRuleKind.NEVER),
                       confidence=warm_gate(CANCEL, TENTHS))  # fmt: skip
    plan.launch()
    for index, (answer, conf) in enumerate([("1", 0.05), ("1", 0.05), ("2", 0.95)]):
        plan.finish(index, answer, 10, confidence=conf)
    assert plan.finished[plan.choose(None).position].answer == "1"


def test_a_low_confidence_sample_abstains_and_is_counted_in_the_report() -> None:
    plan = RequestPlan(budget(max_samples=2, wave_size=2), StopRule())
    plan.launch()
    plan.finish(0, "5", 10)
    plan.finish(1, "6", 3, confidence=0.01, low_confidence=True)
    plan.decide()

    report = plan.report(plan.choose(None), difficulty=0.5, difficulty_source="estimate",
                         tokens_used=13, answered_by="svc")  # fmt: skip
    assert report.samples.low_confidence == 1
    assert report.abstentions == 1


def test_the_plan_feeds_every_finished_confidence_to_the_services_gate() -> None:
    gate = ConfidenceGate(WEIGH)
    plan = RequestPlan(budget(max_samples=2, wave_size=2), StopRule(), confidence=gate)
    plan.launch()
    plan.finish(0, "5", 10, confidence=0.7)
    plan.finish(1, "5", 10)
    assert len(gate) == 1


# -- replayed ------------------------------------------------------------------------------


def test_a_replayed_sample_is_cancelled_at_its_first_running_point_below_the_threshold() -> None:
    gate = warm_gate(CANCEL, TENTHS)
    plan = RequestPlan(budget(max_samples=2, wave_size=2), StopRule(kind=StopRuleKind.NEVER),
                       confidence=gate)  # fmt: skip
    low = RecordedSample("9", 1000, confidence=0.02,
                         running=((10, 0.01), (100, 0.5), (200, 0.05), (900, 0.01)))
    outcome = replay_request(plan, [RecordedSample("4", 400, confidence=0.9), low])

    assert outcome.answer == "4"
    assert outcome.tokens == 400 + 200, "cancelled at 200 tokens, past min_tokens (50)"
    assert plan.low_confidence == 1


def test_a_replayed_sample_with_only_a_final_confidence_is_cancelled_at_min_tokens() -> None:
    plan = RequestPlan(budget(max_samples=2, wave_size=2), StopRule(kind=StopRuleKind.NEVER),
                       confidence=warm_gate(CANCEL, TENTHS))  # fmt: skip
    outcome = replay_request(plan, [RecordedSample("4", 400, confidence=0.9),
                                    RecordedSample("9", 1000, confidence=0.02)])  # fmt: skip
    assert outcome.tokens == 400 + CANCEL.min_tokens


def test_a_replay_without_a_gate_is_todays_replay() -> None:
    samples = [RecordedSample("4", 400, confidence=0.9),
               RecordedSample("9", 1000, confidence=0.02)]  # fmt: skip
    plain = replay_request(RequestPlan(budget(2, 2), StopRule()), samples)
    off = replay_request(RequestPlan(budget(2, 2), StopRule(),
                                     confidence=ConfidenceGate(ConfidenceConfig())), samples)
    assert plain == off


def test_the_gate_never_cancels_a_requests_first_vote() -> None:
    plan = RequestPlan(budget(max_samples=2, wave_size=2), StopRule(kind=StopRuleKind.NEVER),
                       confidence=warm_gate(CANCEL, TENTHS))  # fmt: skip
    assert not plan.may_cancel
    outcome = replay_request(plan, [RecordedSample("9", 1000, confidence=0.02),
                                    RecordedSample("4", 1000, confidence=0.02)])  # fmt: skip
    assert plan.may_cancel
    assert outcome.answer == "9"
    assert outcome.tokens == 1000 + CANCEL.min_tokens


recorded_samples = st.lists(
    st.builds(RecordedSample, st.sampled_from(["1", "2", "3", None]), st.integers(1, 500),
              confidence=st.one_of(st.none(), st.floats(0, 1))),
    min_size=16, max_size=16)  # fmt: skip


@given(recorded_samples, st.sampled_from(RULES), st.integers(1, 4), st.booleans(),
       st.sampled_from([ConfidenceConfig(), WEIGH, CANCEL,
                        WEIGH.model_copy(update={"cancel": True})]))  # fmt: skip
def test_a_gate_that_is_off_or_not_yet_warm_changes_nothing(
    samples: list[RecordedSample], rule: StopRule, wave: int, first_wave: bool,
    knobs: ConfidenceConfig,
) -> None:
    plan_budget = budget(16, wave, first_wave=first_wave, max_tokens=400)
    cold = ConfidenceGate(knobs.model_copy(update={"min_window": 50}))

    plain = replay_request(RequestPlan(plan_budget, rule), samples)
    gated = replay_request(RequestPlan(plan_budget, rule, confidence=cold), samples)

    assert gated == plain


@given(recorded_samples, st.sampled_from(RULES), st.integers(1, 4), st.booleans())
def test_weighting_without_any_confidence_is_todays_plan(
    samples: list[RecordedSample], rule: StopRule, wave: int, first_wave: bool,
) -> None:
    plan_budget = budget(16, wave, first_wave=first_wave, max_tokens=400)
    blind = [RecordedSample(s.answer, s.tokens) for s in samples]
    warm = warm_gate(WEIGH.model_copy(update={"cancel": True}), TENTHS)

    plain = replay_request(RequestPlan(plan_budget, rule), blind)
    weighted = replay_request(RequestPlan(plan_budget, rule, confidence=warm), blind)

    assert weighted == plain

"""Voting and adaptive stopping, checked on tables and on real per-sample model outputs."""

from __future__ import annotations

import csv
import math
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

from components import require_data
from ponder_router.aggregate import (
    StopReason,
    StopRule,
    StopRuleKind,
    Tally,
    best_of_n,
    beta_leader_probability,
    beta_stop,
    majority_vote,
    plan_next_wave,
    settled_probability,
    should_stop,
    tally,
    weighted_vote,
    window_stop,
)
from ponder_router.answers import answers_equal
from ponder_router.budgets import Budget, Strategy
from ponder_router.errors import PolicyError
from ponder_router.waves import WaveSizing
from ponder_tools.data import shared_data_dir

DATA_DIR = shared_data_dir()
# The wave tests here check the optimistic bound itself, so their rules size later waves
# by it alone (laterWaves minimal); test_waves covers the other methods.
BETA = StopRule(kind=StopRuleKind.BETA, later_waves=WaveSizing.MINIMAL)
WINDOW = StopRule(kind=StopRuleKind.WINDOW, window=3, later_waves=WaveSizing.MINIMAL)
NEVER = StopRule(kind=StopRuleKind.NEVER)
VERIFIED_AT_2 = StopRule(score_threshold=2.0)
MARGIN = StopRule(kind=StopRuleKind.MARGIN, margin=3, later_waves=WaveSizing.MINIMAL)


def budget(strategy: Strategy = Strategy.VOTE, max_samples: int = 16, wave_size: int = 4,
           stop_threshold: float | None = None,
           stop_margin: int | None = None) -> Budget:  # fmt: skip
    return Budget(
        tier="hard",
        strategy=strategy,
        max_tokens_per_sample=4096,
        max_samples=max_samples,
        wave_size=wave_size,
        expected_tokens=0.0,
        stop_threshold=stop_threshold,
        stop_margin=stop_margin,
    )


def read_csv(path: Path) -> list[dict[str, str]]:
    require_data(path)
    with path.open(encoding="utf-8", newline="") as rows:
        return list(csv.DictReader(rows))


@pytest.mark.parametrize(
    ("answers", "leader", "leader_votes", "runner_up", "runner_up_votes", "abstentions"),
    [
        ([], None, 0, None, 0, 0),
        ([None, None], None, 0, None, 0, 2),
        (["1", "2", "2"], "2", 2, "1", 1, 0),
        (["0.5", "\\frac12", "1/2", "3"], "1/2", 3, "3", 1, 0),  # one answer, three spellings
        (["a", "b", None, "b", "a"], "a", 2, "b", 2, 1),  # a tie goes to the first seen
    ],
)
def test_a_tally_counts_equal_answers_together_and_abstentions_apart(
    answers: list[str | None],
    leader: str | None,
    leader_votes: int,
    runner_up: str | None,
    runner_up_votes: int,
    abstentions: int,
) -> None:
    counted = tally(answers)
    assert (counted.leader, counted.leader_votes) == (leader, leader_votes)
    assert (counted.runner_up, counted.runner_up_votes) == (runner_up, runner_up_votes)
    assert counted.abstentions == abstentions
    assert counted.votes + counted.abstentions == counted.samples == len(answers)


def test_a_tally_grows_one_sample_at_a_time_to_the_same_result() -> None:
    answers = ["4", None, "4.0", "5", "4"]
    grown = Tally(keys=(), counts=())
    for answer in answers:
        grown = grown.add(answer)
    assert grown == tally(answers)
    assert grown.first_index("4") == 0


@pytest.mark.parametrize(
    ("answers", "expected"),
    [
        (["7", "8", "8"], "8"),
        (["0.5", "3", "\\frac{1}{2}"], "0.5"),  # returned as first written
        (["x", "y"], "x"),
        ([None, None], None),
    ],
)
def test_majority_vote_returns_the_most_frequent_answer(
    answers: list[str | None], expected: str | None
) -> None:
    assert majority_vote(answers) == expected


def test_a_weighted_vote_lets_confident_samples_outvote_a_crowd() -> None:
    answers = ["1", "1", "2", None]
    assert weighted_vote(answers, [0.1, 0.1, 0.9, 1.0]) == "2"
    assert weighted_vote(answers, [0.5, 0.5, 0.9, 1.0]) == "1"
    assert weighted_vote([None], [1.0]) is None


def test_best_of_n_picks_the_highest_scored_sample_with_an_answer() -> None:
    assert best_of_n(["1", None, "3"], [2.0, 9.0, -1.0]) == "1"
    assert best_of_n([None], [1.0]) is None


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: weighted_vote(["1"], [-0.5]), "non-negative"),
        (lambda: weighted_vote(["1", "2"], [1.0]), "2 answers but 1 scores"),
        (lambda: best_of_n(["1"], [math.nan]), "finite"),
        (lambda: beta_leader_probability(-1, 0), "negative"),
    ],
)
def test_unusable_scores_or_counts_are_refused(call: object, message: str) -> None:
    with pytest.raises(PolicyError, match=message):
        call()  # type: ignore[operator]


@pytest.mark.parametrize(
    ("leader_votes", "runner_up_votes", "probability"),
    [(0, 0, 0.5), (1, 0, 0.75), (3, 0, 15 / 16), (4, 0, 31 / 32), (5, 1, 120 / 128), (2, 2, 0.5)],
)
def test_the_beta_probability_is_exact(
    leader_votes: int, runner_up_votes: int, probability: float
) -> None:
    assert beta_leader_probability(leader_votes, runner_up_votes) == pytest.approx(probability)


@pytest.mark.parametrize(("a", "b"), [(3, 1), (7, 4), (12, 5)])
def test_the_beta_probability_matches_integrating_the_beta_density(a: int, b: int) -> None:
    steps = 20_000
    log_norm = math.lgamma(a + b + 2) - math.lgamma(a + 1) - math.lgamma(b + 1)
    upper_half = sum(
        math.exp(log_norm + a * math.log(x) + b * math.log(1 - x))
        for x in (0.5 + (i + 0.5) / (2 * steps) for i in range(steps))
    ) / (2 * steps)
    assert beta_leader_probability(a, b) == pytest.approx(upper_half, rel=1e-6)
    assert beta_leader_probability(a, b) + beta_leader_probability(b, a) == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("answers", "threshold", "stop"),
    [
        (["9"] * 3, 0.95, False),
        (["9"] * 4, 0.95, True),
        (["9"] * 4 + [None, None], 0.95, True),  # abstentions do not dilute agreement
        (["9"] * 5 + ["8"], 0.95, False),
        (["9"] * 6 + ["8"], 0.95, True),
        (["9"] * 4, 0.99, False),
        ([None] * 8, 0.5 + 1e-9, False),
    ],
)
def test_the_beta_rule_stops_once_the_leader_is_clear(
    answers: list[str | None], threshold: float, stop: bool
) -> None:
    assert beta_stop(tally(answers), threshold) is stop


@pytest.mark.parametrize(
    ("answers", "window", "stop"),
    [
        (["1", "2", "2", "2"], 3, True),
        (["2", "2", "1"], 3, False),
        (["2", None, "2", "2"], 3, True),
        (["2", "2"], 3, False),
    ],
)
def test_the_window_rule_stops_when_the_last_votes_agree(
    answers: list[str | None], window: int, stop: bool
) -> None:
    assert window_stop(answers, window) is stop


@pytest.mark.parametrize(
    ("answers", "rule", "limits", "reason"),
    [
        (["1"], BETA, budget(max_samples=1), StopReason.BUDGET_EXHAUSTED),
        (["1", "2", "1"], BETA, budget(max_samples=3), StopReason.BUDGET_EXHAUSTED),
        (["1", "1", "1"], BETA, budget(max_samples=4), StopReason.DECIDED),
        (["1", "1", "1"], BETA, budget(), StopReason.CONTINUE),
        (["1", "1", "1", "1"], BETA, budget(), StopReason.CONFIDENT),
        (["2", "1", "1", "1"], WINDOW, budget(), StopReason.WINDOW_AGREED),
        (["1", "1", "1", "1"], NEVER, budget(), StopReason.CONTINUE),
        (["1"] * 8, BETA, budget(Strategy.BEST_OF_N), StopReason.CONTINUE),
        (["3", "4", "4"], BETA, budget(Strategy.REVISE), StopReason.CONVERGED),
        (["3", "4"], BETA, budget(Strategy.REVISE), StopReason.CONTINUE),
        # a tier's own threshold replaces the rule's: 3 agreeing votes are P 0.9375
        (["1", "1", "1"], BETA, budget(stop_threshold=0.9), StopReason.CONFIDENT),
        (["1"] * 4, BETA, budget(stop_threshold=0.99), StopReason.CONTINUE),
        (["1", "2", "1"], WINDOW, budget(stop_threshold=0.51), StopReason.CONTINUE),
        # the margin rule: a lead of 3, however many votes were cast
        (["1", "1", "1"], MARGIN, budget(), StopReason.AHEAD),
        (["1", "1"], MARGIN, budget(), StopReason.CONTINUE),
        (["1", "2", "1", "1", "1"], MARGIN, budget(), StopReason.AHEAD),  # 4 - 1
        (["1", "2", "1", "2", "1", "1"], MARGIN, budget(), StopReason.CONTINUE),  # 4 - 2
        (["1", "2", "3", "1", "1"], MARGIN, budget(), StopReason.CONTINUE),  # 3 - 1
        ([None, None, None], MARGIN, budget(), StopReason.CONTINUE),  # abstentions
        (["1", "1"], MARGIN, budget(stop_margin=2), StopReason.AHEAD),  # the tier's own
        (["1", "1", "1"], MARGIN, budget(stop_margin=4), StopReason.CONTINUE),
        (["1", "1", "1"], BETA, budget(stop_margin=1), StopReason.CONTINUE),  # beta: unused
    ],
)
def test_should_stop_says_when_and_why(
    answers: list[str | None], rule: StopRule, limits: Budget, reason: StopReason
) -> None:
    decision = should_stop(tally(answers), rule, limits)
    assert decision.reason is reason
    assert decision.stop is (reason is not StopReason.CONTINUE)


@pytest.mark.parametrize(
    ("rule", "answers", "best_score", "limits", "reason"),
    [
        (VERIFIED_AT_2, ["1"], None, budget(Strategy.BEST_OF_N), StopReason.CONTINUE),
        (VERIFIED_AT_2, ["1"], 1.99, budget(Strategy.BEST_OF_N), StopReason.CONTINUE),
        (VERIFIED_AT_2, ["1"], 2.0, budget(Strategy.BEST_OF_N), StopReason.VERIFIED),
        (VERIFIED_AT_2, ["1", "2"], 5.0, budget(Strategy.BEST_OF_N), StopReason.VERIFIED),
        (VERIFIED_AT_2, ["1", "2"], 5.0, budget(Strategy.BEST_OF_N, max_samples=2),
         StopReason.BUDGET_EXHAUSTED),
        (BETA, ["1"], 99.0, budget(Strategy.BEST_OF_N), StopReason.CONTINUE),  # no threshold
        (StopRule(kind=StopRuleKind.NEVER, score_threshold=0.0), [None], 0.5,
         budget(Strategy.BEST_OF_N), StopReason.VERIFIED),
        (VERIFIED_AT_2, ["1", "1", "1", "1"], 9.0, budget(), StopReason.SETTLED),  # votes
        (VERIFIED_AT_2, ["1", "2", "3"], 9.0, budget(), StopReason.CONTINUE),
    ],
)
def test_best_of_n_stops_once_a_verifier_score_reaches_the_threshold(
    rule: StopRule, answers: list[str | None], best_score: float | None, limits: Budget,
    reason: StopReason,
) -> None:
    decision = should_stop(tally(answers), rule, limits, best_score=best_score)
    assert decision.reason is reason
    assert decision.stop is (reason is not StopReason.CONTINUE)


def test_a_score_threshold_must_be_a_finite_number() -> None:
    with pytest.raises(ValueError, match="finite"):
        StopRule(score_threshold=math.inf)


@pytest.mark.parametrize(
    ("limits", "samples_done", "finished", "rule", "wave"),
    [
        (budget(Strategy.BEST_OF_N, max_samples=8, wave_size=2), 0, 0, VERIFIED_AT_2, 2),
        (budget(Strategy.BEST_OF_N, max_samples=8, wave_size=2), 2, 1, VERIFIED_AT_2, 0),
        (budget(Strategy.BEST_OF_N, max_samples=8, wave_size=2), 2, 2, VERIFIED_AT_2, 1),
        (budget(Strategy.BEST_OF_N, max_samples=8, wave_size=2), 8, 8, VERIFIED_AT_2, 0),
        (budget(Strategy.BEST_OF_N, max_samples=8, wave_size=2), 2, 2, BETA, 6),
    ],
)
def test_a_verified_best_of_n_draws_one_sample_at_a_time_after_its_first_wave(
    limits: Budget, samples_done: int, finished: int, rule: StopRule, wave: int
) -> None:
    assert plan_next_wave(limits, samples_done, tally(["1"] * finished), rule) == wave


@pytest.mark.parametrize(
    ("threshold", "wave"),
    [(None, 3), (0.9, 2), (0.99, 5)],  # after one vote: P(Beta(1 + k + 1, 1) > 1/2)
)
def test_the_next_wave_follows_the_tiers_own_threshold(threshold: float | None,
                                                        wave: int) -> None:  # fmt: skip
    assert plan_next_wave(budget(stop_threshold=threshold), 1, tally(["1"]), BETA) == wave


@pytest.mark.parametrize(
    ("limits", "samples_done", "answers", "rule", "wave"),
    [
        (budget(wave_size=4), 0, [], BETA, 4),  # the difficulty prior sets the first wave
        (budget(max_samples=2, wave_size=2), 0, [], BETA, 2),
        (budget(), 1, ["1"], BETA, 3),  # three more agreeing votes could stop it
        (budget(), 3, ["1"], BETA, 1),  # two already running
        (budget(), 4, ["1", "2", "1", "1"], BETA, 3),
        (budget(), 4, [None] * 4, BETA, 4),
        (budget(max_samples=6), 5, ["1", "2", "1", "2", "1"], BETA, 1),
        (budget(max_samples=4), 4, ["1", "2", "1", "2"], BETA, 0),
        (budget(), 4, ["1", "2", "2", "2"], WINDOW, 1),
        (budget(), 1, ["1"], MARGIN, 2),  # two more agreeing votes lead by 3
        (budget(), 3, ["1", "2", "1"], MARGIN, 2),
        (budget(stop_margin=5), 2, ["1", "1"], MARGIN, 3),
        (budget(), 2, [None, None], MARGIN, 3),
        (budget(), 4, ["1"] * 4, NEVER, 12),
        (budget(Strategy.BEST_OF_N, max_samples=8), 4, ["1"] * 4, BETA, 4),
        (budget(Strategy.REVISE, wave_size=1), 1, ["1"], BETA, 1),
        (budget(Strategy.REVISE, wave_size=1), 2, ["1"], BETA, 0),
        (budget(Strategy.REVISE, wave_size=1), 1, ["1"], NEVER, 1),  # never two at once
        (budget(Strategy.REVISE, wave_size=1), 2, ["1"], NEVER, 0),
    ],
)
def test_the_next_wave_is_just_large_enough_to_let_the_rule_fire(
    limits: Budget, samples_done: int, answers: list[str | None], rule: StopRule, wave: int
) -> None:
    assert plan_next_wave(limits, samples_done, tally(answers), rule) == wave


def run_adaptive(answers: list[str | None], limits: Budget, rule: StopRule) -> tuple[int, Tally]:
    """Replay one request: waves as planned, a stop check after every finished sample."""
    state, launched = tally([]), 0
    while True:
        wave = plan_next_wave(limits, launched, state, rule)
        assert wave > 0, "a request that has not stopped must launch work"
        batch, launched = answers[launched : launched + wave], launched + wave
        for answer in batch:
            state = state.add(answer)
            if should_stop(state, rule, limits).stop:
                return launched, state


def test_beta_stopping_saves_samples_on_real_outputs_at_the_same_accuracy() -> None:
    samples_dir = DATA_DIR / "samples"
    references = {
        row["idx"]: row["gt_answer"]
        for row in read_csv(samples_dir / "qwen25math_math100_x8_problems.csv")
    }
    per_problem: dict[str, list[dict[str, str]]] = defaultdict(list)
    for row in read_csv(samples_dir / "qwen25math_math100_x8_samples.csv"):
        per_problem[row["idx"]].append(row)
    limits = budget(max_samples=8, wave_size=4)

    launched_total, adaptive_correct, full_correct = 0, 0, 0
    for idx, rows in per_problem.items():
        rows.sort(key=lambda row: int(row["sample_idx"]))
        answers: list[str | None] = [row["pred_answer"] or None for row in rows]
        launched, state = run_adaptive(answers, limits, BETA)
        launched_total += launched
        adaptive = majority_vote(answers[: state.samples])
        full = majority_vote(answers)
        adaptive_correct += adaptive is not None and answers_equal(adaptive, references[idx])
        full_correct += full is not None and answers_equal(full, references[idx])

    problems = len(per_problem)
    assert launched_total / problems <= 0.6 * 8  # measured 4.46 samples vs 8 for maj@8
    assert adaptive_correct >= full_correct - 1  # measured 93 vs 93 of 100


def test_a_vote_launches_only_the_samples_that_could_still_settle_it() -> None:
    # Cap 5, first wave of 3: two agreeing answers are in, one sample still runs. If it
    # agrees too the leader (3) can no longer be overtaken by the 2 unlaunched samples,
    # so nothing more is launched until it finishes.
    two_agree = tally(["42", "42"])
    assert plan_next_wave(budget(max_samples=5, wave_size=3), 3, two_agree, BETA) == 0
    # Split 2-1 with all three finished: one more agreeing sample decides it (3 > 1 + 1).
    split = tally(["42", "42", "7"])
    assert plan_next_wave(budget(max_samples=5, wave_size=3), 3, split, BETA) == 1


# -- first-wave agreement: a tier's budget is an envelope --------------------------------


def envelope(wave_size: int = 2) -> Budget:
    return budget(max_samples=64, wave_size=wave_size).model_copy(
        update={"stop_on_first_wave_agreement": True})


@pytest.mark.parametrize(
    ("answers", "wave_size", "reason"),
    [
        (["7", "7"], 2, StopReason.FIRST_WAVE_AGREED),
        (["7", "7", "7"], 3, StopReason.FIRST_WAVE_AGREED),
        (["7", "8"], 2, StopReason.CONTINUE),  # disagreement buys samples
        (["7", None], 2, StopReason.CONTINUE),  # so does an abstention
        (["7"], 2, StopReason.CONTINUE),  # the wave has not finished
        (["7", "8", "7", "7"], 2, StopReason.CONTINUE),  # later agreement is the rule's
    ],
)
def test_an_envelope_stops_only_when_its_whole_first_wave_agrees(
    answers: list[str | None], wave_size: int, reason: StopReason
) -> None:
    decision = should_stop(tally(answers), BETA, envelope(wave_size))
    assert decision.reason is reason


def test_first_wave_agreement_is_off_unless_the_tier_asks_for_it() -> None:
    assert should_stop(tally(["7", "7"]), BETA, budget(wave_size=2)).reason is StopReason.CONTINUE


def test_an_agreeing_first_wave_still_running_launches_nothing_more() -> None:
    assert plan_next_wave(envelope(), 2, tally(["7"]), BETA) == 0
    assert plan_next_wave(envelope(), 2, tally(["7", "8"]), BETA) > 0
    assert plan_next_wave(envelope(), 2, tally([None]), BETA) > 0


def test_the_settled_probability_matches_a_monte_carlo_of_its_model() -> None:
    """Dirichlet(leader + 1, runner-up + 1, others + 1) shares, then ``remaining`` votes."""
    rng = np.random.default_rng(7)
    leader, runner_up, others, remaining = 5, 2, 1, 10
    shares = rng.dirichlet([leader + 1, runner_up + 1, others + 1], size=400_000)
    votes = np.array([rng.multinomial(remaining, s) for s in shares[:40_000]])
    gap = leader + votes[:, 0] - runner_up - votes[:, 1]
    simulated = float(np.mean(np.where(gap > 0, 1.0, np.where(gap == 0, 0.5, 0.0))))
    assert settled_probability(leader, runner_up, others, remaining) == pytest.approx(
        simulated, abs=0.01)


def test_the_settled_probability_is_a_half_for_a_tie_and_falls_with_the_votes_to_come(
) -> None:
    assert settled_probability(3, 3, 2, 9) == pytest.approx(0.5)
    chances = [settled_probability(6, 3, 1, r) for r in (0, 3, 10, 40)]
    assert chances[0] == 1.0
    assert chances == sorted(chances, reverse=True)
    assert chances[-1] < 0.95 < chances[1]


def test_the_settled_rule_stops_near_the_end_of_a_budget_where_beta_goes_on() -> None:
    state = tally(["1", "1", "2", "1", "1", "2", "1", "2", "1"])  # 6 to 3, 3 of 12 left
    limits = budget(max_samples=12)
    assert should_stop(state, StopRule(), limits).reason is StopReason.SETTLED
    assert not should_stop(state, BETA, limits).stop  # P(q > 1/2) = 0.83 asks the long run
    assert not should_stop(state, StopRule(), budget(max_samples=64)).stop


def test_a_shrunk_bar_never_stops_below_its_least_lead() -> None:
    shrunk = budget(max_samples=64).model_copy(update={"stop_scale": 100.0, "stop_min_lead": 2})
    assert not should_stop(tally(["1"]), StopRule(), shrunk).stop
    assert not should_stop(tally(["1"]), BETA, shrunk).stop
    assert should_stop(tally(["1", "1"]), StopRule(), shrunk).stop


def test_a_tier_that_escalates_waits_for_its_whole_first_wave() -> None:
    """Three agreeing votes of a small budget settle a vote, but a tier that escalates on a
    contested first wave waits for the fourth: it is the evidence the escalation reads."""
    three = tally(["1", "1", "1"])
    plain = budget(max_samples=8).model_copy(update={"stop_on_first_wave_agreement": True})
    escalating = plain.model_copy(update={"escalate_to": "large"})
    assert should_stop(three, StopRule(), plain).reason is StopReason.SETTLED
    assert not should_stop(three, StopRule(), escalating).stop
    assert should_stop(tally(["1", "1", "1", "1"]), StopRule(),
                       escalating).reason is StopReason.FIRST_WAVE_AGREED  # fmt: skip

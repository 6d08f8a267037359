"""The demand a request publishes: what its samples are still expected to write under the
thinking-budget rules (a sample ends at its length or its cap, a forced one answers on top),
not their caps."""

from __future__ import annotations

import math

import pytest

from ponder_router.budgets import Budget, DemandModel, Strategy, expected_request_tokens
from ponder_router.demand import (
    expected_remaining_sample_tokens,
    expected_remaining_tokens,
    untruncated_mean_tokens,
)

BUDGET = Budget(tier="t", strategy=Strategy.VOTE, max_tokens_per_sample=4000, max_samples=8,
                wave_size=2, expected_tokens=0.0)  # fmt: skip
MODEL = DemandModel(token_fill_ratio=0.6, extra_sample_ratio=0.3)


@pytest.mark.parametrize("fill", [0.05, 0.3, 0.6, 0.95])
def test_the_untruncated_mean_gives_back_the_fill_ratio_once_capped(fill: float) -> None:
    mean = untruncated_mean_tokens(fill, 4000)
    assert mean * -math.expm1(-4000 / mean) == pytest.approx(fill * 4000, rel=1e-6)
    assert expected_remaining_sample_tokens(0, 4000, mean) == pytest.approx(fill * 4000)


def test_a_fill_ratio_of_one_means_every_sample_runs_to_its_cap() -> None:
    assert math.isinf(untruncated_mean_tokens(1.0, 4000))
    assert expected_remaining_sample_tokens(1000, 4000, math.inf, answer_tokens=32) == 3032


def test_a_running_sample_expects_less_the_closer_it_is_to_its_cap() -> None:
    mean = untruncated_mean_tokens(0.6, 4000)
    left = [expected_remaining_sample_tokens(t, 4000, mean) for t in (0, 1000, 3000, 3900)]
    assert left == sorted(left, reverse=True)
    assert all(r <= 4000 - t for r, t in zip(left, (0, 1000, 3000, 3900), strict=True))


def test_a_sample_at_its_cap_expects_only_the_forced_answer_with_forcing_and_nothing_without(
) -> None:  # fmt: skip
    mean = untruncated_mean_tokens(0.6, 4000)
    assert expected_remaining_sample_tokens(4000, 4000, mean, answer_tokens=32) == 32
    assert expected_remaining_sample_tokens(4100, 4000, mean) == 0


def test_with_forcing_off_and_nothing_running_the_request_expects_what_its_budget_says() -> None:
    before = expected_remaining_tokens(BUDGET, MODEL, samples_finished=0, running_samples=0,
                                       running_tokens=0)  # fmt: skip
    assert before == pytest.approx(expected_request_tokens(BUDGET, MODEL))
    forced = expected_remaining_tokens(BUDGET, MODEL, samples_finished=0, running_samples=0,
                                       running_tokens=0, answer_tokens=32)  # fmt: skip
    assert before < forced < before + 32 * 8


def test_long_running_samples_still_count_what_they_are_likely_to_write_not_zero() -> None:
    # Two samples 3,000 tokens into a 4,000 cap: the old rule (expected minus written,
    # floored at 0) said 0.6 x 4,000 x 2 x ... - 6,000; here each still counts its rest.
    demand = expected_remaining_tokens(BUDGET, MODEL, samples_finished=0, running_samples=2,
                                       running_tokens=6000, answer_tokens=32)  # fmt: skip
    waiting = expected_request_tokens(BUDGET, MODEL, samples_finished=2)
    assert waiting < demand <= waiting * 1.1 + 2 * (1000 + 32)


def test_a_sample_after_the_first_wave_past_the_first_cap_still_expects_to_write_more() -> None:
    grows = BUDGET.model_copy(update={"max_tokens_after_first_wave": 16_000})
    past_first_cap = {"samples_finished": BUDGET.wave_size, "running_samples": 1,
                      "running_tokens": 5000}  # fmt: skip
    fixed = expected_remaining_tokens(BUDGET, MODEL, **past_first_cap)
    longer = expected_remaining_tokens(grows, MODEL, **past_first_cap)
    waiting = expected_request_tokens(BUDGET, MODEL, samples_finished=BUDGET.wave_size + 1)
    assert fixed == pytest.approx(waiting)  # at its cap, without forcing: nothing more
    assert longer > waiting + 100

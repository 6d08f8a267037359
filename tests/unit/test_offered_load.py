"""The offered load: an exponentially weighted rate of arriving requests' expected tokens."""

from __future__ import annotations

import math

import pytest

from ponder_router.budgets import Budget
from ponder_router.offered import OfferedLoad


def test_a_steady_stream_reads_its_own_rate() -> None:
    load = OfferedLoad(window_seconds=10.0)
    for second in range(200):  # 3,000 tokens a second for 200 s, 20 time constants
        load.record(float(second), 3_000.0)
    assert load.tokens_per_second(199.0) == pytest.approx(3_000.0, rel=0.06)


def test_the_rate_decays_with_the_window_once_arrivals_stop() -> None:
    load = OfferedLoad(window_seconds=10.0)
    load.record(0.0, 1_000.0)
    assert load.tokens_per_second(0.0) == pytest.approx(100.0)
    assert load.tokens_per_second(10.0) == pytest.approx(100.0 / math.e)
    assert load.tokens_per_second(1_000.0) < 1e-9


def test_no_arrivals_read_zero_and_a_bad_window_is_refused() -> None:
    assert OfferedLoad(window_seconds=5.0).tokens_per_second(3.0) == 0.0
    with pytest.raises(ValueError, match="window_seconds"):
        OfferedLoad(window_seconds=0.0)


def test_a_shrunk_budget_offers_what_its_unshrunk_budget_would_spend() -> None:
    full = Budget(tier="t", strategy="vote", max_tokens_per_sample=100, max_samples=8,
                  wave_size=2, expected_tokens=1_000.0)  # fmt: skip
    shrunk = full.model_copy(update={"expected_tokens": 250.0, "shrunk": True})
    asked: list[bool] = []

    def unshrunk() -> Budget:
        asked.append(True)
        return full

    load = OfferedLoad(window_seconds=10.0)
    load.offer(0.0, full, unshrunk)
    assert asked == []  # an unshrunk budget is its own
    load.offer(0.0, shrunk, unshrunk)
    assert asked == [True]
    assert load.tokens_per_second(0.0) == pytest.approx(2_000.0 / 10.0)  # not 1,250

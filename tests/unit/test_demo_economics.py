"""What `make demo` says about its own run: accuracy, $ per 1,000 correct, maj@N."""

from __future__ import annotations

import pytest


def test_the_demo_prices_fixed_maj_n_at_its_own_cost_per_token() -> None:
    from ponder_localstack.demo import Tally, economics

    tally = Tally(correct=30, samples_launched=120)
    tally.outcomes["200"] = 40
    money = economics(tally, cost_usd=2.4)  # $0.02 a sample
    assert money.accuracy == 0.75
    assert money.usd_per_1k_correct == pytest.approx(80.0)
    assert money.fixed_cost_usd[1] == pytest.approx(40 * 0.02)
    assert money.fixed_cost_usd[16] == pytest.approx(16 * 40 * 0.02)

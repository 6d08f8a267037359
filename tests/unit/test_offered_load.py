"""The offered load: an exponentially weighted rate of arriving requests' expected tokens."""

from __future__ import annotations

import math

import pytest

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

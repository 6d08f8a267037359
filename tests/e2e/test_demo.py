"""A shortened ``make demo``: replicas follow the replayed burst and no request is lost."""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path

from components import require
from ponder_localstack.demo import DemoOptions, run


def test_the_demo_scales_out_under_the_burst_back_in_after_it_and_loses_nothing(
    tmp_path: Path,
) -> None:
    options = DemoOptions(replay_seconds=60, window_minutes=8, mean_rate_rps=2.0,
                          settle_seconds=75, out_dir=tmp_path / "out")
    with ExitStack() as stack:
        result = require(lambda: run(stack, tmp_path / "state", options))

    desired = [s.desired for s in result.history]
    peak_at = desired.index(max(desired))
    assert max(desired) >= 2, "replicas went up under the burst"
    assert min(desired[peak_at:]) < max(desired), "and down after it"
    tally = result.tally
    assert tally.sent == sum(tally.outcomes.values()), "every request accounted for"
    assert set(tally.outcomes) <= {"200", "429"}, tally.outcomes
    # GPU-hours from the status match the replica history the demo sampled every ~2 s.
    steps = zip(result.history, result.history[1:], strict=False)
    sampled = sum(a.ready * (b.t - a.t) for a, b in steps) / 3600
    assert result.gpu_hours > 0
    assert abs(result.gpu_hours - sampled) <= 0.25 * sampled + 0.003, (result.gpu_hours, sampled)
    assert result.plot_path.stat().st_size > 10_000
    money = result.economics
    assert money.answered == tally.outcomes["200"]
    assert 0 < money.correct <= money.answered, "the stand-in answers some questions right"
    assert money.usd_per_1k_correct > 0
    # a fixed maj@N costs more with more samples, and the router spent some samples
    assert money.fixed_cost_usd[1] < money.fixed_cost_usd[5] < money.fixed_cost_usd[16]
    assert tally.samples_launched >= money.answered

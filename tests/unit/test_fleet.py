"""The fleet simulator: RequestPlan decides each request's samples on a simulated pool."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest

from ponder_router.aggregate import plan_next_wave, tally
from ponder_router.budgets import LoadState, default_policy
from ponder_router.demand_learning import DemandLearningConfig
from ponder_router.settings import CapacityConfig
from ponder_tools.evaluation.dataset import EvalProblem
from ponder_tools.sim import HpaAutoscaler, SimConfig, synthetic_trace
from ponder_tools.sim.cli import add_simulate_parser
from ponder_tools.sim.fleet import (
    LOAD_HORIZON_SECONDS,
    FleetPolicy,
    FleetResult,
    ShrinkTrigger,
    draw_fleet,
    simulate_fleet,
    summarize_fleet,
)
from ponder_tools.sim.fleet_compare import load_samples, quota_for
from ponder_tools.sim.oracle import OracleBound


class FixedPool:
    """An autoscaler that holds the pool at ``replicas``."""

    name = "fixed"
    period_seconds = 5.0

    def __init__(self, replicas: int) -> None:
        self.replicas = replicas

    def start(self, replicas: int, now_seconds: float) -> None:
        del replicas, now_seconds

    def decide(self, observation: object, now_seconds: float) -> int:
        del observation, now_seconds
        return self.replicas


HARD_QUESTION = ("Prove that for every integer n > 1 the sum of the reciprocals of the primes "
                 "up to n diverges, and find the smallest n for which the sum exceeds 2; "
                 "justify each step of the proof carefully with inequalities.")


def problems(count: int = 40, samples: int = 16, seed: int = 0,
             question: str = "Compute 2 + 3 and explain.") -> list[EvalProblem]:  # fmt: skip
    """Problems where each sample is right with probability 0.6 and wrong answers scatter
    over four values: the majority is more often right than one sample."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(count):
        keys = tuple("1" if rng.random() < 0.6 else str(2 + int(rng.integers(4)))
                     for _ in range(samples))  # fmt: skip
        tokens = tuple(int(t) for t in rng.integers(100, 400, size=samples))
        out.append(EvalProblem(problem_id=f"p{i}", question=question,
                               reference="1", reference_key="1", answer_keys=keys,
                               tokens=tokens))  # fmt: skip
    return out


def run(policy: FleetPolicy, replicas: int = 4, rate: float = 2.0, seed: int = 0,
        problem_count: int = 40, question: str = "Compute 2 + 3 and explain.") -> FleetResult:
    trace = synthetic_trace([(120.0, rate)], seed=seed)
    draw = draw_fleet(trace, problems(problem_count, question=question), seed=seed)
    config = SimConfig(initial_replicas=replicas)
    return simulate_fleet(draw, policy, FixedPool(replicas), config)


def test_a_replay_is_deterministic_under_a_seed() -> None:
    policy = FleetPolicy("ponder", budget_policy=default_policy())
    first, second = run(policy, seed=3), run(policy, seed=3)
    np.testing.assert_array_equal(first.correct, second.correct)
    np.testing.assert_array_equal(first.samples, second.samples)
    np.testing.assert_array_equal(first.latency_seconds, second.latency_seconds)
    assert first.gpu_seconds == second.gpu_seconds


def test_more_samples_are_at_least_as_accurate_where_the_majority_is_right() -> None:
    one = run(FleetPolicy("maj@1", fixed_samples=1), problem_count=400, rate=4.0)
    many = run(FleetPolicy("maj@9", fixed_samples=9), problem_count=400, rate=4.0, replicas=12)
    assert many.correct.mean() >= one.correct.mean()
    assert many.tokens.mean() > one.tokens.mean()


def test_maj1_launches_exactly_one_sample_per_request() -> None:
    result = run(FleetPolicy("maj@1", fixed_samples=1))
    assert result.samples.tolist() == [1] * len(result.samples)


@pytest.mark.parametrize(("question", "tier"), [("Compute 2 + 3 and explain.", "easy"),
                                                (HARD_QUESTION, "hard")])
def test_ponder_launches_its_tiers_first_wave_then_stops_within_its_budget(
        question: str, tier: str) -> None:
    ponder = FleetPolicy("ponder", budget_policy=default_policy())
    budget, rule = ponder.budget_for(problems(1, question=question)[0], LoadState.idle())
    assert budget.tier == tier
    first_wave = plan_next_wave(budget, 0, tally(()), rule)
    result = run(ponder, question=question)
    assert (result.samples >= first_wave).all()
    assert (result.samples <= budget.max_samples).all()
    if budget.max_samples > first_wave:  # a vote tier: waves follow, and some stop early
        assert result.samples.max() > first_wave
        assert result.samples.min() < budget.max_samples


def test_adaptive_consistency_stops_early_on_agreeing_samples() -> None:
    result = run(FleetPolicy("ac", ac_threshold=0.95))
    assert 1 < result.samples.mean() < 16


def test_too_few_replicas_make_requests_queue_and_latency_grow() -> None:
    policy = FleetPolicy("maj@9", fixed_samples=9)
    roomy = run(policy, replicas=8, rate=4.0)
    tight = run(policy, replicas=1, rate=4.0)
    assert np.nanmedian(tight.wait_seconds) > np.nanmedian(roomy.wait_seconds)
    assert np.nanpercentile(tight.latency_seconds, 99) > np.nanpercentile(
        roomy.latency_seconds, 99)


def test_every_request_is_answered_under_the_hpa() -> None:
    result = run(FleetPolicy("maj@5", fixed_samples=5), replicas=1)
    trace = synthetic_trace([(120.0, 2.0)], seed=0)
    draw = draw_fleet(trace, problems(), seed=0)
    scaled = simulate_fleet(draw, FleetPolicy("maj@5", fixed_samples=5), HpaAutoscaler(2.0),
                            SimConfig(initial_replicas=1))  # fmt: skip
    assert not np.isnan(scaled.latency_seconds).any()
    assert not np.isnan(result.latency_seconds).any()


def test_a_policy_needs_exactly_one_kind() -> None:
    with pytest.raises(Exception, match="exactly one"):
        FleetPolicy("both", fixed_samples=1, ac_threshold=0.9)


def test_ponder_simulate_fleet_prints_the_table_and_writes_json_and_a_plot(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser(prog="ponder")
    add_simulate_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["simulate", "--fleet", "--trace", "azure-conv", "--minutes", "0.5",
                              "--dataset", "gpt4", "--out", str(tmp_path)])
    assert args.run(args) == 0
    out = capsys.readouterr().out
    assert "$/1k ok" in out
    document = json.loads((tmp_path / "fleet.json").read_text())
    policies = [p["policy"] for p in document["policies"]]
    assert {"maj@1", "maj@16", "adaptive-consistency", "ponder-default", "ponder-calibrated",
            "ponder-calibrated-maj16"} <= set(policies)
    calibration = document["calibration"]
    assert calibration["train_problems"] + calibration["held_out_problems"] == 1319
    assert document["dataset"].startswith("mot_gpt4")
    assert {p["autoscaler"] for p in document["policies"]} == {"hpa", "keda", "ponder"}
    quota = [p for p in document["policies"] if p["policy"].startswith("ponder-quota")]
    assert len(quota) == 4
    calibrated_quota = [p for p in document["policies"]
                        if p["policy"].startswith("ponder-calibrated-quota")]  # fmt: skip
    assert len(calibrated_quota) == 4
    oracle = {o["policy"]: o for o in document["oracle"]}
    maj16 = next(p for p in document["policies"] if p["policy"] == "maj@16")
    assert oracle["maj@16"]["gpu_hours"] <= maj16["gpu_hours"]  # the bound is a bound
    assert (tmp_path / "fleet.png").exists()


def test_ponder_simulate_fleet_refuses_an_unknown_trace(capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser(prog="ponder")
    add_simulate_parser(parser.add_subparsers(dest="command"))
    with pytest.raises(SystemExit):
        parser.parse_args(["simulate", "--fleet", "--trace", "nope"])
    assert "invalid choice" in capsys.readouterr().err


@pytest.mark.parametrize(("trigger", "shrinks"), [(ShrinkTrigger.OFF, False),
                                                  (ShrinkTrigger.CEILING, False),
                                                  (ShrinkTrigger.SCALE_UP, True)])
def test_budgets_shrink_while_scale_up_is_in_flight_only_with_that_trigger(
        trigger: ShrinkTrigger, shrinks: bool) -> None:
    """One ready replica, eight more asked for at once and starting for a minute, under a
    burst of hard requests: only the scale-up trigger shrinks, and only while they start."""
    trace = synthetic_trace([(30.0, 20.0), (120.0, 0.5)], seed=1)
    draw = draw_fleet(trace, problems(question=HARD_QUESTION), seed=1)
    policy = FleetPolicy("ponder", budget_policy=default_policy(), shrink=trigger)
    result = simulate_fleet(draw, policy, FixedPool(9), SimConfig(initial_replicas=1),
                            max_replicas=64)  # fmt: skip
    assert result.shrunk.any() is np.bool_(shrinks)
    ready_at = 60.0 + FixedPool.period_seconds
    assert not result.shrunk[result.arrival_seconds > ready_at].any()


def test_at_the_ceiling_budgets_shrink_under_pressure_and_samples_fall() -> None:
    trace = synthetic_trace([(60.0, 20.0)], seed=2)
    draw = draw_fleet(trace, problems(question=HARD_QUESTION), seed=2)
    results = {trigger: simulate_fleet(
        draw, FleetPolicy("ponder", budget_policy=default_policy(), shrink=trigger),
        FixedPool(1), SimConfig(initial_replicas=1), max_replicas=1)
        for trigger in (ShrinkTrigger.OFF, ShrinkTrigger.CEILING)}  # fmt: skip
    assert not results[ShrinkTrigger.OFF].shrunk.any()
    assert results[ShrinkTrigger.CEILING].shrunk.any()
    assert results[ShrinkTrigger.CEILING].samples.mean() < results[ShrinkTrigger.OFF].samples.mean()


def test_the_fleets_router_learns_its_demand_model_from_the_requests_it_finished() -> None:
    every_request = DemandLearningConfig(enabled=True, window_requests=1_000_000,
                                         prior_requests=0)  # fmt: skip
    policy = FleetPolicy("ponder", budget_policy=default_policy(),
                         demand_learning=every_request)  # fmt: skip
    result = run(policy)

    learned = result.demand_models["easy"]
    drew = (result.samples - 2) / (16 - 2)  # the easy tier: a first wave of 2, 16 samples
    assert learned.extra_sample_ratio == pytest.approx(drew.mean())
    assert 100 / 1024 <= learned.token_fill_ratio <= 400 / 1024  # samples of 100-400 tokens


def test_by_default_the_fleets_router_learns_its_demand_and_off_keeps_the_prior() -> None:
    learned = run(FleetPolicy("ponder", budget_policy=default_policy()))
    assert set(learned.demand_models) <= {t.name for t in default_policy().tiers}
    assert learned.demand_models
    kept = run(FleetPolicy("ponder", budget_policy=default_policy(),
                           demand_learning=DemandLearningConfig(enabled=False)))  # fmt: skip
    assert kept.demand_models == {}


def test_calibrated_fleet_policies_are_fitted_on_problems_the_runs_never_draw() -> None:
    from ponder_tools.evaluation.dataset import Dataset
    from ponder_tools.sim.fleet_compare import calibrate_for_fleet

    dataset = Dataset("synthetic", tuple(problems(count=60, samples=16)))
    calibration = calibrate_for_fleet(dataset, seed=3)
    held_out = {p.problem_id for p in calibration.held_out}
    assert 0 < len(held_out) < 60
    assert calibration.train_problems + len(held_out) == 60
    names = [c.name for c in calibration.policies]
    assert names == ["ponder-calibrated", "ponder-calibrated-maj16"]
    # the maj@16-aimed policy never aims higher than the maj@all-matching one
    assert calibration.policies[1].train_accuracy <= calibration.policies[0].train_accuracy + 1e-9



@pytest.mark.parametrize(("need", "duration_seconds", "quota"), [
    ([20, 22, 24, 22, 100], 40.0, 11),  # the mean need over the trace, halved; the tail after it
    ([3, 1], 20.0, 1),                   # never below one replica
    ([40] * 30, 300.0, 20),
])
def test_the_quota_is_half_the_oracles_mean_need_over_the_trace(
        need: list[int], duration_seconds: float, quota: int) -> None:
    oracle = OracleBound(10.0, np.array(need, dtype=np.int64), 0.0, 0.0)
    assert quota_for(oracle, duration_seconds) == quota


def test_the_fleets_router_weighs_demand_over_the_live_routers_default_horizon() -> None:
    assert LOAD_HORIZON_SECONDS == CapacityConfig().horizon_seconds == 30.0


def test_the_tail_is_the_gpu_time_the_pool_holds_after_the_last_arrival() -> None:
    result = run(FleetPolicy("maj@5", fixed_samples=5), replicas=3)
    summary = summarize_fleet(result, gpu_hourly_price=1.0, slo_queue_wait_seconds=2.0)
    last = float(result.arrival_seconds.max())
    assert result.end_seconds > last
    assert summary.tail_gpu_hours == pytest.approx(3 * (result.end_seconds - last) / 3600.0)
    assert summary.tail_gpu_hours < summary.gpu_hours


def test_the_standin_data_set_is_the_standins_own_samples_over_math500_same_under_its_seed(
) -> None:
    own, tracelen = load_samples("standin"), load_samples("standin-tracelen")
    assert len(own.problems) == 500
    assert {p.sample_count for p in own.problems} == {40}
    assert all(p.tokens is not None for p in own.problems)
    assert all(p.tokens is None for p in tracelen.problems)  # the trace's lengths instead
    assert [p.answer_keys for p in own.problems] == [p.answer_keys for p in tracelen.problems]

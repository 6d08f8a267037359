"""The simulator set up from a live stack's configuration, and the figures it is judged on."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import yaml

from ponder_operator.api.spec import parse_spec
from ponder_router.aggregate import StopRuleKind
from ponder_router.budgets import DemandModel, LoadState
from ponder_router.demand import expected_remaining_tokens
from ponder_tools.evaluation.dataset import EvalProblem
from ponder_tools.sim import SimConfig, SimulationError, synthetic_trace
from ponder_tools.sim.crosscheck import (
    Figures,
    ReplicaStats,
    compare_figures,
    format_comparison,
    latency_percentiles,
    mean_figures,
    measure_sample_overhead,
    replica_model,
    replica_stats,
    service_setup,
    with_sample_overhead,
)
from ponder_tools.sim.fleet import FleetPolicy, ShrinkTrigger, draw_fleet, simulate_fleet
from ponder_tools.sim.fleet_target import LoadTestPool
from ponder_tools.sim.traces import Trace

DEMO_SERVICE = Path(__file__).resolve().parents[2] / "examples" / "demo.yaml"




def problems(count: int, samples: int = 8) -> list[EvalProblem]:
    """Problems whose samples all answer right, each 100 tokens long."""
    return [EvalProblem(problem_id=f"p{i}", question="Compute 2 + 3.", reference="5",
                        reference_key="5", answer_keys=("5",) * samples,
                        tokens=(100,) * samples)
            for i in range(count)]  # fmt: skip


def test_a_stand_in_replica_decodes_every_sample_at_its_token_latency_whatever_the_batch() -> None:
    model = replica_model(token_latency_ms=8.0, max_concurrency=6, startup_seconds=4.0)
    assert model.sequence_tokens_per_second(1) == pytest.approx(125.0)
    assert model.sequence_tokens_per_second(6) == pytest.approx(125.0)
    assert model.max_tokens_per_second == pytest.approx(750.0)
    assert (model.max_sequences, model.startup_seconds) == (6, 4.0)


@pytest.mark.parametrize(("latency", "concurrency", "startup"),
                         [(0.0, 6, 1.0), (8.0, 0, 1.0), (8.0, 6, -1.0)])  # fmt: skip
def test_a_replica_model_refuses_impossible_parameters(latency: float, concurrency: int,
                                                       startup: float) -> None:  # fmt: skip
    with pytest.raises(SimulationError):
        replica_model(token_latency_ms=latency, max_concurrency=concurrency,
                      startup_seconds=startup)  # fmt: skip


def test_the_demo_service_gives_the_operators_scaling_spec_and_the_routers_tiers() -> None:
    setup = service_setup(parse_spec(yaml.safe_load(DEMO_SERVICE.read_text())), "math")
    assert (setup.scaling.min_replicas, setup.scaling.max_replicas) == (1, 4)
    assert setup.scaling.throughput_prior_tokens_per_second == 400
    assert setup.scaling.scale_down_stabilization_seconds == 20
    assert setup.interval_seconds == 2.0
    policy = setup.policy.budget_policy
    assert policy is not None
    assert [t.name for t in policy.tiers] == ["easy", "medium", "hard"]
    assert [t.max_samples for t in policy.tiers] == [1, 5, 12]
    assert setup.policy.stop_rule.kind is StopRuleKind.SETTLED
    assert setup.policy.shrink is ShrinkTrigger.CEILING
    assert setup.policy.answer_tokens == 32  # budget forcing is on by default
    assert setup.policy.demand_learning.enabled  # the router's default


def test_the_services_demand_learning_reaches_the_simulated_router() -> None:
    service = yaml.safe_load(DEMO_SERVICE.read_text())
    service["spec"]["budgets"]["demandLearning"] = {"enabled": False, "windowRequests": 50}
    policy = service_setup(parse_spec(service), "math").policy
    assert not policy.demand_learning.enabled
    assert policy.demand_learning.window_requests == 50


@pytest.mark.parametrize(("times", "replicas", "end", "expected"), [
    ([0.0, 10.0], [1, 3], 20.0, ReplicaStats(2.0, 3, 40.0)),
    ([0.0, 10.0, 30.0], [2, 4, 1], 20.0, ReplicaStats(3.0, 4, 60.0)),  # after the end: ignored
    ([5.0], [2], 15.0, ReplicaStats(2.0, 2, 20.0)),  # the window starts at the first reading
])  # fmt: skip
def test_replica_stats_weigh_each_reading_by_how_long_it_held(
        times: list[float], replicas: list[int], end: float, expected: ReplicaStats) -> None:
    assert replica_stats(times, replicas, end) == expected


def test_replica_stats_refuse_a_window_without_readings_or_out_of_order_ones() -> None:
    with pytest.raises(SimulationError):
        replica_stats([30.0], [1], 20.0)
    with pytest.raises(SimulationError):
        replica_stats([0.0, 10.0, 5.0], [1, 2, 3], 20.0)


def test_latency_percentiles_skip_unanswered_requests() -> None:
    p50, p99 = latency_percentiles([1.0, math.nan, 3.0, 2.0])
    assert p50 == 2.0
    assert p99 == pytest.approx(2.98)
    assert all(math.isnan(v) for v in latency_percentiles([math.nan]))


def figures(scale: float, answered: int) -> Figures:
    stats = ReplicaStats(2.0 * scale, 3, 100.0 * scale)
    return Figures(stats, stats, 100, answered, 2.0, 150.0, 1.0, 4.0)


def test_the_comparison_gives_ratios_and_judges_only_replicas_and_answered_requests() -> None:
    rows = compare_figures(figures(1.0, 100), figures(1.3, 90))
    assert rows["ready_mean"]["ratio"] == pytest.approx(1.3)
    assert rows["ready_mean"]["within_tolerance"] is False
    assert rows["answered"]["within_tolerance"] is True
    assert "within_tolerance" not in rows["latency_p99_seconds"]
    assert rows["latency_p99_seconds"]["ratio"] == 1.0
    table = format_comparison(rows)
    assert "ready_mean" in table
    assert "OUT" in table


def test_a_fleet_replay_keeps_scaling_until_the_window_ends_after_its_last_request() -> None:
    trace = synthetic_trace([(20.0, 1.0)], seed=0)
    draw = draw_fleet(trace, problems(8), seed=0)
    config = SimConfig(initial_replicas=1, record_interval_seconds=5.0, min_end_seconds=120.0)
    result = simulate_fleet(draw, FleetPolicy("maj@4", fixed_samples=4), LoadTestPool(1), config)
    assert 115.0 <= result.timeline[0][-1] < 120.0
    assert result.end_seconds >= 115.0
    assert not np.isnan(result.latency_seconds).any()


def test_draw_fleet_gives_each_request_the_problem_it_is_told() -> None:
    trace = synthetic_trace([(10.0, 1.0)], seed=0)
    chosen = [i % 3 for i in range(trace.requests)]
    draw = draw_fleet(trace, problems(8), seed=0, problem_index=chosen)
    assert draw.problem.tolist() == chosen
    with pytest.raises(SimulationError):
        draw_fleet(trace, problems(8), seed=0, problem_index=[0])


def test_a_request_may_launch_more_samples_than_one_replica_runs() -> None:
    trace = synthetic_trace([(10.0, 0.5)], seed=0)
    draw = draw_fleet(trace, problems(8), seed=0)
    small = SimConfig(replica=replica_model(token_latency_ms=8.0, max_concurrency=2,
                                            startup_seconds=1.0))  # fmt: skip
    result = simulate_fleet(draw, FleetPolicy("maj@5", fixed_samples=5), LoadTestPool(1), small)
    assert (result.samples == 5).all()
    assert not np.isnan(result.latency_seconds).any()


def test_mean_figures_average_every_figure_over_the_runs() -> None:
    mean = mean_figures([figures(1.0, 100), figures(2.0, 90)])
    assert mean.ready_replicas == ReplicaStats(3.0, 3.0, 150.0)
    assert mean.answered == 95
    assert mean.latency_p99_seconds == 4.0
    with pytest.raises(SimulationError):
        mean_figures([])


def test_the_sample_overhead_is_what_latency_holds_beyond_the_tokens_at_their_slope() -> None:
    tokens = [40, 50, 60, 70, 80, 90]
    latencies = [0.05 + 0.008 * t for t in tokens]
    latencies[2] += 0.6  # one stalled request: moves the mean, not the slope or the median
    overhead = measure_sample_overhead(latencies, tokens, 8.0)
    assert overhead.seconds_per_token == pytest.approx(0.008)
    assert overhead.median_seconds == pytest.approx(0.05)
    assert overhead.mean_seconds == pytest.approx(0.15)
    assert overhead.requests == 6


def test_the_sample_overhead_falls_back_to_the_token_latency_and_is_never_negative() -> None:
    assert measure_sample_overhead([0.5, 0.7], [50, 50], 8.0).median_seconds == \
        pytest.approx(0.2)  # fmt: skip
    assert measure_sample_overhead([0.1, 0.2], [50, 60], 8.0).mean_seconds == 0.0
    with pytest.raises(SimulationError):
        measure_sample_overhead([0.5], [50], 8.0)


def test_an_overhead_lengthens_every_sample_by_the_tokens_written_in_that_time() -> None:
    trace = synthetic_trace([(10.0, 0.5)], seed=0)
    draw = draw_fleet(trace, problems(4), seed=0)
    longer, extra = with_sample_overhead(draw, 0.04, 8.0)
    assert extra == 5
    assert all(t == 105 for request in longer.tokens for t in request)


class DemandProbe:
    """Holds the pool and keeps the demand each tick reads."""

    name = "demand-probe"
    period_seconds = 0.5

    def __init__(self, replicas: int) -> None:
        self.replicas = replicas
        self.demand_tokens: list[tuple[float, float]] = []

    def start(self, replicas: int, now_seconds: float) -> None:
        del replicas, now_seconds

    def decide(self, observation: object, now_seconds: float) -> int:
        self.demand_tokens.append((now_seconds, getattr(observation, "demand_tokens", -1.0)))
        return self.replicas


def test_the_fleet_publishes_the_routers_demand_with_running_samples_at_their_expected_rest(
        ) -> None:  # fmt: skip
    trace = Trace("one", np.array([0.1]), np.zeros(1, dtype=np.int64),
                  np.zeros(1, dtype=np.int64))  # fmt: skip
    draw = draw_fleet(trace, problems(1), seed=0)
    policy = FleetPolicy("maj@4", fixed_samples=4, answer_tokens=32)
    probe = DemandProbe(1)
    simulate_fleet(draw, policy, probe, SimConfig(initial_replicas=1))
    budget, _ = policy.budget_for(problems(1)[0], LoadState.idle())
    running = expected_remaining_tokens(budget, DemandModel(), samples_finished=0,
                                        running_samples=4, running_tokens=0.0,
                                        answer_tokens=32)  # fmt: skip
    assert dict(probe.demand_tokens)[0.5] == pytest.approx(running)
    assert dict(probe.demand_tokens)[0.0] == 0.0

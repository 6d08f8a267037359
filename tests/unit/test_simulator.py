"""The trace-replay simulator: conservation, the serving model, the baselines and the oracle.

Small synthetic workloads keep every test fast; the tests that read the shared public data
skip when it is not there.
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pytest

from ponder_operator.policy.scaling import ScalingSpec
from ponder_router.budgets import default_policy
from ponder_tools.data import shared_data_dir
from ponder_tools.sim import (
    POLICY_NAMES,
    Autoscaler,
    HpaAutoscaler,
    KedaAutoscaler,
    Observation,
    PonderAutoscaler,
    ReplicaModel,
    SimConfig,
    SimulationError,
    Trace,
    Workload,
    build_autoscalers,
    build_workload,
    compute_oracle,
    derive_capacity_target,
    gpu_hourly_price,
    load_problems,
    load_trace,
    run_comparison,
    servegen_trace,
    simulate,
    synthetic_trace,
)
from ponder_tools.sim.cli import add_simulate_parser, run_simulate

HAVE_DATA = (shared_data_dir() / "traces" / "AzureLLMInferenceTrace_conv.csv").is_file()
needs_data = pytest.mark.skipif(not HAVE_DATA, reason="shared data folder not present")


def make_workload(
    trace: Trace, sequences: int | list[int] = 2, tokens: int | list[int] = 400,
    expected_tokens: float | None = None,
) -> Workload:
    count = trace.requests
    seqs = np.broadcast_to(np.asarray(sequences, dtype=np.int64), (count,)).copy()
    toks = np.broadcast_to(np.asarray(tokens, dtype=np.int64), (count,)).copy()
    expected = (seqs * toks).astype(np.float64) if expected_tokens is None else np.full(
        count, expected_tokens)
    return Workload(
        trace=trace, tier_names=("only",), tier=np.zeros(count, np.int64),
        difficulty=np.full(count, 0.5), sequences=seqs, tokens_per_sequence=toks,
        expected_tokens=expected, expected_sequence_tokens=toks.astype(np.float64),
    )


def burst_workload() -> Workload:
    """10 min quiet, 5 min burst at ten times the rate, 15 min quiet."""
    trace = synthetic_trace([(600.0, 1.0), (300.0, 10.0), (900.0, 1.0)], seed=3)
    return make_workload(trace, sequences=2, tokens=600)


@dataclass
class Recorder:
    """Wraps an autoscaler and keeps every (time, observation, decision)."""

    inner: Autoscaler
    calls: list[tuple[float, Observation, int]] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.inner.name

    @property
    def period_seconds(self) -> float:
        return self.inner.period_seconds

    def start(self, replicas: int, now_seconds: float) -> None:
        self.inner.start(replicas, now_seconds)

    def decide(self, observation: Observation, now_seconds: float) -> int:
        desired = self.inner.decide(observation, now_seconds)
        self.calls.append((now_seconds, observation, desired))
        return desired


def observation(outstanding: int, replicas: int) -> Observation:
    return Observation(
        queued_requests=0, inflight_requests=outstanding, inflight_sequences=2 * outstanding,
        demand_tokens=1000.0 * outstanding, spec_replicas=replicas, ready_replicas=replicas,
        pending_unschedulable_replicas=0,
    )


# -- the engine ------------------------------------------------------------------------


@pytest.mark.parametrize("policy", POLICY_NAMES)
def test_the_simulator_completes_every_request(policy: str) -> None:
    workload = burst_workload()
    config = SimConfig()
    target = derive_capacity_target(workload, config.replica)
    [autoscaler] = build_autoscalers(target, config, max_replicas=16, names=[policy])
    result = simulate(workload, autoscaler, config)
    assert result.completed == workload.requests
    assert np.all(result.wait_seconds >= 0.0)
    assert np.all(result.latency_seconds >= result.wait_seconds)
    assert result.end_seconds >= workload.trace.duration_seconds


def test_a_lone_request_decodes_at_the_single_sequence_rate() -> None:
    trace = Trace("one", np.array([0.0]), np.array([1000]), np.array([100]))
    model = ReplicaModel(prefill_tokens_per_second=10_000.0)
    spec = ScalingSpec(min_replicas=1, max_replicas=1)
    result = simulate(make_workload(trace, sequences=1, tokens=500), PonderAutoscaler(spec),
                      SimConfig(replica=model))
    decode_seconds = 500 / model.sequence_tokens_per_second(1)
    assert result.wait_seconds[0] == 0.0
    assert result.ttft_seconds[0] == pytest.approx(0.1)
    assert result.latency_seconds[0] == pytest.approx(0.1 + decode_seconds)


def test_sequences_on_one_replica_share_its_batched_rate() -> None:
    trace = Trace("two", np.array([0.0, 0.0]), np.zeros(2, np.int64), np.zeros(2, np.int64))
    model = ReplicaModel(prefill_tokens_per_second=math.inf)
    spec = ScalingSpec(min_replicas=1, max_replicas=1)
    result = simulate(make_workload(trace, sequences=1, tokens=[300, 600]),
                      PonderAutoscaler(spec), SimConfig(replica=model))
    both, alone = model.sequence_tokens_per_second(2), model.sequence_tokens_per_second(1)
    first = 300 / both
    assert result.latency_seconds[0] == pytest.approx(first)
    assert result.latency_seconds[1] == pytest.approx(first + 300 / alone)


def test_requests_queue_when_every_slot_is_busy() -> None:
    trace = Trace("full", np.array([0.0, 1.0]), np.zeros(2, np.int64), np.zeros(2, np.int64))
    model = ReplicaModel(max_sequences=4, prefill_tokens_per_second=math.inf)
    spec = ScalingSpec(min_replicas=1, max_replicas=1)
    result = simulate(make_workload(trace, sequences=3, tokens=100), PonderAutoscaler(spec),
                      SimConfig(replica=model))
    assert result.wait_seconds[1] == pytest.approx(result.latency_seconds[0] - 1.0)


def test_a_fixed_pool_costs_its_replicas_for_the_whole_replay() -> None:
    workload = make_workload(synthetic_trace([(300.0, 1.0)], seed=1))
    spec = ScalingSpec(min_replicas=3, max_replicas=3)
    result = simulate(workload, PonderAutoscaler(spec), SimConfig(initial_replicas=3))
    assert result.gpu_seconds == pytest.approx(3 * result.end_seconds)
    assert result.scale_changes == 0


def test_a_request_wider_than_a_replica_is_refused() -> None:
    workload = make_workload(synthetic_trace([(10.0, 1.0)], seed=1), sequences=65)
    with pytest.raises(SimulationError, match="sequences"):
        simulate(workload, PonderAutoscaler(ScalingSpec()), SimConfig())


def test_the_scaling_loop_ticks_from_its_phase_and_sees_only_what_is_open_then() -> None:
    # One request open from 0 s to about 1 s; a 5 s loop that first ticks at 0.5 s sees
    # it and grows the pool, one that first ticks at 2 s never sees any demand.
    trace = Trace("one", np.array([0.0]), np.zeros(1, np.int64), np.zeros(1, np.int64))
    model = ReplicaModel(prefill_tokens_per_second=math.inf)
    spec = ScalingSpec(min_replicas=1, max_replicas=4, target_drain_seconds=1,
                       throughput_prior_tokens_per_second=40.0)
    workload = make_workload(trace, sequences=1, tokens=100)
    seen = {}
    for phase in (0.5, 2.0):
        recorder = Recorder(PonderAutoscaler(spec, period_seconds=5.0))
        simulate(workload, recorder, SimConfig(replica=model, first_tick_seconds=phase,
                                               min_end_seconds=12.0))  # fmt: skip
        assert [t for t, _, _ in recorder.calls][:2] == [phase, phase + 5.0]
        seen[phase] = recorder.calls[0]
    assert seen[0.5][1].demand_tokens > 0
    assert seen[0.5][2] > 1
    assert seen[2.0][1].demand_tokens == 0
    assert seen[2.0][2] == 1
    with pytest.raises(SimulationError, match="first scaling tick"):
        simulate(workload, PonderAutoscaler(spec), SimConfig(first_tick_seconds=-1.0))


# -- Ponder in the replay ------------------------------------------------------------------


def test_ponder_scales_up_under_a_burst_and_down_after_it() -> None:
    workload = burst_workload()
    config = SimConfig(initial_replicas=1)
    target = derive_capacity_target(workload, config.replica)
    [ponder] = build_autoscalers(target, config, max_replicas=32, names=["ponder"])
    result = simulate(workload, ponder, config)
    line = result.timeline
    before = line.spec_replicas[line.time_seconds < 590].max()
    during = line.spec_replicas[(line.time_seconds > 600) & (line.time_seconds < 900)].max()
    after = line.spec_replicas[line.time_seconds > 1500]
    assert during >= 3 * before
    assert after.max() <= before + 1
    assert result.completed == workload.requests


def test_ponder_does_not_grow_while_replicas_are_unschedulable() -> None:
    workload = burst_workload()
    config = SimConfig(gpu_capacity=3, initial_replicas=1)
    target = derive_capacity_target(workload, config.replica)
    [ponder] = build_autoscalers(target, config, max_replicas=32, names=["ponder"])
    recorder = Recorder(ponder)
    result = simulate(workload, recorder, config)
    stuck = [(obs, desired) for _, obs, desired in recorder.calls
             if obs.pending_unschedulable_replicas]
    assert stuck, "the burst should outgrow three GPUs"
    assert all(desired <= obs.spec_replicas for obs, desired in stuck)
    assert result.completed == workload.requests
    assert result.timeline.gpu_replicas.max() <= 3


# -- baselines -------------------------------------------------------------------------------


def test_hpa_holds_its_scale_down_for_the_300_second_window() -> None:
    hpa = HpaAutoscaler(target_requests_per_pod=10.0, max_replicas=50)
    hpa.start(2, 0.0)
    assert hpa.decide(observation(100, 2), 0.0) == 6  # rate limit: max(+100 %, +4 pods)
    assert hpa.decide(observation(100, 6), 15.0) == 10
    held = [hpa.decide(observation(0, 10), float(t)) for t in range(30, 315, 15)]
    assert held == [10] * len(held)  # the 100-request recommendation at 15 s still counts
    assert hpa.decide(observation(0, 10), 315.0) == 1


def test_hpa_ignores_changes_inside_its_tolerance() -> None:
    hpa = HpaAutoscaler(target_requests_per_pod=10.0)
    hpa.start(10, 0.0)
    assert hpa.decide(observation(108, 10), 0.0) == 10
    assert hpa.decide(observation(115, 10), 15.0) == 12


def test_hpa_in_the_replay_never_scales_down_inside_its_window() -> None:
    workload = burst_workload()
    config = SimConfig()
    target = derive_capacity_target(workload, config.replica)
    recorder = Recorder(HpaAutoscaler(target.requests_per_replica, max_replicas=32))
    simulate(workload, recorder, config)
    raw: list[tuple[float, int]] = []
    scale_downs = 0
    for now, obs, desired in recorder.calls:
        usage = obs.queued_requests + obs.inflight_requests
        current = obs.spec_replicas
        ratio = usage / (target.requests_per_replica * current)
        raw.append((now, current if abs(ratio - 1) <= 0.1 else
                    math.ceil(usage / target.requests_per_replica)))
        window = [r for t, r in raw if t > now - 300.0]
        # Never below the largest recommendation of the last 300 s (or the current scale).
        assert desired >= min(max(window), current), (now, desired, window)
        scale_downs += desired < current
    assert scale_downs, "the burst should end in scale-downs for the window to hold back"


def test_keda_activates_on_its_poll_and_scales_to_zero_after_the_cooldown() -> None:
    keda = KedaAutoscaler(target_requests_per_pod=10.0)
    keda.start(1, 0.0)
    assert keda.decide(observation(0, 1), 0.0) == 1
    decisions = {t: keda.decide(observation(0, 1), float(t)) for t in range(15, 330, 15)}
    assert decisions[285] == 1
    assert decisions[300] == 0
    assert keda.decide(observation(5, 0), 315.0) == 0  # between polls nothing happens
    assert keda.decide(observation(5, 0), 330.0) == 1


def test_the_request_count_variant_sees_requests_not_their_difficulty() -> None:
    spec = ScalingSpec(max_replicas=50, throughput_prior_tokens_per_second=1000.0,
                       target_drain_seconds=10.0)
    blind = PonderAutoscaler(spec, tokens_per_request=1000.0, samples_per_request=2.0)
    blind.start(1, 0.0)
    heavy = replace(observation(20, 1), demand_tokens=1_000_000.0)
    assert blind.decide(heavy, 0.0) == 2
    aware = PonderAutoscaler(spec)
    aware.start(1, 0.0)
    assert aware.decide(heavy, 0.0) == 50


# -- the oracle --------------------------------------------------------------------------------


def test_the_oracle_is_a_lower_bound_on_every_policy() -> None:
    workload = burst_workload()
    comparison = run_comparison(workload, SimConfig(), gpu_hourly_price=1.0, max_replicas=32)
    oracle = comparison.oracle
    assert oracle.fluid_gpu_seconds <= oracle.gpu_seconds
    for result in comparison.results:
        assert oracle.gpu_seconds <= result.gpu_seconds, result.policy
    for summary in comparison.summaries:
        assert summary.oracle_ratio >= 1.0
        assert summary.completed == workload.requests


def test_the_oracle_runs_whole_replicas_for_the_peak_of_each_interval() -> None:
    model = ReplicaModel()
    speed = model.sequence_tokens_per_second(model.max_sequences)
    tokens = round(speed * 30)  # each request keeps its sequences busy for 30 s
    trace = Trace("flat", np.array([0.0, 60.0]), np.zeros(2, np.int64), np.zeros(2, np.int64))
    workload = make_workload(trace, sequences=[64, 40], tokens=tokens)
    per_minute = compute_oracle(workload, model, 60.0)
    assert per_minute.replicas.tolist() == [1, 1]
    assert per_minute.gpu_seconds == pytest.approx(120.0)
    per_ten = compute_oracle(workload, model, 10.0)
    assert per_ten.replicas.tolist() == [1, 1, 1, 0, 0, 0, 1, 1, 1]
    assert per_ten.gpu_seconds == pytest.approx(60.0)
    assert per_ten.fluid_gpu_seconds == pytest.approx(30.0 * 104 / 64, rel=1e-6)


def test_the_oracle_counts_overlapping_requests_at_their_peak() -> None:
    model = ReplicaModel()
    speed = model.sequence_tokens_per_second(model.max_sequences)
    trace = Trace("overlap", np.array([0.0, 5.0]), np.zeros(2, np.int64),
                  np.zeros(2, np.int64))
    oracle = compute_oracle(make_workload(trace, sequences=40, tokens=round(speed * 8)),
                            model, 60.0)
    assert oracle.replicas.tolist() == [2]


# -- data, workload, prices, CLI --------------------------------------------------------------


@needs_data
@pytest.mark.parametrize(("name", "requests"), [
    ("azure-conv", 19_366), ("azure-code", 8_819), ("mooncake", 12_031)])
def test_the_public_traces_load_in_arrival_order(name: str, requests: int) -> None:
    trace = load_trace(name)
    assert trace.requests == requests
    assert trace.arrival_seconds[0] == 0.0
    assert 3400.0 < trace.duration_seconds < 3600.0
    assert np.all(np.diff(trace.arrival_seconds) >= 0.0)


@needs_data
def test_the_servegen_day_is_drawn_at_its_real_rates_and_lengths() -> None:
    day = load_trace("servegen-r1")
    # 144 windows summing to 1,383,669 expected requests; the Poisson draw stays within 0.5 %.
    assert day.requests == pytest.approx(1_383_669, rel=0.005)
    assert 86_000.0 < day.duration_seconds < 86_400.0
    assert np.all(np.diff(day.arrival_seconds) >= 0.0)
    # The data's README: whole-day output tokens mean 1,527, p50 792, p99 12,607.
    assert day.output_tokens.mean() == pytest.approx(1527, rel=0.02)
    assert np.percentile(day.output_tokens, 50) == pytest.approx(792, rel=0.05)
    assert np.array_equal(load_trace("servegen-r1", seed=0).arrival_seconds[:100],
                          day.arrival_seconds[:100])  # fmt: skip


@needs_data
def test_a_compressed_servegen_day_keeps_its_shape_at_the_mean_rate_asked() -> None:
    full = servegen_trace("servegen-r1", seed=2)
    hour = servegen_trace("servegen-r1", window_seconds=25.0, mean_rate_rps=5.0, seed=2)
    assert hour.duration_seconds == pytest.approx(3600.0, abs=25.0)
    assert hour.requests == pytest.approx(5.0 * 3600.0, rel=0.03)
    per_window = [np.histogram(t.arrival_seconds, bins=144, range=(0.0, 144 * w))[0]
                  for t, w in ((full, 600.0), (hour, 25.0))]  # fmt: skip
    assert np.corrcoef(*per_window)[0, 1] > 0.9
    with pytest.raises(SimulationError, match="positive"):
        servegen_trace("servegen-r1", mean_rate_rps=0.0)
    with pytest.raises(SimulationError, match="unknown ServeGen trace"):
        servegen_trace("azure-conv")


def test_an_unknown_trace_is_refused() -> None:
    with pytest.raises(SimulationError, match="unknown trace"):
        load_trace("no-such-trace")


@needs_data
def test_the_workload_follows_the_router_budgets() -> None:
    trace = load_trace("azure-conv").head(600.0)
    workload = build_workload(trace, load_problems(), seed=1)
    assert workload.requests == trace.requests
    assert np.all(workload.sequences >= 1)
    policy = default_policy()
    assert np.all(workload.sequences <= max(t.max_samples for t in policy.tiers))
    assert np.all(workload.tokens_per_sequence <= max(t.max_tokens for t in policy.tiers))
    # the router's expectation is right on average, within the capping of long samples
    ratio = workload.generated_tokens.sum() / workload.expected_tokens.sum()
    assert 0.7 < ratio < 1.1
    assert set(np.unique(workload.tier)) <= set(range(len(workload.tier_names)))


@needs_data
def test_a_shifting_mix_makes_odd_periods_harder() -> None:
    trace = load_trace("azure-conv").head(1200.0)
    workload = build_workload(trace, load_problems(), seed=1, mix_shift_seconds=600.0)
    odd = trace.arrival_seconds >= 600.0
    assert workload.difficulty[odd].min() >= workload.difficulty[~odd].max()
    assert workload.expected_tokens[odd].mean() > 2 * workload.expected_tokens[~odd].mean()


@needs_data
def test_the_gpu_price_is_the_median_h100_on_demand_price_per_gpu() -> None:
    assert gpu_hourly_price("H100") == pytest.approx(9.074)
    with pytest.raises(SimulationError, match="no on-demand price"):
        gpu_hourly_price("no-such-gpu")


def simulate_args(*argv: str) -> argparse.Namespace:
    """``ponder simulate argv`` as the CLI parses it."""
    parser = argparse.ArgumentParser(prog="ponder")
    add_simulate_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(["simulate", *argv])


@needs_data
def test_the_spot_price_is_the_median_spot_price_per_gpu_of_the_offerings_with_one() -> None:
    # GCP a3 3.8183 per GPU (four sizes), Azure 3.8914, 1.4581, 7.7827/2, 23.6204/8,
    # AWS p5 26.7861/8; Lambda sells no spot: the median of the nine is GCP's.
    assert gpu_hourly_price("H100", spot=True) == pytest.approx(3.81825)
    with pytest.raises(SimulationError, match="no spot price"):
        gpu_hourly_price("no-such-gpu", spot=True)


@needs_data
def test_ponder_simulate_replays_a_compressed_servegen_day_at_spot_prices(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = simulate_args("--trace", "servegen-r1", "--day-minutes", "24",
                         "--mean-rate-rps", "2", "--duration-seconds", "300",
                         "--policies", "ponder,hpa", "--spot", "--out", str(tmp_path))
    assert args.run(args) == 0
    assert "$3.82/GPU-h spot" in capsys.readouterr().out
    document = json.loads((tmp_path / "simulate_servegen-r1.json").read_text())
    assert document["settings"]["spot"] is True
    ponder = next(p for p in document["policies"] if p["policy"] == "ponder")
    # 24 minutes hold the 144 windows at 10 s each.
    drawn = servegen_trace("servegen-r1", window_seconds=10.0, mean_rate_rps=2.0, seed=0)
    assert ponder["requests"] == drawn.head(300.0).requests
    assert ponder["cost_usd"] == pytest.approx(ponder["gpu_hours"] * 3.81825)
    wrong = simulate_args("--trace", "azure-conv", "--day-minutes", "24")
    assert wrong.run(wrong) == 2
    assert "apply to servegen-r1 only" in capsys.readouterr().err


@needs_data
def test_ponder_simulate_prints_a_table_and_writes_results(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = simulate_args("--trace", "azure-conv", "--startup-seconds", "30",
                         "--duration-seconds", "300", "--out", str(tmp_path))
    assert args.run(args) == 0
    out = capsys.readouterr().out
    assert "ponder-requests" in out
    assert "oracle" in out
    document = json.loads((tmp_path / "simulate_azure-conv.json").read_text())
    assert [p["policy"] for p in document["policies"]] == list(POLICY_NAMES)
    assert document["settings"]["startup_seconds"] == 30.0


def test_ponder_simulate_refuses_an_unknown_policy(capsys: pytest.CaptureFixture[str]) -> None:
    args = argparse.Namespace(policies="ponder,nope")
    assert run_simulate(args) == 2
    assert "unknown" in capsys.readouterr().err

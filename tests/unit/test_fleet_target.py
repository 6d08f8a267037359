"""The capacity target measured on a fixed pool, as a load test would read it."""

from __future__ import annotations

import numpy as np

from ponder_router.budgets import default_policy
from ponder_tools.evaluation.dataset import EvalProblem
from ponder_tools.sim import SimConfig, synthetic_trace
from ponder_tools.sim.baselines import derive_capacity_target
from ponder_tools.sim.fleet import FleetPolicy, calibration_workload, draw_fleet
from ponder_tools.sim.fleet_target import measure_capacity_target


def contested_problems(count: int = 30, samples: int = 48) -> list[EvalProblem]:
    """Problems whose samples split over three answers: a vote draws many waves."""
    rng = np.random.default_rng(0)
    return [EvalProblem(problem_id=f"p{i}", question="Compute 2 + 3 and explain.",
                        reference="1", reference_key="1",
                        answer_keys=tuple(str(int(k)) for k in rng.integers(1, 4, size=samples)),
                        tokens=tuple(int(t) for t in rng.integers(200, 300, size=samples)))
            for i in range(count)]  # fmt: skip


def targets(policy: FleetPolicy) -> tuple[float, float, float, float]:
    """(derived drain, measured drain, derived requests/pod, measured requests/pod)."""
    draw = draw_fleet(synthetic_trace([(120.0, 1.0)], seed=0), contested_problems(), seed=0)
    workload = calibration_workload(draw, policy)
    config = SimConfig()
    derived = derive_capacity_target(workload, config.replica)
    measured = measure_capacity_target(draw, policy, derived, config, workload, replicas=8)
    return (derived.drain_seconds, measured.drain_seconds, derived.requests_per_replica,
            measured.requests_per_replica)  # fmt: skip


def test_a_one_wave_policy_measures_the_drain_the_workload_derives() -> None:
    derived, measured, _, _ = targets(FleetPolicy("maj@16", fixed_samples=16))
    assert abs(measured - derived) <= 0.1 * derived


def test_a_many_wave_policy_keeps_its_demand_and_requests_counted_longer_than_one_wave(
) -> None:
    derived, measured, derived_requests, measured_requests = targets(
        FleetPolicy("ponder", budget_policy=default_policy()))
    assert measured > 1.5 * derived
    assert measured_requests > 1.5 * derived_requests

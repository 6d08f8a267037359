"""The demand model learned from finished requests: where it starts, where it converges,
what it ignores, and what the executor publishes once it has learned."""

from __future__ import annotations

import pytest

from ponder_router.aggregate import StopRule
from ponder_router.budgets import (
    Budget,
    DemandModel,
    LoadState,
    Strategy,
    assign_budget,
    default_policy,
)
from ponder_router.demand_learning import MIN_FILL_RATIO, DemandLearner, DemandLearningConfig
from ponder_router.difficulty import DifficultyEstimate
from ponder_router.plan import RequestPlan
from test_router_executor import EASY, config, executor, run, spec
from test_router_fakes import FakeFleet, Script, constant

PRIOR = DemandModel(token_fill_ratio=0.6, extra_sample_ratio=0.3)


def budget(*, tier: str = "hard", max_samples: int = 16, wave_size: int = 4,
           cap: int = 1000, shrunk: bool = False,
           strategy: Strategy = Strategy.VOTE) -> Budget:  # fmt: skip
    return Budget(tier=tier, strategy=strategy, max_tokens_per_sample=cap,
                  max_samples=max_samples, wave_size=wave_size, expected_tokens=0.0,
                  shrunk=shrunk)  # fmt: skip


def finished(b: Budget, *, launched: int, tokens: int) -> RequestPlan:
    """A plan that launched ``launched`` samples, each finished after ``tokens`` tokens."""
    plan = RequestPlan(b, StopRule())
    plan.launch(launched)
    for index in range(launched):
        plan.finish(index, "42", tokens)
    return plan


def learner(**knobs: int) -> DemandLearner:
    return DemandLearner(PRIOR, DemandLearningConfig(**knobs))


def test_a_tier_no_request_has_finished_in_uses_the_configured_prior() -> None:
    assert learner().model("hard") == PRIOR
    assert learner().models() == {}


def test_the_learned_model_converges_to_the_observed_fill_and_extra_samples() -> None:
    demand = learner(window_requests=100, prior_requests=10)
    b = budget(max_samples=16, wave_size=4, cap=1000)
    for _ in range(1000):
        demand.observe(finished(b, launched=7, tokens=200))  # 3 of 12 extra; 20 % of the cap

    model = demand.model("hard")

    assert model.token_fill_ratio == pytest.approx(0.2, abs=1e-4)
    assert model.extra_sample_ratio == pytest.approx(0.25, abs=1e-4)
    assert demand.requests("hard") == 1000


def test_the_prior_counts_as_prior_requests_before_the_first_ones() -> None:
    demand = learner(window_requests=100, prior_requests=9)
    demand.observe(finished(budget(), launched=4, tokens=100))

    model = demand.model("hard")

    assert model.token_fill_ratio == pytest.approx((9 * 0.6 + 0.1) / 10)
    assert model.extra_sample_ratio == pytest.approx((9 * 0.3 + 0.0) / 10)


def test_memory_is_bounded_old_requests_fade_after_the_window() -> None:
    demand = learner(window_requests=50, prior_requests=0)
    for _ in range(500):
        demand.observe(finished(budget(), launched=16, tokens=1000))
    for _ in range(500):
        demand.observe(finished(budget(), launched=4, tokens=100))

    model = demand.model("hard")

    assert model.extra_sample_ratio < 1e-4
    assert model.token_fill_ratio == pytest.approx(0.1, abs=1e-4)


@pytest.mark.parametrize(("tokens", "fill"), [(5000, 1.0), (0, MIN_FILL_RATIO)])
def test_the_learned_fill_is_clamped_to_the_models_range(tokens: int, fill: float) -> None:
    demand = learner(prior_requests=0)
    demand.observe(finished(budget(cap=1000), launched=4, tokens=tokens))

    assert demand.model("hard").token_fill_ratio == pytest.approx(fill)


def test_each_tier_learns_its_own_model() -> None:
    demand = learner(prior_requests=0)
    demand.observe(finished(budget(tier="easy", wave_size=2), launched=2, tokens=100))
    demand.observe(finished(budget(tier="hard"), launched=16, tokens=900))

    assert demand.model("easy").extra_sample_ratio == 0.0
    assert demand.model("hard").extra_sample_ratio == 1.0
    assert demand.models().keys() == {"easy", "hard"}


@pytest.mark.parametrize("b", [
    budget(shrunk=True),  # the load shrink cut its envelope
    budget(strategy=Strategy.BEST_OF_N),  # runs every sample it may
    budget(max_samples=4, wave_size=4),  # no samples past the first wave
], ids=["shrunk", "best-of-n", "one-wave"])  # fmt: skip
def test_a_budget_without_an_adaptive_envelope_teaches_no_extra_samples(b: Budget) -> None:
    demand = learner(prior_requests=0)
    demand.observe(finished(b, launched=b.max_samples, tokens=500))

    assert demand.model("hard").extra_sample_ratio == PRIOR.extra_sample_ratio
    assert demand.model("hard").token_fill_ratio == pytest.approx(0.5)


def test_a_request_with_no_finished_sample_teaches_nothing() -> None:
    demand = learner()
    plan = RequestPlan(budget(), StopRule())
    plan.launch(4)
    demand.observe(plan)
    assert demand.requests("hard") == 0


def test_the_load_shrink_divides_the_learned_expected_samples() -> None:
    policy = default_policy()
    load = LoadState(pressure=2.0, at_ceiling=True)
    hard = DifficultyEstimate(score=0.95)
    learned = {"hard": DemandModel(token_fill_ratio=0.6, extra_sample_ratio=0.0)}

    prior_cut = assign_budget(hard, "auto", load, policy)
    learned_cut = assign_budget(hard, "auto", load, policy, demand=learned)

    assert prior_cut.max_samples == 11  # (4 + 0.3 x 60) / 2
    assert learned_cut.max_samples == 2  # (4 + 0 x 60) / 2
    assert learned_cut.expected_tokens < prior_cut.expected_tokens


async def test_a_services_published_demand_falls_after_many_early_stopping_requests() -> None:
    fleet = FakeFleet(constant(Script(answer="42")))  # every first wave agrees
    ex = executor(fleet, config(demand_learning={"enabled": True}))
    before = ex.plan(spec(EASY)).demand_tokens()

    for _ in range(30):
        await run(ex, spec(EASY))
    after = ex.plan(spec(EASY)).demand_tokens()

    learned = ex.demand_model(ex.config, "easy")
    assert learned.extra_sample_ratio == pytest.approx(0.3 * 10 / 40)  # 10 prior, 30 early
    assert after < 0.5 * before


async def test_with_learning_off_the_published_demand_keeps_the_configured_prior() -> None:
    fleet = FakeFleet(constant(Script(answer="42")))
    ex = executor(fleet, config(demand_learning={"enabled": False}))
    before = ex.plan(spec(EASY)).demand_tokens()

    for _ in range(30):
        await run(ex, spec(EASY))

    assert ex.plan(spec(EASY)).demand_tokens() == before
    assert ex.demand_model(ex.config, "easy") == ex.config.budgets.demand_model

"""The budget policy: tiers by difficulty and effort, client caps, load shrink, demand."""

from __future__ import annotations

import math
from typing import Any

import pytest
from pydantic import ValidationError

from ponder_router.aggregate import StopRule, StopRuleKind, should_stop, tally
from ponder_router.budgets import (
    AGREEMENT_FLOOR,
    AGREEMENT_RELIEF_EXPONENT,
    Budget,
    BudgetPolicy,
    DemandModel,
    LoadState,
    ShrinkResource,
    ShrinkStep,
    Strategy,
    Tier,
    assign_budget,
    assign_tier,
    default_policy,
    expected_request_tokens,
)
from ponder_router.difficulty import DifficultyEstimate
from ponder_router.errors import PolicyError

SATURATED = LoadState(pressure=3.0, at_ceiling=True)


def estimate(score: float) -> DifficultyEstimate:
    return DifficultyEstimate(score=score)


def tier(name: str, max_difficulty: float, **overrides: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "name": name,
        "maxDifficulty": max_difficulty,
        "maxTokens": 2048,
        "maxSamples": 4,
        "initialSamples": 2,
        "strategy": "vote",
    }
    return spec | overrides


def five_tier_policy() -> BudgetPolicy:
    return BudgetPolicy.model_validate(
        {
            "tiers": [tier(f"t{i}", bound) for i, bound in enumerate((0.2, 0.4, 0.6, 0.8, 1.0))],
            "effortTiers": {"low": "t1", "medium": "t2", "high": "t3"},
        }
    )


def test_the_default_policy_survives_a_round_trip_through_its_configmap_form() -> None:
    policy = default_policy()
    rendered = policy.model_dump(mode="json", by_alias=True)
    assert "maxDifficulty" in rendered["tiers"][0]
    assert BudgetPolicy.model_validate(rendered) == policy


@pytest.mark.parametrize(
    ("score", "effort", "expected_tier"),
    [
        (0.05, "auto", "easy"),
        (0.2, "auto", "easy"),
        (0.2001, "auto", "medium"),
        (0.35, "auto", "medium"),
        (0.95, "auto", "hard"),
        (1.0, "auto", "hard"),
        (0.95, "low", "easy"),
        (0.05, "high", "hard"),
        (0.05, "medium", "medium"),
        (0.95, "medium", "medium"),
    ],
)
def test_the_default_policy_picks_a_tier_from_score_and_effort(
    score: float, effort: str, expected_tier: str
) -> None:
    assert assign_tier(estimate(score), effort, default_policy()).name == expected_tier


@pytest.mark.parametrize(
    ("score", "effort", "expected_tier"),
    [
        (0.1, "low", "t0"),  # low never raises an easy request
        (0.9, "low", "t1"),  # low caps a hard one at its tier
        (0.9, "high", "t4"),  # high never lowers a hard request
        (0.1, "high", "t3"),  # high lifts an easy one to its tier
        (0.9, "medium", "t2"),  # medium pins its tier
        (0.5, "auto", "t2"),
    ],
)
def test_low_effort_caps_and_high_effort_floors_the_estimated_tier(
    score: float, effort: str, expected_tier: str
) -> None:
    assert assign_tier(estimate(score), effort, five_tier_policy()).name == expected_tier


def test_an_effort_the_policy_does_not_map_uses_the_estimate() -> None:
    policy = BudgetPolicy.model_validate({"tiers": [tier("a", 0.5), tier("b", 1.0)]})
    assert assign_tier(estimate(0.9), "low", policy).name == "b"


def test_an_unknown_effort_is_refused_with_the_allowed_values() -> None:
    with pytest.raises(PolicyError, match="auto, low, medium, high"):
        assign_tier(estimate(0.5), "extreme", default_policy())


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"tiers": [tier("a", 0.6), tier("b", 0.4), tier("c", 1.0)]}, "increasing"),
        ({"tiers": [tier("a", 0.5), tier("b", 0.5), tier("c", 1.0)]}, "increasing"),
        ({"tiers": [tier("a", 0.5), tier("b", 0.9)]}, "maxDifficulty 1.0"),
        ({"tiers": [tier("a", 0.5), tier("a", 1.0)]}, "unique"),
        ({"tiers": []}, "at least 1"),
        ({"tiers": [tier("a", 1.0, initialSamples=8)]}, "initialSamples"),
        ({"tiers": [tier("a", 1.0, strategy="single")]}, "single"),
        ({"tiers": [tier("a", 1.0, maxTokens=0)]}, "greater than or equal to 1"),
        ({"tiers": [tier("a", 1.0, maxTokens=512, maxTokensAfterFirstWave=256)]},
         "maxTokensAfterFirstWave"),
        ({"tiers": [tier("a", 1.0, strategy="ponder")]}, "strategy"),
        ({"tiers": [tier("Bad_Name", 1.0)]}, "pattern"),
        ({"tiers": [tier("a", 1.0, escalateTo="Big Model")]}, "pattern"),
        ({"tiers": [tier("a", 1.0)], "effortTiers": {"high": "b"}}, "unknown tiers"),
        ({"tiers": [tier("a", 1.0)], "effortTiers": {"auto": "a"}}, "auto"),
        ({"tiers": [tier("a", 1.0)], "effortTiers": {"extreme": "a"}}, "effortTiers"),
        (
            {"tiers": [tier("a", 1.0)], "shrinkOrder": [{"resource": "samples", "floor": 1}] * 2},
            "at most once",
        ),
        ({"tiers": [tier("a", 1.0)], "shrinkOrder": [{"resource": "tokens", "floor": 0}]}, "floor"),
        ({"tiers": [tier("a", 1.0)], "surprise": True}, "surprise"),
    ],
)
def test_a_policy_the_crd_would_reject_is_rejected(spec: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        BudgetPolicy.model_validate(spec)


def test_policies_are_frozen() -> None:
    policy = default_policy()
    with pytest.raises(ValidationError):
        policy.tiers = ()


def test_an_idle_pool_gets_the_full_tier_budget() -> None:
    budget = assign_budget(estimate(0.9), "auto", LoadState.idle(), default_policy())
    assert (budget.tier, budget.strategy) == ("hard", Strategy.VOTE)
    assert (budget.max_tokens_per_sample, budget.max_samples, budget.wave_size) == (4096, 64, 4)
    assert not budget.shrunk
    assert budget.shrink_reason is None


@pytest.mark.parametrize(
    ("requested_max_tokens", "requested_max_samples", "tokens", "samples", "strategy"),
    [
        (None, None, 4096, 64, Strategy.VOTE),
        (100_000, 100, 4096, 64, Strategy.VOTE),
        (256, None, 256, 64, Strategy.VOTE),
        (None, 3, 4096, 3, Strategy.VOTE),
        (None, 1, 4096, 1, Strategy.SINGLE),
    ],
)
def test_client_caps_can_only_lower_a_budget(
    requested_max_tokens: int | None,
    requested_max_samples: int | None,
    tokens: int,
    samples: int,
    strategy: Strategy,
) -> None:
    budget = assign_budget(
        estimate(0.9),
        "auto",
        LoadState.idle(),
        default_policy(),
        requested_max_tokens=requested_max_tokens,
        requested_max_samples=requested_max_samples,
    )
    assert (budget.max_tokens_per_sample, budget.max_samples, budget.strategy) == (
        tokens,
        samples,
        strategy,
    )
    assert budget.wave_size <= budget.max_samples


@pytest.mark.parametrize(
    ("requested_max_tokens", "first", "later"),
    [(None, 4096, 16384), (8000, 4096, 8000), (4096, 4096, None), (256, 256, None)],
)
def test_samples_after_the_first_wave_may_think_longer_within_the_clients_cap(
    requested_max_tokens: int | None, first: int, later: int | None
) -> None:
    budget = assign_budget(estimate(0.9), "auto", LoadState.idle(), default_policy(),
                           requested_max_tokens=requested_max_tokens)  # fmt: skip
    assert (budget.max_tokens_per_sample, budget.max_tokens_after_first_wave) == (first, later)
    caps = [budget.sample_max_tokens(i) for i in range(6)]
    assert caps == [first] * 4 + [later or first] * 2


def test_a_first_wave_sample_is_forced_at_its_cap_only_when_the_envelope_does_not_grow() -> None:
    grows = assign_budget(estimate(0.9), "auto", LoadState.idle(), default_policy())
    fixed = assign_budget(estimate(0.9), "auto", LoadState.idle(), default_policy(),
                          requested_max_tokens=4096)  # fmt: skip
    assert [grows.forces(i) for i in range(6)] == [False] * 4 + [True] * 2
    assert all(fixed.forces(i) for i in range(6))


def test_a_single_sample_request_is_forced_at_its_cap_as_it_has_no_later_samples() -> None:
    budget = assign_budget(estimate(0.9), "auto", LoadState.idle(), default_policy(),
                           requested_max_samples=1)  # fmt: skip
    assert budget.strategy is Strategy.SINGLE
    assert budget.max_tokens_after_first_wave is None
    assert budget.forces(0)


def test_a_load_shrink_of_the_tokens_stops_the_envelope_growing() -> None:
    load = LoadState(pressure=1000.0, at_ceiling=True)
    budget = assign_budget(estimate(0.9), "auto", load, default_policy())
    assert budget.max_tokens_per_sample < 4096
    assert budget.max_tokens_after_first_wave is None


@pytest.mark.parametrize(
    ("name", "value"), [("requested_max_tokens", 0), ("requested_max_samples", -1)]
)
def test_a_client_cap_below_one_is_refused(name: str, value: int) -> None:
    with pytest.raises(PolicyError, match="at least 1"):
        assign_budget(estimate(0.5), "auto", LoadState.idle(), default_policy(), **{name: value})


@pytest.mark.parametrize(
    "load",
    [
        LoadState.idle(),
        LoadState(pressure=5.0, at_ceiling=False),  # the autoscaler can still add GPUs
        LoadState(pressure=1.0, at_ceiling=True),  # exactly busy is not overloaded
        LoadState(pressure=1.0, scaling_up=True),  # nor while scaling up
    ],
)
def test_budgets_do_not_shrink_unless_the_pool_is_over_capacity_at_its_ceiling(
    load: LoadState,
) -> None:
    assert not assign_budget(estimate(0.9), "auto", load, default_policy()).shrunk


def test_under_pressure_at_the_ceiling_samples_shrink_first_then_tokens() -> None:
    full = assign_budget(estimate(0.9), "auto", LoadState.idle(), default_policy())
    shrunk = assign_budget(estimate(0.9), "auto", SATURATED, default_policy())
    assert shrunk.shrunk
    assert shrunk.shrink_reason is not None
    assert shrunk.shrink_reason.index("samples") < shrunk.shrink_reason.index("tokens")
    fill = default_policy().demand_model.token_fill_ratio
    full_work = full.expected_tokens / fill  # expected samples x the token cap
    shrunk_work = shrunk.max_samples * shrunk.max_tokens_per_sample
    # the expected work divided by the pressure (rounding up to whole samples)
    assert shrunk_work <= full_work / 3.0 + shrunk.max_tokens_per_sample
    assert shrunk_work >= full_work / 3.3
    assert shrunk.expected_tokens < full.expected_tokens


def test_twice_the_load_halves_the_samples_a_request_is_expected_to_draw_not_its_envelope(
) -> None:
    """An envelope of 64 halved is 32, which no request that stops early ever reaches."""
    policy = default_policy()
    full = assign_budget(estimate(0.1), "auto", LoadState.idle(), policy)
    shrunk = assign_budget(estimate(0.1), "auto", LoadState(pressure=2.0, at_ceiling=True),
                           policy)  # fmt: skip
    expected_samples = full.expected_tokens / (0.6 * full.max_tokens_per_sample)  # 2 + 0.3 x 62
    assert full.max_samples == 64
    assert shrunk.max_samples == math.ceil(expected_samples / 2.0) == 11
    # tokens take only what rounding up to whole samples left over
    assert shrunk.max_tokens_per_sample >= 0.9 * full.max_tokens_per_sample


def agreement_first() -> BudgetPolicy:
    """The default policy with the agreement step before its own."""
    policy = default_policy()
    first = ShrinkStep(resource=ShrinkResource.AGREEMENT, floor=AGREEMENT_FLOOR)
    return policy.model_copy(update={"shrink_order": (first, *policy.shrink_order)})


def test_under_load_the_stopping_bar_falls_before_any_sample_is_capped() -> None:
    """The agreement step lowers the lead the stopping rule needs before samples are capped.
    The easy tier expects 2 + 0.3 x 62 = 20.6 samples; a pressure of 1.5 asks for 13.73,
    so the 18.6 past the first wave must fall to 11.73, 1.586x less: a bar divided by
    1.586 ** (1 / 0.75), the relief a lower bar is counted to give."""
    shrunk = assign_budget(estimate(0.1), "auto", LoadState(pressure=1.5, at_ceiling=True),
                           agreement_first())  # fmt: skip
    assert shrunk.shrunk
    assert shrunk.max_samples == 64  # the envelope stays: contested requests still draw
    relief = 18.6 / (20.6 / 1.5 - 2.0)
    assert shrunk.stop_scale == pytest.approx(relief ** (1.0 / AGREEMENT_RELIEF_EXPONENT))
    assert shrunk.shrink_reason is not None
    assert "stopping bar" in shrunk.shrink_reason
    rule = StopRule()
    assert 0.8 < rule.threshold_for(shrunk) < 0.95
    # 4 votes to 1 (P = 0.89) now settles a request that needed P >= 0.95
    four_to_one = tally(["7", "3", "7", "7", "7"])
    assert should_stop(four_to_one, rule, shrunk).stop
    assert not should_stop(four_to_one, rule, shrunk.model_copy(
        update={"stop_scale": 1.0})).stop  # fmt: skip


def test_the_agreement_step_stops_at_its_floor_and_leaves_the_rest_to_the_samples() -> None:
    shrunk = assign_budget(estimate(0.9), "auto", LoadState(pressure=3.0, at_ceiling=True),
                           agreement_first())  # fmt: skip
    # the default rule's log-odds (settled, 0.97) over a two-vote lead's, ln(3)
    assert shrunk.stop_scale == pytest.approx(math.log(0.97 / 0.03) / math.log(3.0))
    assert shrunk.stop_scale == pytest.approx(StopRule().log_odds_bar() / math.log(3.0))
    assert shrunk.max_samples < 64
    assert shrunk.shrink_reason is not None
    assert shrunk.shrink_reason.index("stopping bar") < shrunk.shrink_reason.index("samples")
    one_vote = tally(["7"])
    assert not should_stop(one_vote, StopRule(), shrunk).stop  # the floor: a lead of 2
    assert StopRule(rule=StopRuleKind.MARGIN, margin=3).margin_for(shrunk) == 2
    assert StopRule(rule=StopRuleKind.WINDOW, window=8).window_for(shrunk) == 3  # ln 255 / 3.16


def test_a_margin_rules_bar_is_divided_in_log_odds() -> None:
    budget = assign_budget(estimate(0.1), "auto", LoadState.idle(), default_policy())
    rule = StopRule(rule=StopRuleKind.MARGIN, margin=4)  # ln(15) = 2.71
    assert rule.margin_for(budget.model_copy(update={"stop_scale": 1.2})) == 4  # 2.26 > ln 7
    assert rule.margin_for(budget.model_copy(update={"stop_scale": 1.5})) == 3  # 1.81 <= ln 7
    assert rule.margin_for(budget.model_copy(update={"stop_scale": 2.0,
                                                     "stop_min_lead": 3})) == 3  # fmt: skip


def test_under_pressure_while_scaling_up_the_budget_shrinks_as_at_the_ceiling() -> None:
    scaling = assign_budget(estimate(0.9), "auto", LoadState(pressure=3.0, scaling_up=True),
                            default_policy())  # fmt: skip
    ceiling = assign_budget(estimate(0.9), "auto", SATURATED, default_policy())
    assert scaling.shrunk
    assert (scaling.max_samples, scaling.max_tokens_per_sample) == (
        ceiling.max_samples, ceiling.max_tokens_per_sample)
    assert scaling.shrink_reason is not None
    assert "while scaling up" in scaling.shrink_reason
    assert ceiling.shrink_reason is not None
    assert "at replica ceiling" in ceiling.shrink_reason


@pytest.mark.parametrize(
    ("load", "shrinks"),
    [
        (LoadState.idle(), False),
        (LoadState(pressure=2.0), False),
        (LoadState(pressure=2.0, at_ceiling=True), True),
        (LoadState(pressure=2.0, scaling_up=True), True),
        (LoadState(pressure=0.5, at_ceiling=True, scaling_up=True), False),
    ],
)
def test_a_load_shrinks_only_over_capacity_at_the_ceiling_or_while_scaling_up(
    load: LoadState, shrinks: bool
) -> None:
    assert load.shrinks is shrinks


def test_from_demand_carries_scaling_up() -> None:
    load = LoadState.from_demand(demand_tokens=200.0, capacity_tokens_per_second=1.0,
                                 horizon_seconds=100.0, at_ceiling=False, scaling_up=True)
    assert (load.pressure, load.scaling_up, load.at_ceiling) == (2.0, True, False)


def test_no_pressure_shrinks_a_budget_below_its_floors() -> None:
    budget = assign_budget(
        estimate(0.9), "auto", LoadState(pressure=1000.0, at_ceiling=True), default_policy()
    )
    assert (budget.max_samples, budget.max_tokens_per_sample) == (1, 512)
    assert budget.strategy is Strategy.SINGLE


def test_a_floor_never_raises_a_budget_the_client_already_lowered() -> None:
    budget = assign_budget(
        estimate(0.9), "auto", SATURATED, default_policy(), requested_max_tokens=128
    )
    assert budget.max_tokens_per_sample == 128


def test_the_shrink_order_is_the_policys_to_choose() -> None:
    policy = default_policy().model_copy(
        update={"shrink_order": (ShrinkStep(resource=ShrinkResource.TOKENS, floor=1024),)}
    )
    budget = assign_budget(estimate(0.9), "auto", SATURATED, policy)
    assert (budget.max_samples, budget.max_tokens_per_sample) == (64, 1366)


def test_a_revise_tier_runs_one_sample_at_a_time() -> None:
    policy = BudgetPolicy.model_validate({"tiers": [tier("r", 1.0, strategy="revise")]})
    budget = assign_budget(estimate(0.5), "auto", LoadState.idle(), policy)
    assert (budget.strategy, budget.wave_size) == (Strategy.REVISE, 1)


def test_the_tier_escalation_target_travels_with_the_budget() -> None:
    policy = BudgetPolicy.model_validate({"tiers": [tier("x", 1.0, escalateTo="qwen-72b")]})
    budget = assign_budget(estimate(0.5), "auto", LoadState.idle(), policy)
    assert budget.escalate_to == "qwen-72b"


def make_budget(strategy: Strategy, max_samples: int, wave_size: int, max_tokens: int) -> Budget:
    return Budget(
        tier="t",
        strategy=strategy,
        max_tokens_per_sample=max_tokens,
        max_samples=max_samples,
        wave_size=wave_size,
        expected_tokens=0.0,
    )


@pytest.mark.parametrize(
    ("budget", "samples_finished", "expected_tokens"),
    [
        (make_budget(Strategy.SINGLE, 1, 1, 1000), 0, 600.0),
        (make_budget(Strategy.BEST_OF_N, 8, 8, 1000), 0, 4800.0),
        (make_budget(Strategy.VOTE, 16, 4, 1000), 0, (4 + 0.3 * 12) * 600.0),
        (make_budget(Strategy.VOTE, 16, 4, 1000), 4, 0.3 * 12 * 600.0),
        (make_budget(Strategy.VOTE, 16, 4, 1000), 12, 0.0),
        (make_budget(Strategy.SINGLE, 1, 1, 1000), 1, 0.0),
    ],
)
def test_expected_tokens_are_expected_samples_times_the_expected_fill_of_each(
    budget: Budget, samples_finished: int, expected_tokens: float
) -> None:
    got = expected_request_tokens(budget, DemandModel(), samples_finished=samples_finished)
    assert got == pytest.approx(expected_tokens)


def test_harder_requests_weigh_more_in_the_demand_signal() -> None:
    policy = default_policy()
    expected = [
        assign_budget(estimate(score), "auto", LoadState.idle(), policy).expected_tokens
        for score in (0.1, 0.3, 0.9)
    ]
    assert expected == sorted(expected)
    # the first wave of 2, plus 30 % of the 62 samples left in the envelope
    assert expected[0] == pytest.approx(0.6 * 1024 * (2 + 0.3 * 62))


def test_the_budget_carries_the_same_expectation_the_demand_function_gives() -> None:
    policy = default_policy()
    budget = assign_budget(estimate(0.9), "auto", LoadState.idle(), policy)
    assert budget.expected_tokens == expected_request_tokens(budget, policy.demand_model)


@pytest.mark.parametrize(
    ("demand_tokens", "capacity_tokens_per_second", "horizon_seconds", "pressure"),
    [
        (60_000.0, 1_000.0, 30.0, 2.0),
        (0.0, 1_000.0, 30.0, 0.0),
        (60_000.0, 0.0, 30.0, 0.0),  # unknown capacity never shrinks budgets
    ],
)
def test_pressure_is_demand_over_what_the_pool_serves_in_the_horizon(
    demand_tokens: float,
    capacity_tokens_per_second: float,
    horizon_seconds: float,
    pressure: float,
) -> None:
    load = LoadState.from_demand(
        demand_tokens=demand_tokens,
        capacity_tokens_per_second=capacity_tokens_per_second,
        horizon_seconds=horizon_seconds,
        at_ceiling=True,
    )
    assert load.pressure == pytest.approx(pressure)


def test_a_tier_accepts_python_names_as_well_as_crd_names() -> None:
    by_alias = Tier.model_validate(tier("a", 1.0))
    by_name = Tier(
        name="a",
        max_difficulty=1.0,
        max_tokens=2048,
        max_samples=4,
        initial_samples=2,
        strategy=Strategy.VOTE,
    )
    assert by_alias == by_name


@pytest.mark.parametrize(
    ("demand_tokens", "offered_tokens_per_second", "pressure"),
    [
        (60_000.0, 500.0, 2.0),  # behind by two horizons, arrivals within capacity
        (0.0, 2_500.0, 2.5),  # no backlog yet, arrivals ask 2.5x what the pool serves
        (90_000.0, 2_000.0, 3.0),  # both: the larger
    ],
)
def test_pressure_is_the_larger_of_the_open_demand_and_the_offered_load(
    demand_tokens: float, offered_tokens_per_second: float, pressure: float
) -> None:
    load = LoadState.from_demand(demand_tokens=demand_tokens, capacity_tokens_per_second=1_000.0,
                                 horizon_seconds=30.0, at_ceiling=True,
                                 offered_tokens_per_second=offered_tokens_per_second)
    assert load.pressure == pytest.approx(pressure)
    assert load.shrinks

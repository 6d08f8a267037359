"""The executor: waves, early stops that cancel samples, retries, deadlines, aggregation.

Samples run on ``FakeBackend`` replicas (a transport-level fake of Triton) so each test
can script what every sample says and when, and check what the replicas were asked to do.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import pytest

from ponder_router.admission import Admission
from ponder_router.aggregate import StopRule, StopRuleKind
from ponder_router.budgets import BudgetPolicy, Strategy, Tier, default_policy
from ponder_router.difficulty import EstimatorWeights
from ponder_router.endpoints import EndpointPool, NoEndpointError
from ponder_router.errors import UpstreamError
from ponder_router.executor import DeadlineExceededError, Executor, RequestSpec
from ponder_router.metrics import RouterMetrics
from ponder_router.settings import RouterConfig
from test_router_fakes import FakeFleet, Script, by_seed, constant
from virtual_time import VirtualTime

EASY, HARD = 0.05, 0.95
SINGLE = BudgetPolicy(tiers=(Tier(name="one", max_difficulty=1.0, max_tokens=1024,
                                  max_samples=1, initial_samples=1,
                                  strategy=Strategy.SINGLE),))  # fmt: skip
"""A policy whose every request runs one sample (the default policy has no such tier)."""


def config(**overrides: Any) -> RouterConfig:
    values: dict[str, Any] = {"service": "svc", "model_name": "m", "triton_model": "t",
                              "endpoints": ("a:1", "b:1")}  # fmt: skip
    values.update(overrides)
    return RouterConfig.model_validate(values)


def executor(fleet: FakeFleet, cfg: RouterConfig | None = None, *,
             addresses: tuple[str, ...] | None = None,
             clock: Callable[[], float] = time.monotonic) -> Executor:  # fmt: skip
    cfg = cfg or config()
    pool = EndpointPool(fleet.factory, clock=clock)
    pool.update(cfg.endpoints if addresses is None else addresses)
    return Executor(cfg, pool, Admission(cfg.admission), RouterMetrics(cfg.service),
                    clock=clock)  # fmt: skip


def spec(difficulty: float | None = HARD, **fields: Any) -> RequestSpec:
    values: dict[str, Any] = {"request_id": "r", "prompt": "What is 6*7?",
                              "problem": "What is 6*7?", "prompt_tokens": 3, "tenant": "t",
                              "seed": 1000, "difficulty_hint": difficulty}  # fmt: skip
    values.update(fields)
    return RequestSpec(**values)


async def run(ex: Executor, request: RequestSpec, sink: Any = None) -> Any:
    planned = ex.plan(request)
    await planned.admit()
    return await planned.execute(sink)


async def test_a_single_tier_runs_one_sample_and_returns_its_answer() -> None:
    fleet = FakeFleet(constant(Script(answer="42")))
    result = await run(executor(fleet, config(budgets=SINGLE)), spec(EASY))
    assert result.report.strategy == "single"
    assert result.report.samples.launched == 1
    assert result.report.answer == "42"
    assert result.text.endswith("\\boxed{42}.")
    assert len(fleet.records) == 1


async def test_an_easy_request_whose_first_wave_agrees_stops_after_two_samples() -> None:
    fleet = FakeFleet(constant(Script(answer="42")))
    result = await run(executor(fleet), spec(EASY))
    assert result.report.tier == "easy"
    assert result.report.samples.launched == 2
    assert result.report.stop_reason == "first-wave-agreed"
    assert result.report.answer == "42"


async def test_an_easy_request_whose_first_wave_disagrees_draws_more_samples() -> None:
    # The prior put it in the easy tier; its own samples say otherwise.
    fleet = FakeFleet(by_seed({0: Script(answer="1"), 1: Script(answer="2")},
                              Script(answer="2")))  # fmt: skip
    result = await run(executor(fleet), spec(EASY))
    assert result.report.tier == "easy"
    assert result.report.samples.launched > 2
    assert result.report.answer == "2"


async def test_a_hard_request_whose_samples_agree_stops_after_its_first_wave() -> None:
    fleet = FakeFleet(constant(Script(answer="42")))
    result = await run(executor(fleet), spec(HARD))
    assert result.report.tier == "hard"
    assert result.report.samples.launched == 4  # the first wave; 4 agreeing votes are enough
    assert result.report.stopped_early
    assert result.report.stop_reason == "first-wave-agreed"
    assert result.report.votes[0].votes == 4


async def test_a_hard_request_whose_samples_disagree_draws_more_waves() -> None:
    answers = {0: "1", 1: "2", 2: "1", 3: "2"}
    fleet = FakeFleet(by_seed({i: Script(answer=a) for i, a in answers.items()},
                              Script(answer="1")))  # fmt: skip
    result = await run(executor(fleet), spec(HARD))
    assert result.report.samples.launched > 4
    assert result.report.answer == "1"
    assert result.completion_tokens == sum(len(r.chunks) for r in fleet.records)


async def test_an_early_stop_cancels_the_samples_still_running() -> None:
    rule = StopRule(kind=StopRuleKind.WINDOW, window=2)
    slow = Script(answer="9", tokens=200, token_seconds=0.01)
    fleet = FakeFleet(by_seed({0: Script(answer="5"), 1: Script(answer="5")}, slow))
    result = await run(executor(fleet, config(stopping=rule)), spec(HARD))
    assert result.report.stop_reason == "window-agreed"
    assert result.report.samples.cancelled == 2
    cancelled = [r for r in fleet.records if r.cancelled]
    assert len(cancelled) == 2
    assert all(len(r.chunks) < 200 for r in cancelled)


async def test_a_sample_on_an_unreachable_replica_is_retried_on_another() -> None:
    fleet = FakeFleet(constant(Script(answer="3")), unreachable=frozenset({"a:1"}))
    ex = executor(fleet, config(budgets=SINGLE))
    results = [await run(ex, spec(EASY)) for _ in range(2)]  # ties alternate: b, then a
    assert [r.report.answer for r in results] == ["3", "3"]
    assert all(r.report.samples.failed == 0 for r in results)
    assert [(r.address, r.failed) for r in fleet.backends["a:1"].records] == [("a:1", True)]
    assert len(fleet.backends["b:1"].records) == 2
    assert ex.metrics.upstream_failures._value.get() == 1


async def test_a_replica_that_failed_is_avoided_while_it_is_marked_down() -> None:
    fleet = FakeFleet(constant(Script(answer="3")), unreachable=frozenset({"a:1"}))
    ex = executor(fleet)
    for _ in range(4):
        await run(ex, spec(EASY))
    assert sum(r.address == "a:1" for r in fleet.records) == 1


async def test_a_failed_vote_sample_is_replaced_by_a_new_one() -> None:
    fleet = FakeFleet(by_seed({1: Script(fail_after=2)}, Script(answer="5")))
    result = await run(executor(fleet), spec(HARD))
    assert result.report.answer == "5"
    assert result.report.samples.failed == 1
    assert result.report.samples.completed == 4
    assert 1004 in {r.params.seed for r in fleet.records}  # the replacement's own seed


async def test_a_request_whose_samples_all_fail_is_an_upstream_error() -> None:
    fleet = FakeFleet(constant(Script(fail_after=0)))
    with pytest.raises(UpstreamError):
        await run(executor(fleet), spec(EASY))


async def test_a_deadline_with_no_finished_sample_is_a_deadline_error(
    virtual_time: VirtualTime,
) -> None:
    fleet = FakeFleet(constant(Script(tokens=500, token_seconds=0.01)))
    cfg = config(admission={"requestTimeoutSeconds": 0.2})
    started = virtual_time.now
    with pytest.raises(DeadlineExceededError):
        await run(executor(fleet, cfg, clock=virtual_time.time), spec(EASY))
    assert virtual_time.now - started == pytest.approx(0.2, abs=0.02)
    assert all(r.cancelled for r in fleet.records)


async def test_at_the_deadline_finished_samples_still_answer(virtual_time: VirtualTime) -> None:
    slow = Script(answer="8", tokens=500, token_seconds=0.01)
    fleet = FakeFleet(by_seed({0: Script(answer="7")}, slow))
    cfg = config(admission={"requestTimeoutSeconds": 0.3})
    result = await run(executor(fleet, cfg, clock=virtual_time.time), spec(HARD))
    assert result.report.answer == "7"
    assert result.report.stop_reason == "deadline"
    assert result.report.samples.cancelled == 3


async def test_client_caps_lower_the_budget() -> None:
    fleet = FakeFleet(constant(Script(answer="1")))
    result = await run(executor(fleet), spec(HARD, max_samples=2, max_tokens=100))
    assert result.report.budget.max_samples == 2
    assert result.report.budget.max_tokens_per_sample == 100
    assert all(r.params.max_tokens == 100 for r in fleet.records)


async def test_each_sample_gets_its_own_seed() -> None:
    fleet = FakeFleet(constant(Script(answer="1")))
    await run(executor(fleet), spec(HARD))
    assert sorted(r.params.seed for r in fleet.records) == [1000, 1001, 1002, 1003]


async def test_best_of_n_without_a_verifier_falls_back_to_a_vote_and_says_so() -> None:
    fleet = FakeFleet(constant(Script(answer="1")))
    result = await run(executor(fleet), spec(HARD, strategy=Strategy.BEST_OF_N, max_samples=3))
    assert result.report.strategy == "best-of-n"
    assert result.report.aggregation.startswith("vote")
    assert result.report.samples.launched == 3


async def test_best_of_n_picks_the_sample_the_verifier_scores_highest() -> None:
    answers = {0: "1", 1: "2", 2: "1"}
    fleet = FakeFleet(by_seed({i: Script(answer=a) for i, a in answers.items()}, Script()),
                      score=lambda text: 0.9 if "boxed{2}" in text else 0.1)  # fmt: skip
    cfg = config(verifier={"model": "prm"})
    result = await run(executor(fleet, cfg), spec(HARD, strategy=Strategy.BEST_OF_N,
                                                  max_samples=3))  # fmt: skip
    assert result.report.answer == "2"
    assert result.report.aggregation == "best-of-n (verifier prm)"


async def test_the_configs_estimator_weights_decide_the_tier_of_a_prompt() -> None:
    ex = executor(FakeFleet(constant(Script())))
    assert ex.plan(spec(None)).budget.tier == "easy"  # "What is 6*7?" by the default weights
    always_hard = EstimatorWeights(bias=4.0, coefficients={"easy_keywords": 1.0})
    ex.update(config(budgets=default_policy().model_copy(update={"estimator": always_hard})))
    planned = ex.plan(spec(None))
    assert planned.estimate.score > 0.98
    assert planned.budget.tier == "hard"
    assert ex.plan(spec(EASY)).budget.tier == "easy"  # a client's estimate still wins


def best_of_n_policy(verifier_model: str | None) -> BudgetPolicy:
    """One best-of-n tier of three samples, scored by ``verifier_model``."""
    return BudgetPolicy(tiers=(Tier(name="all", max_difficulty=1.0, max_tokens=64,
                                    max_samples=3, initial_samples=3,
                                    strategy=Strategy.BEST_OF_N,
                                    verifier_model=verifier_model),))  # fmt: skip


def scored_answers() -> FakeFleet:
    """Samples answer 1, 2, 1; the verifier scores the answer 2 highest."""
    answers = {0: "1", 1: "2", 2: "1"}
    return FakeFleet(by_seed({i: Script(answer=a) for i, a in answers.items()}, Script()),
                     score=lambda text: 0.9 if "boxed{2}" in text else 0.1)  # fmt: skip


async def test_a_best_of_n_tier_is_scored_by_its_own_verifier_without_a_service_one() -> None:
    fleet = scored_answers()
    cfg = config(budgets=best_of_n_policy("tier-prm"))
    result = await run(executor(fleet, cfg), spec(HARD))
    assert result.report.strategy == "best-of-n"
    assert result.report.answer == "2"  # the vote would have said 1
    assert result.report.aggregation == "best-of-n (verifier tier-prm)"
    assert fleet.scored_by == ["tier-prm"] * 3


async def test_a_tiers_verifier_overrides_the_service_wide_one() -> None:
    fleet = scored_answers()
    cfg = config(budgets=best_of_n_policy("tier-prm"),
                 verifier={"model": "service-prm", "timeoutSeconds": 3})  # fmt: skip
    result = await run(executor(fleet, cfg), spec(HARD))
    assert result.report.answer == "2"
    assert result.report.aggregation == "best-of-n (verifier tier-prm)"
    assert set(fleet.scored_by) == {"tier-prm"}


async def test_a_best_of_n_tier_without_its_own_verifier_uses_the_service_wide_one() -> None:
    fleet = scored_answers()
    cfg = config(budgets=best_of_n_policy(None), verifier={"model": "service-prm"})
    result = await run(executor(fleet, cfg), spec(HARD))
    assert result.report.aggregation == "best-of-n (verifier service-prm)"
    assert set(fleet.scored_by) == {"service-prm"}


def verified_config(max_samples: int = 4, initial_samples: int = 2) -> RouterConfig:
    """A best-of-n tier under a rule that stops at a verifier score of 0.8."""
    tier = Tier(name="all", max_difficulty=1.0, max_tokens=1024, max_samples=max_samples,
                initial_samples=initial_samples, strategy=Strategy.BEST_OF_N,
                verifier_model="prm")  # fmt: skip
    return config(budgets=BudgetPolicy(tiers=(tier,)),
                  stopping=StopRule(score_threshold=0.8))  # fmt: skip


async def test_a_high_scoring_first_sample_stops_best_of_n_and_cancels_the_rest() -> None:
    slow = Script(answer="9", tokens=200, token_seconds=0.01)
    fleet = FakeFleet(by_seed({0: Script(answer="7")}, slow),
                      score=lambda text: 0.9 if "boxed{7}" in text else 0.1)  # fmt: skip
    result = await run(executor(fleet, verified_config()), spec(HARD))
    assert result.report.answer == "7"
    assert result.report.stop_reason == "verified"
    assert result.report.stopped_early
    assert result.report.samples.launched == 2  # the first wave; no more once verified
    assert result.report.samples.cancelled == 1
    cancelled = [r for r in fleet.records if r.cancelled]
    assert len(cancelled) == 1
    assert len(cancelled[0].chunks) < 200
    assert fleet.scored_by == ["prm"]  # the one finished sample, scored once


async def test_low_scores_draw_one_sample_at_a_time_and_the_best_one_answers() -> None:
    answers = {0: "1", 1: "2", 2: "3", 3: "4"}
    marks = {"boxed{1}": 0.2, "boxed{2}": 0.5, "boxed{3}": 0.4, "boxed{4}": 0.1}
    fleet = FakeFleet(by_seed({i: Script(answer=a) for i, a in answers.items()}, Script()),
                      score=lambda text: next(v for k, v in marks.items() if k in text))
    result = await run(executor(fleet, verified_config(initial_samples=1)), spec(HARD))
    assert result.report.stop_reason == "budget-exhausted"
    assert result.report.samples.launched == 4
    assert result.report.answer == "2"
    assert result.report.aggregation == "best-of-n (verifier prm)"
    assert fleet.scored_by == ["prm"] * 4  # each sample scored once, as it finished


async def test_a_failing_verifier_draws_the_rest_and_falls_back_to_a_vote() -> None:
    fleet = FakeFleet(constant(Script(answer="5")))  # the fake has no verifier model
    result = await run(executor(fleet, verified_config(initial_samples=1)), spec(HARD))
    assert result.report.samples.launched == 4
    assert result.report.answer == "5"
    assert result.report.aggregation == "vote (verifier prm unavailable)"
    assert fleet.scored_by == ["prm"]  # tried once, not again at the end


async def test_a_score_threshold_without_any_verifier_draws_best_of_n_at_once() -> None:
    tier = Tier(name="all", max_difficulty=1.0, max_tokens=1024, max_samples=4,
                initial_samples=1, strategy=Strategy.BEST_OF_N)  # fmt: skip
    cfg = config(budgets=BudgetPolicy(tiers=(tier,)), stopping=StopRule(score_threshold=0.8))
    fleet = FakeFleet(constant(Script(answer="5")))
    planned = executor(fleet, cfg).plan(spec(HARD))
    await planned.admit()
    result = await planned.execute()
    assert result.report.samples.launched == 4
    assert result.report.aggregation == "vote (best-of-n without a verifier configured)"
    assert fleet.scored_by == []


async def test_revise_sends_each_attempt_back_to_the_model() -> None:
    fleet = FakeFleet(constant(Script(answer="4")))
    result = await run(executor(fleet), spec(HARD, strategy=Strategy.REVISE))
    assert result.report.stop_reason == "converged"
    first, second = sorted(fleet.records, key=lambda r: r.params.seed or 0)
    assert "A previous attempt" not in first.prompt
    assert "A previous attempt" in second.prompt


async def test_a_request_with_no_replica_waits_for_one_to_appear(
    virtual_time: VirtualTime,
) -> None:
    fleet = FakeFleet(constant(Script(answer="5")))
    ex = executor(fleet, addresses=(), clock=virtual_time.time)
    planned = ex.plan(spec(EASY))
    admitting = asyncio.ensure_future(planned.admit())
    await asyncio.sleep(0.05)
    assert ex.queued == 1
    assert ex.demand_tokens() > 0
    ex.pool.update(["c:1"])
    await asyncio.wait_for(admitting, 1)
    result = await planned.execute()
    assert result.report.answer == "5"
    assert ex.queued == 0
    assert ex.demand_tokens() == 0


async def test_a_request_with_no_replica_until_its_deadline_is_refused(
    virtual_time: VirtualTime,
) -> None:
    ex = executor(FakeFleet(constant(Script())), config(admission={"requestTimeoutSeconds": 0.1}),
                  addresses=(), clock=virtual_time.time)  # fmt: skip
    started = virtual_time.now
    with pytest.raises(NoEndpointError):
        await ex.plan(spec(EASY)).admit()
    assert virtual_time.now - started == pytest.approx(0.1, abs=0.01)
    assert ex.queued == 0
    assert ex.admission.running == 0


async def test_demand_and_inflight_samples_follow_the_running_work(
    virtual_time: VirtualTime,
) -> None:
    fleet = FakeFleet(constant(Script(answer="1", tokens=50, token_seconds=0.01)))
    ex = executor(fleet, clock=virtual_time.time)
    task = asyncio.ensure_future(run(ex, spec(HARD)))
    await asyncio.sleep(0.1)
    assert ex.inflight_samples == 4
    budget = ex.plan(spec(HARD)).budget
    # the budget's expectation, plus the answer allowance of samples forced at the cap
    allowance = ex.config.forcing.answer_tokens * budget.max_samples
    assert 0 < ex.demand_tokens() <= budget.expected_tokens + allowance
    await task
    assert ex.inflight_samples == 0
    assert ex.demand_tokens() == 0


async def test_a_pool_at_its_ceiling_under_pressure_shrinks_budgets(
    virtual_time: VirtualTime,
) -> None:
    fleet = FakeFleet(constant(Script(answer="1", tokens=100, token_seconds=0.01)))
    cfg = config(capacity={"atCeiling": True, "replicas": 1, "tokensPerSecondPerReplica": 10})
    ex = executor(fleet, cfg, clock=virtual_time.time)
    first = asyncio.ensure_future(run(ex, spec(HARD)))
    await asyncio.sleep(0.05)
    shrunk = ex.plan(spec(HARD)).budget
    assert shrunk.shrunk
    assert shrunk.max_samples < 16
    first.cancel()
    await asyncio.gather(first, return_exceptions=True)


def test_arrivals_asking_more_than_the_pool_serves_shrink_budgets_before_a_backlog(
    virtual_time: VirtualTime,
) -> None:
    """The offered load: planned requests ask their unshrunk expected tokens of the pool;
    at the ceiling, once that flow exceeds its throughput, budgets shrink though nothing
    has been queued yet (no request here ever runs)."""
    cfg = config(capacity={"atCeiling": True, "replicas": 1, "tokensPerSecondPerReplica": 10,
                           "horizonSeconds": 30})  # fmt: skip
    ex = executor(FakeFleet(constant(Script(answer="1"))), cfg, clock=virtual_time.time)
    first = ex.plan(spec(HARD)).budget
    assert not first.shrunk
    # one hard request asks thousands of tokens over a 30 s window: over 10 tokens/s
    assert ex.offered_load(cfg).tokens_per_second(virtual_time.time()) > 10
    assert ex.demand_tokens() == 0  # planned, not admitted: no open demand
    assert ex.plan(spec(HARD)).budget.shrunk


class Sink:
    """Records a streaming request's events."""

    def __init__(self) -> None:
        self.tokens: list[str] = []
        self.reports: list[dict[str, object]] = []

    def token(self, text: str) -> None:
        self.tokens.append(text)

    def progress(self, report: dict[str, object]) -> None:
        self.reports.append(report)


async def test_a_single_sample_request_streams_its_tokens() -> None:
    fleet = FakeFleet(constant(Script(answer="6", tokens=3)))
    sink = Sink()
    result = await run(executor(fleet, config(budgets=SINGLE)), spec(EASY), sink)
    assert "".join(sink.tokens) == result.text
    assert len(sink.tokens) == 7
    assert fleet.records[0].streamed


async def test_samples_not_forwarded_to_a_client_are_fetched_whole() -> None:
    fleet = FakeFleet(constant(Script(answer="6", tokens=3)))
    result = await run(executor(fleet), spec(HARD), Sink())
    assert not any(r.streamed for r in fleet.records)
    assert result.completion_tokens == 4 * 7  # counted from the whole text


async def test_a_voting_request_streams_progress_not_tokens() -> None:
    fleet = FakeFleet(constant(Script(answer="6", tokens=3)))
    sink = Sink()
    await run(executor(fleet), spec(HARD), sink)
    assert sink.tokens == []
    assert [p["samples_completed"] for p in sink.reports] == [1, 2, 3, 4]


async def test_cancelling_a_request_cancels_its_samples(virtual_time: VirtualTime) -> None:
    fleet = FakeFleet(constant(Script(tokens=500, token_seconds=0.01)))
    ex = executor(fleet, clock=virtual_time.time)
    task = asyncio.ensure_future(run(ex, spec(HARD)))
    await asyncio.sleep(0.05)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert len(fleet.records) == 4
    assert all(r.cancelled for r in fleet.records)
    assert ex.inflight_samples == 0
    assert ex.admission.running == 0


def test_a_custom_policy_from_the_config_is_used() -> None:
    policy = BudgetPolicy(tiers=(Tier(name="only", max_difficulty=1.0, max_tokens=64,
                                      max_samples=2, initial_samples=2,
                                      strategy=Strategy.VOTE),))  # fmt: skip
    ex = executor(FakeFleet(constant(Script())), config(budgets=policy))
    assert ex.plan(spec(HARD)).budget.tier == "only"
    assert default_policy().tiers[0].name == "easy"


# -- the model server's per-sample signals (vLLM backend additional outputs) -----------


NO_FORCING = {"enabled": False}


async def test_with_forcing_off_a_sample_cut_off_at_max_tokens_is_truncated_and_never_votes(
) -> None:
    # Sample 0 says "length" although its text ends in an answer (as a real model's cut
    # chain of thought may end in a number): it must not be the fourth vote for "9".
    cut = Script(answer="9", finish_reason="length", output_tokens=64)
    fleet = FakeFleet(by_seed({0: cut}, Script(answer="9", finish_reason="stop")))
    ex = executor(fleet, config(forcing=NO_FORCING))
    result = await run(ex, spec(HARD))
    report = result.report
    assert report.samples.truncated == 1
    assert report.abstentions == 1
    assert report.votes[0].votes == report.samples.completed - 1
    assert report.answer == "9"
    assert ex.metrics.truncated_samples._value.get() == 1
    assert ex.metrics.forced_answers._value.get() == 0
    assert report.samples.forced == 0
    assert not any(r.prompt.endswith("Final answer:") for r in fleet.records)


async def test_with_forcing_off_a_single_truncated_sample_answers_with_finish_reason_length(
) -> None:
    fleet = FakeFleet(constant(Script(answer="6", finish_reason="length")))
    ex = executor(fleet, config(budgets=SINGLE, forcing=NO_FORCING))
    result = await run(ex, spec(EASY))
    assert result.finish_reason == "length"
    assert result.report.answer is None
    assert result.report.samples.truncated == 1


async def test_token_accounting_uses_the_servers_output_token_count_when_sent() -> None:
    fleet = FakeFleet(constant(Script(answer="6", tokens=3, finish_reason="stop",
                                      output_tokens=11)))  # fmt: skip
    result = await run(executor(fleet), spec(HARD))
    assert result.report.samples.completed == 4
    assert result.completion_tokens == 4 * 11  # not the 4 * 7 estimated from the text


async def test_the_plan_sees_each_samples_cumulative_logprob() -> None:
    fleet = FakeFleet(by_seed({i: Script(answer="6", cumulative_logprob=-float(i + 1))
                               for i in range(4)}, Script()))  # fmt: skip
    ex = executor(fleet)
    planned = ex.plan(spec(HARD))
    await planned.admit()
    await planned.execute()
    logprobs = {s.index: s.cumulative_logprob for s in planned.plan.finished}
    assert logprobs == {0: -1.0, 1: -2.0, 2: -3.0, 3: -4.0}
    assert not any(s.truncated for s in planned.plan.finished)


# -- budget forcing: a sample cut off at its cap answers at the cue ----------------------

CUE = "\n</think>\n\nFinal answer:"


def forcing_script(capped: dict[int, Script], answer_at_cue: Script) -> Any:
    """Samples by index (``capped``, else answering "9"); a continuation at the cue answers
    as ``answer_at_cue``."""
    by_index = by_seed(capped, Script(answer="9", finish_reason="stop"))
    return lambda prompt, params: (answer_at_cue if prompt.endswith("Final answer:")
                                   else by_index(prompt, params))  # fmt: skip


FORCED = Script(answer="9", tokens=0, finish_reason="stop", output_tokens=6)
CAPPED = Script(answer=None, tokens=20, finish_reason="length", output_tokens=64)


async def test_a_sample_cut_off_at_its_cap_is_forced_to_answer_and_votes() -> None:
    fleet = FakeFleet(forcing_script({0: CAPPED}, FORCED))
    ex = executor(fleet, config(chat={"preset": "deepseek-r1"}))
    result = await run(ex, spec(HARD, max_tokens=4096))  # the envelope does not grow
    report = result.report
    assert (report.samples.forced, report.samples.truncated, report.abstentions) == (1, 0, 0)
    assert report.votes[0].votes == report.samples.completed == 4
    assert ex.metrics.forced_answers._value.get() == 1
    assert ex.metrics.truncated_samples._value.get() == 0
    cut, = (r for r in fleet.records if r.params.seed == 1000 and not r.prompt.endswith(CUE))
    forced, = (r for r in fleet.records if r.prompt.endswith(CUE))
    # The same sequence, continued on the same replica with a small answer allowance.
    assert forced.address == cut.address
    assert forced.prompt == cut.prompt + "".join(cut.chunks) + CUE
    assert forced.params.max_tokens == 32
    assert forced.params.seed == cut.params.seed
    # The sample's tokens include its forced answer's.
    assert result.completion_tokens == 64 + 6 + 3 * 5 + 3 * 4


async def test_a_first_wave_sample_cut_at_its_cap_abstains_and_later_samples_think_longer(
) -> None:
    fleet = FakeFleet(forcing_script({0: CAPPED}, FORCED))
    ex = executor(fleet, config(chat={"preset": "deepseek-r1"}))
    report = (await run(ex, spec(HARD))).report
    assert (report.samples.forced, report.samples.truncated, report.abstentions) == (0, 1, 1)
    assert report.samples.completed > 4  # the first wave does not agree: the request goes on
    assert not any(r.prompt.endswith(CUE) for r in fleet.records)
    caps = {r.params.seed - 1000: r.params.max_tokens for r in fleet.records}
    assert [caps[i] for i in range(4)] == [4096] * 4
    assert {caps[i] for i in caps if i >= 4} == {16384}


async def test_a_forced_single_sample_answers_with_the_cue_and_finish_reason_stop() -> None:
    fleet = FakeFleet(forcing_script({0: CAPPED}, FORCED))
    ex = executor(fleet, config(chat={"preset": "deepseek-r1"}, budgets=SINGLE,
                                forcing={"answerTokens": 8}))  # fmt: skip
    tokens: list[str] = []

    class Sink:
        def token(self, text: str) -> None:
            tokens.append(text)

        def progress(self, report: dict[str, object]) -> None:
            raise AssertionError("a single sample streams its tokens")

    result = await run(ex, spec(EASY, streaming=True), Sink())
    assert result.report.answer == "9"
    assert result.report.samples.forced == 1
    assert result.finish_reason == "stop"
    assert result.text.endswith(CUE + "\nThe answer is \\boxed{9}.")
    assert "".join(tokens) == result.text  # the client saw the cue and the forced answer
    assert fleet.records[-1].params.max_tokens == 8


async def test_a_model_without_signals_is_forced_once_it_used_all_its_tokens() -> None:
    policy = BudgetPolicy(tiers=(Tier(name="only", max_difficulty=1.0, max_tokens=32,
                                      max_samples=1, initial_samples=1,
                                      strategy=Strategy.SINGLE),))  # fmt: skip
    # No finish_reason, no token count: 32 words of the 32-token cap, then cut.
    fleet = FakeFleet(forcing_script({0: Script(answer=None, tokens=32)}, FORCED))
    ex = executor(fleet, config(budgets=policy, forcing={"cue": "{think_end}Final answer:"}))
    result = await run(ex, spec(EASY))
    assert result.report.samples.forced == 1
    assert result.report.answer == "9"
    # Without thinking markers in the chat format, {think_end} is empty.
    assert fleet.records[-1].prompt.endswith("step31 Final answer:")


async def test_when_the_forced_answer_fails_the_sample_abstains_as_truncated() -> None:
    fleet = FakeFleet(forcing_script({0: CAPPED}, Script(fail_after=0)))
    ex = executor(fleet, config(chat={"preset": "deepseek-r1"}))
    result = await run(ex, spec(HARD, max_tokens=4096))  # the envelope does not grow
    report = result.report
    assert (report.samples.forced, report.samples.truncated, report.abstentions) == (0, 1, 1)
    assert report.answer == "9"
    assert ex.metrics.upstream_failures._value.get() == 1

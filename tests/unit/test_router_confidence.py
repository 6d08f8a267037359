"""The executor with per-sample confidence, through a scripted transport: low-confidence
samples cancelled on the replica while they stream, and confidence-weighted votes."""

from __future__ import annotations

from ponder_router.aggregate import StopRule, StopRuleKind
from ponder_router.confidence import ConfidenceConfig
from ponder_router.executor import Executor
from test_router_executor import HARD, config, executor, run, spec
from test_router_fakes import FakeFleet, Script, by_seed

CONFIDENT = Script(answer="42", tokens=2, logprob_per_token=-0.05)  # confidence 0.95
UNCONFIDENT = Script(answer="7", tokens=200, token_seconds=0.001,
                     logprob_per_token=-2.0)  # confidence 0.14  # fmt: skip
CANCEL = ConfidenceConfig(cancel=True, percentile=50.0, window=100, min_window=20,
                          min_tokens=10)  # fmt: skip


def warmed(ex: Executor, values: list[float]) -> Executor:
    gate = ex.confidence_gate(ex.config)
    for value in values:
        gate.observe(value)
    return ex


RECENT = [0.3 + 0.6 * i / 39 for i in range(40)]  # the service's recent confidences: 0.3-0.9


async def test_an_unconfident_sample_is_cancelled_on_its_replica_and_abstains() -> None:
    fleet = FakeFleet(by_seed({0: CONFIDENT}, UNCONFIDENT))
    ex = warmed(executor(fleet, config(confidence=CANCEL)), RECENT)

    result = await run(ex, spec(HARD, max_samples=8))

    assert result.report.answer == "42"
    cancelled = result.report.samples.low_confidence
    assert cancelled == 7
    assert ex.metrics.low_confidence_cancels._value.get() == cancelled
    assert result.report.abstentions == cancelled
    stopped = [r for r in fleet.records if r.cancelled]
    assert len(stopped) >= cancelled
    assert all(10 <= len(r.chunks) < 200 for r in stopped), "cut after min_tokens, not at the end"
    assert all(r.streamed for r in fleet.records), "cancelling needs the running logprob"


async def test_without_the_knob_nothing_is_cancelled_and_samples_come_back_whole() -> None:
    fleet = FakeFleet(by_seed({0: CONFIDENT}, UNCONFIDENT))
    ex = warmed(executor(fleet), RECENT)

    result = await run(ex, spec(HARD, max_samples=8))

    assert result.report.samples.low_confidence == 0
    assert ex.metrics.low_confidence_cancels._value.get() == 0
    assert not any(r.streamed for r in fleet.records)


async def test_a_fresh_router_never_cancels_before_its_window_is_full() -> None:
    fleet = FakeFleet(by_seed({0: CONFIDENT}, UNCONFIDENT))
    ex = executor(fleet, config(confidence=CANCEL))

    result = await run(ex, spec(HARD, max_samples=4))

    assert result.report.samples.low_confidence == 0
    assert len(ex.confidence_gate(ex.config)) == 4, "each finished sample joined the window"


async def test_a_request_whose_every_sample_is_unconfident_still_answers() -> None:
    fleet = FakeFleet(by_seed({}, UNCONFIDENT))
    ex = warmed(executor(fleet, config(confidence=CANCEL)), RECENT)

    result = await run(ex, spec(HARD, max_samples=4))

    assert result.report.answer == "7", "the first vote is never cancelled"


async def test_a_confident_minority_outvotes_an_unconfident_majority_when_weighted() -> None:
    low = Script(answer="1", tokens=2, logprob_per_token=-1.0)  # confidence 0.37
    fleet = FakeFleet(by_seed({0: low, 1: low}, CONFIDENT))
    never = StopRule(kind=StopRuleKind.NEVER)
    weighted = config(stopping=never, confidence=ConfidenceConfig(weighting=True, window=100,
                                                                  min_window=20))  # fmt: skip

    plain = await run(warmed(executor(fleet), RECENT), spec(HARD, max_samples=3))
    result = await run(warmed(executor(fleet, weighted), RECENT), spec(HARD, max_samples=3))

    assert plain.report.answer == "1"
    assert result.report.answer == "42"


def test_a_config_change_keeps_the_window_unless_its_size_changes() -> None:
    ex = warmed(executor(FakeFleet(by_seed({}, CONFIDENT)), config(confidence=CANCEL)), RECENT)
    gate = ex.confidence_gate(ex.config)

    same = ex.confidence_gate(config(confidence=CANCEL.model_copy(update={"percentile": 20.0})))
    resized = ex.confidence_gate(config(confidence=CANCEL.model_copy(update={"window": 200})))

    assert same is gate
    assert same.config.percentile == 20.0
    assert len(resized) == 0


async def test_the_threshold_follows_the_service_down_when_most_samples_are_unconfident() -> None:
    fleet = FakeFleet(by_seed({0: CONFIDENT}, UNCONFIDENT))
    ex = warmed(executor(fleet, config(confidence=CANCEL)), RECENT)

    result = await run(ex, spec(HARD, max_samples=64))

    gate = ex.confidence_gate(ex.config)
    assert gate.threshold() is not None
    assert gate.threshold() < 0.2, "cancelled samples' running confidences joined the window"
    assert 0 < result.report.samples.low_confidence < result.report.samples.launched - 1

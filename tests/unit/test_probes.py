"""Probe exits, the pure half: the config's bounds, the schedule and when answers settle."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from ponder_router.answers import answer_key, extract_chain
from ponder_router.chat import ChatFormat
from ponder_router.forcing import ForcingConfig
from ponder_router.probes import (
    ProbeConfig,
    ProbeReading,
    ProbeState,
    compute_settled_answer,
    probe_confidence,
    read_probe,
)


def readings(*answers: str | None) -> list[ProbeReading]:
    return [ProbeReading(a) for a in answers]


def test_probes_are_off_by_default() -> None:
    assert not ProbeConfig().enabled


@pytest.mark.parametrize(("field", "value"), [
    ("intervalTokens", 0), ("agreement", 0), ("maxTokens", 0), ("confidenceFloor", 0.0),
    ("confidenceFloor", 1.5), ("cue", ""), ("stop", [""]), ("stop", ["}"] * 5),
])  # fmt: skip
def test_bad_settings_are_refused_naming_the_field(field: str, value: object) -> None:
    with pytest.raises(ValidationError, match=field):
        ProbeConfig.model_validate({field: value})


@pytest.mark.parametrize(("answers", "agreement", "settled"), [
    (["7", "7"], 2, "7"),
    (["7"], 2, None),  # too few probes yet
    (["5", "7", "7"], 2, "7"),  # the last two agree
    (["7", "7", "5"], 2, None),  # the latest changed its mind
    (["7", None, "7"], 2, None),  # no answer breaks the run
    (["7", "7", "7"], 3, "7"),
    (["7", "7", "5"], 1, "5"),  # agreement 1: the first answered probe settles
    ([None], 1, None),
    (["0.5", "1/2"], 2, "1/2"),  # the same answer under numeric equality
])  # fmt: skip
def test_the_last_agreement_probes_must_give_the_same_answer(
    answers: list[str | None], agreement: int, settled: str | None,
) -> None:
    assert compute_settled_answer(readings(*answers), agreement=agreement) == settled


def test_a_probe_below_the_confidence_floor_does_not_count() -> None:
    sure, unsure = ProbeReading("7", 0.9), ProbeReading("7", 0.2)
    assert compute_settled_answer([sure, sure], agreement=2, confidence_floor=0.5) == "7"
    assert compute_settled_answer([sure, unsure], agreement=2, confidence_floor=0.5) is None
    # A probe the server sent no confidence for counts as it is.
    assert compute_settled_answer([sure, ProbeReading("7")], agreement=2,
                                  confidence_floor=0.5) == "7"  # fmt: skip


def test_equality_follows_the_services_mode() -> None:
    agree = readings("Paris", "paris.")
    assert compute_settled_answer(agree, agreement=2, equality="text") == "paris."
    assert compute_settled_answer(agree, agreement=2, equality="exact") is None


def test_the_confidence_of_a_probe_is_the_probability_of_its_text() -> None:
    assert probe_confidence(None) is None
    assert probe_confidence(math.log(0.25)) == pytest.approx(0.25)
    assert probe_confidence(0.1) == 1.0  # a rounding above 0 is certainty, never above
    assert probe_confidence(math.nan) is None


def test_a_probe_is_due_every_interval_of_tokens_from_when_the_last_was_sent() -> None:
    state = ProbeState(ProbeConfig(enabled=True, interval_tokens=100, agreement=2))
    assert [t for t in (50, 99, 100) if state.due(t)] == [100]
    state.fired(130)  # a probe sent late (one was still running at 100)
    assert not state.due(229)
    assert state.due(230)


def test_once_settled_the_state_keeps_its_answer_and_asks_for_no_more_probes() -> None:
    state = ProbeState(ProbeConfig(enabled=True, interval_tokens=10, agreement=2))
    assert state.record(ProbeReading("3")) is None
    assert state.record(ProbeReading("3")) == "3"
    assert state.record(ProbeReading("4")) == "3"
    assert not state.due(10_000)


answer = st.one_of(st.none(), st.sampled_from(["1", "2", "3"]))


@given(st.lists(answer, max_size=12), st.integers(min_value=1, max_value=5))
def test_settled_exactly_when_the_last_readings_share_one_answer(
    answers: list[str | None], agreement: int,
) -> None:
    settled = compute_settled_answer(readings(*answers), agreement=agreement)
    last = answers[-agreement:]
    expected = (len(answers) >= agreement and None not in last
                and len({answer_key(a) for a in last if a is not None}) == 1)  # fmt: skip
    assert (settled is not None) == expected
    if settled is not None:
        assert settled == answers[-1]


@given(st.lists(answer, max_size=12), st.integers(min_value=1, max_value=5))
def test_a_state_settles_on_the_first_run_of_agreeing_readings(
    answers: list[str | None], agreement: int,
) -> None:
    state = ProbeState(ProbeConfig(enabled=True, agreement=agreement))
    outcomes = [state.record(ProbeReading(a)) for a in answers]
    first = next((i for i in range(len(answers))
                  if compute_settled_answer(readings(*answers[:i + 1]),
                                            agreement=agreement) is not None), None)  # fmt: skip
    if first is None:
        assert state.settled is None
    else:
        assert outcomes[:first] == [None] * first
        assert set(outcomes[first:]) == {answers[first]}


def test_the_default_probe_cue_is_the_forcing_cue_with_the_box_opened() -> None:
    chat = ChatFormat.model_validate({"preset": "deepseek-r1"})
    assert ProbeConfig().cue_text(ForcingConfig(), chat) == "\n</think>\n\nFinal answer: \\boxed{"
    assert ProbeConfig().stop == ("}",)
    own = ProbeConfig(cue="{think_end}Answer: \\boxed{")
    assert own.cue_text(ForcingConfig(cue="ignored"), chat) == "</think>Answer: \\boxed{"


CUE = "Final answer: \\boxed{"


@pytest.mark.parametrize(("generated", "stopped", "answer", "read"), [
    pytest.param("42", True, "42", CUE + "42}", id="the stop ate the closing brace"),
    pytest.param("42}.", True, "42", CUE + "42}.", id="the model closed the box itself"),
    pytest.param("\\frac{1", True, None, CUE + "\\frac{1", id="stopped inside the answer"),
    pytest.param("42", False, None, CUE + "42", id="cut at max tokens, box open"),
    pytest.param("", True, None, CUE, id="nothing inside the box"),
])  # fmt: skip
def test_a_probe_that_stopped_is_read_with_its_stop_string_put_back(
    generated: str, stopped: bool, answer: str | None, read: str
) -> None:
    assert read_probe(CUE + generated, extract_chain, ("}",), stopped=stopped) == (answer, read)


def test_each_stop_string_is_tried_in_order() -> None:
    text = "Answer: [[7"  # chain finds the last number without a stop string put back
    assert read_probe(text, extract_chain, ("}", "]]"), stopped=True) == ("7", text)
    boxed = "Answer: \\boxed{7"
    assert read_probe(boxed, extract_chain, ("]]", "}"), stopped=True) == ("7", boxed + "}")

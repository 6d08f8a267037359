"""Thinking budgets from trajectories: caps with and without forcing, probe exits, the
cap ``ponder calibrate`` picks, and the figures they give on the Gemma-4-12B traces."""

from __future__ import annotations

import json

import numpy as np
import pytest

from components import require_data
from ponder_tools.data import shared_data_dir
from ponder_tools.evaluation.calibrate import token_cap
from ponder_tools.evaluation.dataset import parse_lines
from ponder_tools.evaluation.thinking import (
    ThinkingSample,
    choose_cap,
    choose_probe,
    format_thinking,
    from_problem,
    from_trace,
    run_cap,
    run_fraction,
    run_full,
    run_probe_exit,
    summarise,
    thinking_report,
)
from ponder_tools.evaluation.trajectories import GEMMA_TRAJECTORIES, load_gemma_traces

# Wrong before any thinking, right from 400 tokens, wrong again at its end (overthinking).
TRACE = ThinkingSample("q", 1000, "B", ((0, "A", 0.3), (200, "C", 0.5), (400, "B", 0.6),
                                        (600, "B", 0.95), (800, "B", 0.99),
                                        (1000, "D", 0.7)))  # fmt: skip


def test_a_trace_within_its_cap_answers_in_full_whatever_the_rule() -> None:
    assert run_cap(TRACE, 1000, forcing=False) == run_full(TRACE)
    assert run_cap(TRACE, 5000, forcing=True).answer == "D"


def test_past_its_cap_a_trace_abstains_without_forcing_and_answers_there_with_it() -> None:
    assert run_cap(TRACE, 500, forcing=False).answer is None
    assert run_cap(TRACE, 500, forcing=False).tokens == 500
    forced = run_cap(TRACE, 500, forcing=True, answer_tokens=32)
    assert (forced.answer, forced.tokens) == ("B", 532)
    assert run_cap(TRACE, 100, forcing=True).answer == "A"  # below every probe point
    assert run_fraction(TRACE, 0.5).answer == "B"  # 500 tokens: the checkpoint at 400


@pytest.mark.parametrize(("agree", "floor", "answer", "thinking", "probes"), [
    (1, 0.0, "C", 200, 1),  # the first probe (the 0-token checkpoint is never probed)
    (2, 0.0, "B", 600, 3),  # B at 400 and 600
    (3, 0.0, "B", 800, 4),
    (2, 0.9, "B", 800, 4),  # B agrees at 400 and 600, but is only 0.6 sure at 400
    (2, 0.96, "D", 1000, 4),  # never twice 0.96 sure: runs to its end
    (4, 0.0, "D", 1000, 4),  # never settles: runs to its end, every probe paid
])  # fmt: skip
def test_a_probe_exit_stops_once_consecutive_probes_agree(
        agree: int, floor: float, answer: str, thinking: int, probes: int) -> None:  # fmt: skip
    run = run_probe_exit(TRACE, agree, confidence_floor=floor, probe_tokens=8)
    assert (run.answer, run.thinking_tokens, run.probe_tokens) == (answer, thinking, probes * 8)


def test_the_cap_chosen_is_the_smallest_within_tolerance_of_the_full_traces() -> None:
    settles = ThinkingSample("p", 1000, "B", ((0, "A", 1.0), (300, "B", 1.0), (1000, "B", 1.0)))
    late = ThinkingSample("r", 1000, "B", ((0, "A", 1.0), (900, "B", 1.0), (1000, "B", 1.0)))
    chosen = choose_cap([settles, late], tolerance=0.0, candidates=[256, 512, 1024])
    assert (chosen.cap_tokens, chosen.accuracy, chosen.full_accuracy) == (1024, 1.0, 1.0)
    loose = choose_cap([settles, late], tolerance=0.5, candidates=[256, 512, 1024])
    assert (loose.cap_tokens, loose.accuracy) == (512, 0.5)
    thrifty = choose_cap([settles, late], objective="correct-per-token",
                         candidates=[256, 512, 1024])  # fmt: skip
    assert thrifty.cap_tokens == 1024  # 1 right per 1,000 tokens beats 0.5 per 544


def test_calibrate_caps_a_tier_by_its_trajectories_when_every_sample_has_one() -> None:
    line = json.dumps({"id": "p", "question": "Which?", "reference": "B", "answers": ["B", "B"],
                       "tokens": [1000, 1000],
                       "checkpoints": [[[0, "A"], [300, "B"], [1000, "B"]]] * 2})  # fmt: skip
    problems = parse_lines([line], mode="text").problems
    assert len(from_problem(problems[0])) == 2
    assert token_cap(problems, 1.0, 4096, thinking_tolerance=0.0) == 512
    assert token_cap(problems, 1.0, 4096) == 1024  # without a tolerance: the lengths


@pytest.fixture(scope="module")
def gemma() -> list[ThinkingSample]:
    require_data(shared_data_dir() / GEMMA_TRAJECTORIES)
    return [from_trace(t) for t in load_gemma_traces()]


def test_on_the_gemma_traces_forcing_recovers_most_of_what_truncation_loses(
        gemma: list[ThinkingSample]) -> None:  # fmt: skip
    # Cohort caveat: the questions over-represent overthinking (trajectories.GEMMA_CAVEAT).
    median = float(np.median([s.tokens for s in gemma]))
    full, cut, forced = summarise(gemma, {
        "full": run_full, "cut": lambda s: run_cap(s, median, forcing=False),
        "forced": lambda s: run_cap(s, median, forcing=True)})  # fmt: skip
    recovered = (forced.accuracy - cut.accuracy) / (full.accuracy - cut.accuracy)
    assert recovered >= 0.8
    assert forced.saved > 0.25


def test_on_the_gemma_traces_agreeing_three_times_saves_half_the_tokens_within_two_se(
        gemma: list[ThinkingSample]) -> None:  # fmt: skip
    (probe,) = summarise(gemma, {"probe": lambda s: run_probe_exit(s, 3)})
    assert probe.saved >= 0.5
    assert abs(probe.delta) <= 2 * probe.paired_se
    assert probe.mean_probe_tokens < 0.05 * (probe.saved * 8713)


def test_the_evaluate_report_puts_each_tier_cap_cut_off_and_forced_beside_probe_exits() -> None:
    results = thinking_report([TRACE], caps=[500, 500, 2000], probe_tokens=8)
    names = [r.name for r in results]
    assert names[:5] == ["full traces", "cap 500, cut off", "cap 500, forced",
                         "cap 2000, cut off", "cap 2000, forced"]  # fmt: skip
    assert names[-3:] == ["probe exit, agree 2", "probe exit, agree 3", "probe exit, agree 4"]
    by = {r.name: r for r in results}
    assert (by["cap 500, cut off"].accuracy, by["cap 500, forced"].accuracy) == (0.0, 1.0)
    assert by["full traces"].accuracy == 0.0  # overthought: wrong at its end
    assert "probe exit, agree 3" in format_thinking(results, "title")


def test_the_probe_setting_chosen_is_the_cheapest_that_keeps_the_full_traces_accuracy() -> None:
    # TRACE overthinks (right at 400-800 tokens, wrong at its end): any setting keeps its 0 %.
    steady = ThinkingSample("s", 1000, "B", ((0, "A", 0.2), (100, "B", 0.4), (200, "B", 0.95),
                                             (300, "B", 0.97), (1000, "B", 0.99)))  # fmt: skip
    chosen = choose_probe([steady], agreements=(1, 2, 3), floors=(0.0, 0.9), probe_tokens=8)
    assert (chosen.agreement, chosen.confidence_floor) == (1, 0.0)  # B at 100 tokens, right
    assert chosen.mean_tokens == 108
    wary = choose_probe([steady, TRACE], agreements=(1, 2), floors=(0.0, 0.9), tolerance=0.0)
    assert wary.accuracy >= wary.full_accuracy

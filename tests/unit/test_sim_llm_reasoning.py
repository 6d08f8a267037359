"""The stand-in LLM's reasoning mode (a simulation), without Triton.

Its traces are as long as DeepSeek-R1's production outputs (scaled), its answer settles
over the trace as the Gemma-4-12B traces' does (share of samples already on their final
answer at each tenth), an answer cue mid-stream answers with what the trace had converged
to there, and with the mode off nothing changes.
"""

from __future__ import annotations

import csv
import itertools
import statistics
from pathlib import Path

import pytest

from ponder_localstack.sim_llm import behaviour
from ponder_localstack.sim_llm.behaviour import SamplingParams, SimModel, SimSettings
from ponder_localstack.triton import SimModelOptions, build_model_repository
from ponder_tools.data import shared_data_dir

DATA_DIR = shared_data_dir()
CUE = "\n</think>\n\nFinal answer:"
SCALE = 1 / 16


@pytest.fixture(scope="module")
def thinker() -> SimModel:
    return SimModel.load(DATA_DIR, SimSettings(reasoning_mode=True, length_scale=SCALE))


@pytest.fixture(scope="module")
def plain() -> SimModel:
    return SimModel.load(DATA_DIR)


def servegen_quantile(name: str) -> float:
    with (DATA_DIR / "traces/servegen_deepseek_r1_length_quantiles.csv").open() as f:
        row = next(r for r in csv.DictReader(f) if r["field"] == "output_tokens"
                   and r["window_start_s"] == "0" and r["window_end_s"] == "86400")  # fmt: skip
    return float(row[name])


def test_the_convergence_curve_is_the_gemma_traces_own_made_non_decreasing(
        thinker: SimModel) -> None:  # fmt: skip
    assert thinker.reasoning is not None
    settled, observed = thinker.reasoning.settled_share, thinker.reasoning.observed_share
    assert len(settled) == 11
    assert settled[-1] == 1.0
    assert all(a <= b for a, b in itertools.pairwise(settled))
    assert max(abs(a - b) for a, b in zip(settled, observed, strict=True)) < 0.02
    assert 0.3 < observed[0] < 0.5 < observed[5] < 0.9  # the data: 0.41 ... 0.73 ... 1.0


@pytest.mark.parametrize("name", ["p50", "p90", "p99"])
def test_trace_lengths_follow_deepseek_r1s_production_lengths_scaled(
        thinker: SimModel, name: str) -> None:  # fmt: skip
    params = SamplingParams(max_tokens=10**6, seed=1)
    lengths = sorted(len(thinker.complete(p.text, params).tokens) - behaviour.ANSWER_TOKENS
                     for p in thinker.catalog.problems)  # fmt: skip
    share = {"p50": 0.5, "p90": 0.9, "p99": 0.99}[name]
    simulated = lengths[int(share * len(lengths))]
    assert simulated == pytest.approx(servegen_quantile(name) * SCALE, rel=0.25)


def test_the_simulated_answers_converge_as_the_gemma_traces_do(thinker: SimModel) -> None:
    assert thinker.reasoning is not None
    observed = thinker.reasoning.observed_share
    same: dict[int, list[bool]] = {tenth: [] for tenth in range(1, 11)}
    problems = thinker.catalog.problems[::5]  # 100 problems x 8 seeds
    for problem in problems:
        for seed in range(8):
            profile = thinker.profile_problem(problem)
            draw = thinker.draw(profile, behaviour._rng("sample", behaviour.normalize_text(
                problem.text), seed))  # fmt: skip
            for tenth in same:
                rng = behaviour._rng("unsettled", problem.text, seed, tenth)
                answer = behaviour.converged_answer(draw, profile, tenth / 10, rng)
                same[tenth].append(answer == draw.answer)
    for tenth, hits in same.items():
        assert statistics.fmean(hits) == pytest.approx(observed[tenth], abs=0.06)


def test_an_answer_cue_mid_stream_answers_with_the_trace_so_far_and_at_the_end_with_its_own(
        thinker: SimModel) -> None:  # fmt: skip
    early_same, end_same, n = 0, 0, 0
    for problem in thinker.catalog.problems[:60]:
        seed = 3
        full = thinker.complete(problem.text, SamplingParams(max_tokens=10**6, seed=seed))
        reasoning = len(full.tokens) - behaviour.ANSWER_TOKENS
        if reasoning < 20:
            continue
        n += 1
        early = thinker.complete(problem.text,
                                 SamplingParams(max_tokens=reasoning // 10, seed=seed))  # fmt: skip
        asked = thinker.complete(problem.text + early.text + CUE,
                                 SamplingParams(max_tokens=32, seed=seed))  # fmt: skip
        again = thinker.complete(problem.text + early.text + CUE,
                                 SamplingParams(max_tokens=32, seed=seed))  # fmt: skip
        assert asked.answer == again.answer  # the converged-so-far answer, fixed by the seed
        early_same += asked.answer == full.answer
        whole = full.text[: full.text.index("\nThe answer")]
        at_end = thinker.complete(problem.text + whole + CUE,
                                  SamplingParams(max_tokens=32, seed=seed))  # fmt: skip
        end_same += at_end.answer == full.answer
    assert n >= 30
    assert end_same == n
    assert early_same < 0.8 * n  # about half have settled a tenth of the way in


def test_without_reasoning_mode_the_model_is_unchanged(plain: SimModel) -> None:
    assert plain.reasoning is None
    problem = plain.catalog.problems[7]
    params = SamplingParams(max_tokens=10**6, seed=5)
    again = SimModel(plain.catalog, plain.calibration, plain.settings, plain.confidence)
    assert plain.complete(problem.text, params) == again.complete(problem.text, params)
    assert plain.draw(plain.profile_problem(problem), behaviour._rng("x")).settle_fraction == 0.0


def test_the_model_repository_carries_the_reasoning_mode(tmp_path: Path) -> None:
    build_model_repository(tmp_path, [SimModelOptions(name="thinker", reasoning_mode=True),
                                      SimModelOptions(name="plain")])  # fmt: skip
    thinker = (tmp_path / "thinker" / "config.pbtxt").read_text()
    assert 'key: "reasoning_mode", value: { string_value: "true" }' in thinker
    assert 'string_value: "false"' in (tmp_path / "plain" / "config.pbtxt").read_text()

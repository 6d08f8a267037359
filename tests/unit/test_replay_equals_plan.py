"""The evaluator's vectorised replay equals ``RequestPlan`` driven one request at a time.

``replay_adaptive`` is a fast path over arrays; the live router decides with
``RequestPlan``. These tests drive a ``RequestPlan`` per request and order through
``plan.replay_request`` and require the same samples launched, samples finished, tokens,
verifier calls, waves and answer, on generated data sets and on every real per-sample set
in the shared data that the evaluator reads.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from components import require_data
from ponder_router.aggregate import StopRule, StopRuleKind
from ponder_router.budgets import Budget, BudgetPolicy, Strategy, Tier, default_policy
from ponder_router.forcing import ForcingConfig
from ponder_router.plan import RecordedSample, RequestPlan, replay_request
from ponder_router.waves import WaveSizing
from ponder_tools.data import shared_data_dir
from ponder_tools.evaluation.dataset import (
    Dataset,
    convert_qwen25math,
    load_dataset,
    parse_lines,
)
from ponder_tools.evaluation.replay import ReplaySet, build_replay_set, replay_adaptive
from ponder_tools.evaluation.suite import ponder_budgets
from ponder_tools.evaluation.trajectories import GEMMA_TRAJECTORIES, convert_gemma_thinking

RULES = [
    StopRule(), StopRule(threshold=0.6), StopRule(kind=StopRuleKind.WINDOW, window=3),
    StopRule(kind=StopRuleKind.NEVER), StopRule(score_threshold=0.8),
    StopRule(kind=StopRuleKind.MARGIN, margin=2), StopRule(threshold=0.6, score_threshold=0.3),
    *(StopRule(later_waves=sizing) for sizing in WaveSizing if sizing is not WaveSizing.MINIMAL),
    StopRule(kind=StopRuleKind.MARGIN, margin=3, later_waves=WaveSizing.LOOKAHEAD),
    StopRule(kind=StopRuleKind.WINDOW, window=3, later_waves=WaveSizing.DOUBLING),
]  # fmt: skip

MIXED = BudgetPolicy(tiers=(  # a growing vote, a verified best-of-n and a revision chain
    Tier(name="a", max_difficulty=0.3, max_tokens=300, max_tokens_after_first_wave=700,
         max_samples=6, initial_samples=2, strategy=Strategy.VOTE, stop_threshold=0.7),
    Tier(name="b", max_difficulty=0.6, max_tokens=100_000, max_samples=8,
         initial_samples=1, strategy=Strategy.BEST_OF_N, verifier_model="prm"),
    Tier(name="c", max_difficulty=1.0, max_tokens=100_000, max_samples=6,
         initial_samples=1, strategy=Strategy.REVISE),
))  # fmt: skip


Row = tuple[int, int, float, float, bool, int]  # ... correct, and waves


def recorded_checkpoints(rs: ReplaySet, row: int,
                         column: int) -> tuple[tuple[int, str | None], ...]:  # fmt: skip
    """The trajectory of the sample at ``row, column`` as ``RecordedSample`` holds it."""
    if rs.trajectory is None or not rs.trajectory.present[row, column]:
        return ()
    points = zip(rs.trajectory.tokens[row, column].tolist(),
                 rs.trajectory.keys[row, column].tolist(), strict=True)  # fmt: skip
    return tuple((int(t), None if k < 0 else str(k)) for t, k in points if np.isfinite(t))


def plan_outcomes(rs: ReplaySet, budgets: Sequence[Budget], index: np.ndarray,
                  rule: StopRule, waves: bool,
                  forcing_tokens: int | None = None) -> list[Row]:  # fmt: skip
    """(launched, finished, tokens, verifier calls, correct) per row, from RequestPlan."""
    out = []
    scored = rs.scores is not None
    for row in range(rs.rows):
        problem = row // rs.orderings
        budget = budgets[int(index[problem])]
        count = int(rs.counts[problem])
        samples = [RecordedSample(None if k < 0 else str(k), int(t),
                                  float(s) if scored else None,
                                  checkpoints=recorded_checkpoints(rs, row, j))
                   for j, (k, t, s) in enumerate(zip(
                       rs.keys[row, :count].tolist(), rs.tokens[row, :count].tolist(),
                       (rs.scores[row, :count].tolist() if rs.scores is not None
                        else [0.0] * count), strict=True))]  # fmt: skip
        plan = RequestPlan.for_request(budget, rule, can_score=scored, equality="exact")
        got = replay_request(plan, samples, verifier_model="data" if scored else None,
                             waves=waves, forcing_tokens=forcing_tokens)  # fmt: skip
        right = got.answer is not None and got.answer == str(rs.correct[problem])
        out.append((got.launched, got.completed, float(got.tokens),
                    float(got.verifier_calls), right, got.waves))
    return out


def assert_replay_equals_plan(rs: ReplaySet, budgets: Sequence[Budget], index: np.ndarray,
                              rule: StopRule, waves: bool,
                              forcing: ForcingConfig | None = None) -> None:  # fmt: skip
    fast = replay_adaptive(rs, budgets, index, rule, name="x", family="x", waves=waves,
                           forcing=forcing)  # fmt: skip
    calls = fast.verifier_calls if fast.verifier_calls is not None else np.zeros(rs.rows)
    assert fast.waves is not None
    waves_fast = fast.waves.astype(int).tolist()
    got = list(zip(fast.samples.astype(int).tolist(), fast.completed.astype(int).tolist(),
                   fast.tokens.tolist(), calls.tolist(), fast.correct.tolist(), waves_fast,
                   strict=True))  # fmt: skip
    forcing_tokens = forcing.answer_tokens if forcing is not None else None
    assert got == plan_outcomes(rs, budgets, index, rule, waves, forcing_tokens)


@st.composite
def trajectory(draw: st.DrawFn, tokens: int) -> list[list[object]]:
    """Checkpoints in trace order up to ``tokens``, each answering 1 to 4 or nothing."""
    marks = sorted(draw(st.lists(st.integers(0, tokens), min_size=1, max_size=5)))
    return [[t, draw(st.sampled_from(["1", "2", "3", "4", None]))] for t in marks]


@st.composite
def datasets(draw: st.DrawFn, trajectories: bool = False) -> Dataset:
    """A few problems with 2 to 10 samples over a few answers, some abstaining (and, with
    ``trajectories``, some problems with each sample's checkpoints)."""
    rows = []
    for i in range(draw(st.integers(1, 6))):
        count = draw(st.integers(2, 10))
        answers = draw(st.lists(st.sampled_from(["1", "2", "3", None]), min_size=count,
                                max_size=count))  # fmt: skip
        extra: dict[str, object] = {}
        tokens = draw(st.lists(st.integers(1, 600), min_size=count, max_size=count))
        if trajectories and draw(st.booleans()):
            extra["checkpoints"] = [draw(trajectory(t)) for t in tokens]
        rows.append({**extra,
            "id": f"p{i}", "question": f"Problem {i}: what is x?", "reference": "1",
            "samples": [f"\\boxed{{{a}}}" if a else "no answer" for a in answers],
            "tokens": tokens,
            "scores": draw(st.lists(st.sampled_from([0.1, 0.3, 0.5, 0.8, 0.9]),
                                    min_size=count, max_size=count)),
        })  # fmt: skip
    return parse_lines([json.dumps(r) for r in rows], name="generated")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(dataset=datasets(), rule=st.sampled_from(RULES), waves=st.booleans(),
       seed=st.integers(0, 1000))  # fmt: skip
def test_the_fast_replay_equals_request_plan_on_generated_data(
    dataset: Dataset, rule: StopRule, waves: bool, seed: int
) -> None:
    rs = build_replay_set(dataset, orderings=3, seed=seed)
    spread = [(0.1, 0.5, 0.9)[(i + seed) % 3] for i in range(len(dataset.problems))]
    smallest = min(p.sample_count for p in dataset.problems)
    one = BudgetPolicy(tiers=(Tier(name="all", max_difficulty=1.0, max_tokens=400,
                                   max_samples=smallest, initial_samples=1,
                                   strategy=Strategy.VOTE),))  # fmt: skip
    for policy, scores in ((one, None), (MIXED, spread)):
        budgets, index = ponder_budgets(dataset.problems, policy, scores=scores)
        assert_replay_equals_plan(rs, budgets, index, rule, waves)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(dataset=datasets(trajectories=True), rule=st.sampled_from(RULES), waves=st.booleans(),
       seed=st.integers(0, 1000), answer_tokens=st.integers(1, 64))  # fmt: skip
def test_the_fast_replay_of_budget_forcing_equals_request_plan_on_generated_trajectories(
    dataset: Dataset, rule: StopRule, waves: bool, seed: int, answer_tokens: int
) -> None:
    rs = build_replay_set(dataset, orderings=3, seed=seed)
    spread = [(0.1, 0.5, 0.9)[(i + seed) % 3] for i in range(len(dataset.problems))]
    forcing = ForcingConfig(answer_tokens=answer_tokens)
    budgets, index = ponder_budgets(dataset.problems, MIXED, scores=spread)
    assert_replay_equals_plan(rs, budgets, index, rule, waves, forcing)


def test_the_fast_replay_of_budget_forcing_equals_request_plan_on_the_gemma_traces() -> None:
    require_data(shared_data_dir() / GEMMA_TRAJECTORIES)
    dataset = parse_lines([json.dumps(r) for r in convert_gemma_thinking()], mode="text",
                          name="gemma")  # fmt: skip
    rs = build_replay_set(dataset, orderings=2, seed=3)
    for policy in (default_policy(), MIXED):
        budgets, index = ponder_budgets(dataset.problems, policy)
        assert_replay_equals_plan(rs, budgets, index, StopRule(), True, ForcingConfig())


def real_datasets() -> list[tuple[str, Dataset]]:
    root = shared_data_dir()
    for name in ("qwen25math_math100_x8_samples.csv", "mot_llama2_13b_gsm8k_pot_400x48.jsonl",
                 "mot_gpt4_gsm8k_cot_1319x6.jsonl"):  # fmt: skip
        require_data(root / "samples" / name)
    return [
        ("qwen2.5-math", parse_lines([json.dumps(r) for r in convert_qwen25math(root)],
                                     name="qwen2.5-math")),
        ("llama-2-13b", load_dataset(root / "samples/mot_llama2_13b_gsm8k_pot_400x48.jsonl")),
        ("gpt-4", load_dataset(root / "samples/mot_gpt4_gsm8k_cot_1319x6.jsonl")),
    ]


@pytest.mark.parametrize("rule", [StopRule(), StopRule(kind=StopRuleKind.MARGIN, margin=2),
                                  StopRule(score_threshold=0.6)])  # fmt: skip
def test_the_fast_replay_equals_request_plan_on_every_real_sample_set(rule: StopRule) -> None:
    for _name, dataset in real_datasets():
        problems = dataset.problems[:300]
        rs = build_replay_set(dataset, orderings=2, seed=1, problems=problems)
        for policy in (default_policy(), MIXED):
            budgets, index = ponder_budgets(problems, policy)
            assert_replay_equals_plan(rs, budgets, index, rule, waves=True)



def test_a_truncated_sample_abstains_in_the_plan_whatever_its_answer_says() -> None:
    budget = Budget(tier="t", strategy=Strategy.VOTE, max_tokens_per_sample=100,
                    max_samples=4, wave_size=4, expected_tokens=400)  # fmt: skip
    plan = RequestPlan.for_request(budget, StopRule(kind=StopRuleKind.NEVER), can_score=False)
    samples = [RecordedSample("7", 100, truncated=True, cumulative_logprob=-9.0),
               RecordedSample("7", 500),  # longer than the budget allows: cut off there
               RecordedSample("3", 40), RecordedSample("3", 40)]  # fmt: skip
    outcome = replay_request(plan, samples)
    assert outcome.answer == "3"
    assert plan.state.abstentions == 2
    assert plan.truncated == 2
    assert plan.finished[0].cumulative_logprob == -9.0
    report = plan.report(plan.choose(None), difficulty=0.5, difficulty_source="estimate",
                         tokens_used=outcome.tokens, answered_by="svc")  # fmt: skip
    assert report.samples.truncated == 2

"""The stand-ins behind the router's verifier strategies (simulators), without Triton.

The stand-in reward model (``sim_rm``) scores right and wrong answers of the stand-in LLM
with the real reward model's score distributions (Qwen's ``rm_score``, read here in
place), so it tells right from wrong about as well; the stand-in LLM answers a revision
prompt, as the router's ``revise`` strategy writes it, more often right than the
original prompt.
"""

from __future__ import annotations

import csv
import statistics
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import pytest

from ponder_localstack.sim_llm import behaviour
from ponder_localstack.sim_llm.behaviour import SamplingParams, SimModel
from ponder_localstack.sim_rm import MODEL_NAME as RM_MODEL_NAME
from ponder_localstack.sim_rm import scoring
from ponder_localstack.triton import (
    SimModelOptions,
    SimRewardModelOptions,
    build_model_repository,
)
from ponder_router.executor import _REVISE_SUFFIX  # the prompt the revise strategy sends
from ponder_tools.data import shared_data_dir

DATA_DIR = shared_data_dir()
AMPLE = 100_000


@pytest.fixture(scope="module")
def model() -> SimModel:
    return SimModel.load(DATA_DIR)


@pytest.fixture(scope="module")
def reward_model(model: SimModel) -> scoring.SimRewardModel:
    return scoring.SimRewardModel(lambda prompt: model.profile_prompt(prompt).reference)


@pytest.fixture(scope="module")
def real_scores() -> dict[bool, list[float]]:
    path = DATA_DIR / "samples" / "qwen25math_math100_x8_samples.csv"
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    return {right: [float(r["rm_score"]) for r in rows if r["correct"] == str(int(right))]
            for right in (True, False)}  # fmt: skip


def auroc(positives: Sequence[float], negatives: Sequence[float]) -> float:
    wins = sum((p > n) + 0.5 * (p == n) for p in positives for n in negatives)
    return wins / (len(positives) * len(negatives))


def scored_text(prompt: str, completion: str) -> str:
    """What the router's verifier adapter sends (``TritonBackend.score``)."""
    return prompt + "\n\n" + completion


# --- the reward model's calibration ----------------------------------------------------


@pytest.mark.parametrize(
    ("right", "distribution"),
    [pytest.param(True, scoring.RIGHT_SCORES, id="right answers"),
     pytest.param(False, scoring.WRONG_SCORES, id="wrong answers")],
)  # fmt: skip
def test_the_score_distributions_are_those_of_the_real_reward_model(
    real_scores: dict[bool, list[float]], right: bool, distribution: scoring.ScoreDistribution
) -> None:
    scores = real_scores[right]
    assert distribution.mean == pytest.approx(statistics.fmean(scores), abs=1e-3)
    assert distribution.stdev == pytest.approx(statistics.stdev(scores), abs=1e-3)


def test_simulated_scores_tell_right_from_wrong_as_well_as_the_real_ones(
    real_scores: dict[bool, list[float]],
) -> None:
    real = auroc(real_scores[True], real_scores[False])
    right = [scoring.draw_score(True, f"right {i}") for i in range(1500)]
    wrong = [scoring.draw_score(False, f"wrong {i}") for i in range(1500)]
    assert real > 0.9  # an informative verifier: best-of-n has something to act on
    assert auroc(right, wrong) == pytest.approx(real, abs=0.03)


def test_a_text_always_gets_the_same_score() -> None:
    assert scoring.draw_score(True, "a  text") == scoring.draw_score(True, "a text")
    assert scoring.draw_score(True, "a text") != scoring.draw_score(True, "another text")


@pytest.mark.parametrize(
    ("text", "answer"),
    [("The answer is \\boxed{42}.", "42"),
     ("first \\boxed{1}, then \\boxed{\\frac{1}{2}}.", "\\frac{1}{2}"),
     ("no answer at all", None),
     ("cut off in \\boxed{\\frac{1}{", None)],
)  # fmt: skip
def test_the_last_boxed_answer_is_the_one_scored(text: str, answer: str | None) -> None:
    assert scoring.last_boxed_answer(text) == answer


def test_a_stand_in_llm_sample_scores_as_right_exactly_when_it_is_right(
    model: SimModel, reward_model: scoring.SimRewardModel
) -> None:
    problems = [p for p in model.catalog.problems if p.level == 5][:20]
    outcomes = []
    for problem in problems:
        for seed in range(4):
            completion = model.complete(problem.text, SamplingParams(max_tokens=AMPLE, seed=seed))
            text = scored_text(problem.text, completion.text)
            outcomes.append((bool(completion.correct), reward_model.is_correct(text),
                             reward_model.score(text)))  # fmt: skip
    assert all(truth == judged for truth, judged, _ in outcomes)
    assert {truth for truth, _, _ in outcomes} == {True, False}
    right = [s for truth, _, s in outcomes if truth]
    wrong = [s for truth, _, s in outcomes if not truth]
    assert statistics.fmean(right) > statistics.fmean(wrong) + 2


def test_an_unknown_prompt_is_judged_against_its_own_reference(
    model: SimModel, reward_model: scoring.SimRewardModel
) -> None:
    prompt = "How many marbles are in the jar?"
    completions = [model.complete(prompt, SamplingParams(max_tokens=AMPLE, seed=s))
                   for s in range(12)]  # fmt: skip
    judged = [reward_model.is_correct(scored_text(prompt, c.text)) for c in completions]
    assert judged == [bool(c.correct) for c in completions]


# --- revision --------------------------------------------------------------------------


def test_the_revise_strategys_prompt_is_recognised_with_its_original_prompt() -> None:
    original = "What is 2 + 2?"
    revision = original + _REVISE_SUFFIX.format(previous="Let us think. \\boxed{5}.")
    assert behaviour.split_revision_prompt(revision) == behaviour.RevisionPrompt(
        original, "Let us think. \\boxed{5}.")
    assert behaviour.split_revision_prompt(original) is None


def test_a_revision_is_wrong_less_often_than_a_first_attempt(model: SimModel) -> None:
    problems = [p for p in model.catalog.problems if p.level >= 4][:60]
    kept = Counter[bool]()
    first = revised = total = 0
    for problem in problems:
        for seed in range(8):
            params = SamplingParams(max_tokens=AMPLE, seed=seed)
            attempt = model.complete(problem.text, params)
            revision = model.complete(
                problem.text + _REVISE_SUFFIX.format(previous=attempt.text), params)
            first += bool(attempt.correct)
            revised += bool(revision.correct)
            total += 1
            assert revision.problem_id == problem.problem_id
            if attempt.correct:
                kept[bool(revision.correct)] += 1
    # Most of these problems are (nearly) always or never solved; the rest gain.
    assert total - revised < 0.8 * (total - first)
    assert kept[True] / kept.total() >= behaviour.REVISION_KEEP_RIGHT - 0.03


# --- the model repository --------------------------------------------------------------


def test_the_reward_model_joins_the_repository_beside_the_stand_in_llm(tmp_path: Path) -> None:
    build_model_repository(tmp_path, [SimModelOptions(), SimRewardModelOptions()])
    folder = tmp_path / RM_MODEL_NAME
    config = (folder / "config.pbtxt").read_text()
    assert f'name: "{RM_MODEL_NAME}"' in config
    assert f'string_value: "{DATA_DIR}"' in config
    assert "decoupled" not in config  # the router's verifier adapter calls plain infer
    assert sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*.py")) == [
        "1/reward_model.py", "behaviour.py", "scoring.py"]

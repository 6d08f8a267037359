"""Prompt-only difficulty estimation: features, the logistic model, and real MATH levels."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from pydantic import ValidationError

from components import require_data
from ponder_router.difficulty import (
    DEFAULT_WEIGHTS,
    FEATURE_NAMES,
    ConstantEstimator,
    DifficultyEstimate,
    DifficultyEstimator,
    EstimatorWeights,
    FeatureEstimator,
    extract_features,
    fit_logistic,
    score_features,
)
from ponder_router.errors import PolicyError
from ponder_tools.data import shared_data_dir

DATA_DIR = shared_data_dir()

EASY_PROMPT = "What is $2 + 3$?"
HARD_PROMPT = (
    "Find all ordered pairs $(a, b)$ of positive integers such that $a \\le b$, "
    "$\\gcd(a, b) = 1$ and $\\frac{a^2 + b^2}{ab + 1}$ is a perfect square. Prove that "
    "the number of such pairs with $b < 10^{6}$ is divisible by $3$, and compute "
    "$\\sum_{k=1}^{\\infty} \\frac{1}{k^2}$ modulo $7$ if the sum is an integer."
)


def read_jsonl(path: Path) -> list[dict[str, object]]:
    require_data(path)
    with path.open(encoding="utf-8") as lines:
        return [json.loads(line) for line in lines]


def ranks(values: list[float]) -> list[float]:
    order = sorted(range(len(values)), key=values.__getitem__)
    result = [0.0] * len(values)
    start = 0
    while start < len(order):
        end = start
        while end + 1 < len(order) and values[order[end + 1]] == values[order[start]]:
            end += 1
        for position in range(start, end + 1):
            result[order[position]] = (start + end) / 2
        start = end + 1
    return result


def spearman(xs: list[float], ys: list[float]) -> float:
    rx, ry = ranks(xs), ranks(ys)
    mx, my = sum(rx) / len(rx), sum(ry) / len(ry)
    covariance = sum((a - mx) * (b - my) for a, b in zip(rx, ry, strict=True))
    spread_x = math.sqrt(sum((a - mx) ** 2 for a in rx))
    spread_y = math.sqrt(sum((b - my) ** 2 for b in ry))
    return covariance / (spread_x * spread_y)


def auroc(scores: list[float], positive: list[bool]) -> float:
    pos = [s for s, p in zip(scores, positive, strict=True) if p]
    neg = [s for s, p in zip(scores, positive, strict=True) if not p]
    wins = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


def test_every_named_feature_is_extracted_and_finite() -> None:
    features = extract_features(HARD_PROMPT)
    assert set(features) == set(FEATURE_NAMES)
    assert all(value >= 0.0 for value in features.values())


@pytest.mark.parametrize(
    ("feature", "prompt", "expected"),
    [
        ("diagram", "A square. [asy]draw((0,0)--(1,1));[/asy] Find its area.", 1.0),
        ("diagram", "A square has side 3. Find its area.", 0.0),
        ("max_digits", "What is 123456 + 7?", 6.0),
        ("max_digits", "What is one plus one?", 0.0),
        ("calculus_series", "Compute $x$.", 0.0),
        ("hard_keywords", "A plain sentence.", 0.0),
    ],
)
def test_features_read_the_prompt_as_expected(feature: str, prompt: str, expected: float) -> None:
    assert extract_features(prompt)[feature] == expected


def test_diagram_code_does_not_pass_for_a_long_prompt() -> None:
    plain = "A square has side 3. Find its area."
    drawn = plain + " [asy]" + "draw((0,0)--(1,1)--(2,0)--cycle);" * 40 + "[/asy]"
    assert extract_features(drawn)["log_chars"] < extract_features(plain)["log_chars"] + 0.2


def test_a_contest_problem_scores_harder_than_simple_arithmetic() -> None:
    estimator = FeatureEstimator()
    assert estimator.estimate(HARD_PROMPT).score > estimator.estimate(EASY_PROMPT).score + 0.3


@pytest.mark.parametrize("prompt", ["", "hi", EASY_PROMPT, HARD_PROMPT, "x" * 100_000])
def test_scores_stay_within_zero_and_one(prompt: str) -> None:
    estimate = FeatureEstimator().estimate(prompt)
    assert 0.0 <= estimate.score <= 1.0
    assert estimate.features == extract_features(prompt)


def test_estimators_are_pluggable_behind_one_protocol() -> None:
    assert isinstance(FeatureEstimator(), DifficultyEstimator)
    assert isinstance(ConstantEstimator(0.7), DifficultyEstimator)
    assert ConstantEstimator(0.7).estimate(HARD_PROMPT) == DifficultyEstimate(score=0.7)


def test_estimates_and_weights_are_frozen() -> None:
    estimate = FeatureEstimator().estimate(EASY_PROMPT)
    with pytest.raises(ValidationError):
        estimate.score = 0.9
    with pytest.raises(ValidationError):
        DifficultyEstimate(score=1.5)


def test_weights_naming_an_unknown_feature_are_rejected() -> None:
    with pytest.raises(ValidationError, match="unknown features"):
        EstimatorWeights(bias=0.0, coefficients={"sentiment": 1.0})


@pytest.mark.parametrize("weight", [math.inf, -math.inf, math.nan])
def test_weights_must_be_finite(weight: float) -> None:
    with pytest.raises(ValidationError, match="finite number"):
        EstimatorWeights(bias=0.0, coefficients={"diagram": weight})
    with pytest.raises(ValidationError, match="finite number"):
        EstimatorWeights(bias=weight, coefficients={})


def test_fit_logistic_learns_which_feature_marks_hard_prompts() -> None:
    rows = [{"hard_keywords": float(i % 2), "log_chars": 3.0 + (i % 5) / 5} for i in range(200)]
    labels = [0.9 if row["hard_keywords"] else 0.1 for row in rows]
    weights = fit_logistic(rows, labels)
    assert weights.coefficients["hard_keywords"] > 2.0
    assert abs(weights.coefficients["log_chars"]) < 0.5
    hard = score_features({"hard_keywords": 1.0, "log_chars": 3.4}, weights)
    easy = score_features({"hard_keywords": 0.0, "log_chars": 3.4}, weights)
    assert hard == pytest.approx(0.9, abs=0.05)
    assert easy == pytest.approx(0.1, abs=0.05)


@pytest.mark.parametrize(
    ("rows", "labels", "message"),
    [
        ([], [], "at least one"),
        ([{"log_chars": 1.0}], [0.0, 1.0], "as many labels"),
        ([{"log_chars": 1.0}], [2.0], r"\[0, 1\]"),
    ],
)
def test_fit_logistic_refuses_unusable_training_data(
    rows: list[dict[str, float]], labels: list[float], message: str
) -> None:
    with pytest.raises(PolicyError, match=message):
        fit_logistic(rows, labels)


def test_default_weights_rank_math500_problems_by_their_level() -> None:
    problems = read_jsonl(DATA_DIR / "math" / "math500_test.jsonl")
    estimator = FeatureEstimator(DEFAULT_WEIGHTS)
    scores = [estimator.estimate(str(p["problem"])).score for p in problems]
    levels = [float(str(p["level"])) for p in problems]
    assert spearman(scores, levels) > 0.35  # measured 0.459
    assert auroc(scores, [level >= 4 for level in levels]) > 0.65  # measured 0.730


def test_weights_fitted_on_math_without_math500_generalise_to_math500() -> None:
    training = [
        row
        for row in read_jsonl(DATA_DIR / "math" / "math_test5000.jsonl")
        if row["math500_unique_id"] is None
    ]
    features = [extract_features(str(row["problem"])) for row in training]
    labels = [(int(str(row["level"]).removeprefix("Level ")) - 1) / 4 for row in training]
    weights = fit_logistic(features, labels)

    problems = read_jsonl(DATA_DIR / "math" / "math500_test.jsonl")
    scores = [score_features(extract_features(str(p["problem"])), weights) for p in problems]
    levels = [float(str(p["level"])) for p in problems]
    assert spearman(scores, levels) > 0.4  # measured 0.468
    assert auroc(scores, [level >= 4 for level in levels]) > 0.7  # measured 0.737

"""Prompt-only difficulty estimation: how hard a request is before any token is generated.

Role: the first step of budget assignment. ``budgets.assign_budget`` turns the score made
here into a tier (tokens, samples, strategy). Estimators are pluggable behind the
``DifficultyEstimator`` protocol; the default ``FeatureEstimator`` reads surface features
of the prompt (length, LaTeX, constraints, topic keywords, numbers) and combines them with
a logistic model whose weights are a frozen ``EstimatorWeights``. ``fit_logistic`` learns
such weights from labelled prompts (the calibration tool feeds it MATH levels or observed
per-problem accuracy). Pure: no I/O, no clock, no logging.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

from .errors import PolicyError

FEATURE_NAMES: tuple[str, ...] = (
    "log_chars",
    "latex_commands",
    "fractions_roots",
    "calculus_series",
    "advanced_notation",
    "constraints",
    "hard_keywords",
    "easy_keywords",
    "numbers",
    "max_digits",
    "variables",
    "diagram",
)
"""The features ``extract_features`` computes, in the order weights are stored."""

_COMMAND = re.compile(r"\\[A-Za-z]+")
_FRACTION_ROOT = re.compile(r"\\(?:d|t)?frac|\\sqrt")
_CALCULUS = re.compile(r"\\(?:int|iint|oint|sum|prod|lim|infty)\b")
_ADVANCED = re.compile(
    r"\\(?:log|ln|sin|cos|tan|cot|sec|csc|arcsin|arccos|arctan|det|omega|theta|alpha|beta"
    r"|gamma|mathbf|overline|begin\{pmatrix\}|operatorname|binom|lfloor|lceil|cdots|ldots"
    r"|equiv|mid|angle|triangle)\b"
)
_CONSTRAINT = re.compile(
    r"such that|satisf|given that|for all|for every|for each|at least|at most|distinct"
    r"|\bwhere\b|\bif\b|\bunless\b|\bexcept\b|\\le(?:q)?\b|\\ge(?:q)?\b|\\ne(?:q)?\b|[<>]",
    re.IGNORECASE,
)
_HARD = re.compile(
    r"\bprove\b|show that|find all|number of ways|how many ways|probability|modulo|\\pmod"
    r"|remainder|sum of all|product of all|\bmaximum\b|\bminimum\b|largest|smallest"
    r"|greatest|\bleast\b|ordered (?:pairs|triples)|real numbers|complex numbers|polynomial"
    r"|\broots?\b|sequence|divisible|\bprimes?\b|\bdigits?\b|expected value|integer values",
    re.IGNORECASE,
)
_EASY = re.compile(
    r"\bcompute\b|\bevaluate\b|\bsimplify\b|what is|\bround\b|nearest|what percent"
    r"|\bcalculate\b|\bsolve for\b",
    re.IGNORECASE,
)
_NUMBER = re.compile(r"\d+(?:\.\d+)?")
_MATH_SPAN = re.compile(r"\$\$?(.+?)\$\$?|\\\[(.+?)\\\]|\\\((.+?)\\\)", re.DOTALL)
_VARIABLE = re.compile(r"(?<![\\A-Za-z])[A-Za-z](?![A-Za-z])")
_DIAGRAM = re.compile(r"\[asy\].*?(?:\[/asy\]|$)", re.DOTALL)


class DifficultyEstimate(BaseModel):
    """A difficulty score in [0, 1] (0 easy, 1 hard) and the features it came from."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    score: float = Field(ge=0.0, le=1.0)
    features: dict[str, float] = Field(default_factory=dict)


@runtime_checkable
class DifficultyEstimator(Protocol):
    """Anything that scores a prompt; the router, evaluator and simulator share one."""

    def estimate(self, prompt: str) -> DifficultyEstimate:
        """Score ``prompt``; must be pure and fast (called once per request)."""
        ...


class EstimatorWeights(BaseModel):
    """Logistic-model weights: ``score = sigmoid(bias + sum(coefficients[f] * feature f))``.

    Coefficients apply to the raw features of ``extract_features``; a feature missing from
    ``coefficients`` has weight 0. The router reads them from its config's
    ``budgets.estimator`` (camelCase aliases, like the rest of the config).
    """

    model_config = ConfigDict(frozen=True, extra="forbid", alias_generator=to_camel,
                              populate_by_name=True, allow_inf_nan=False)  # fmt: skip

    bias: float
    coefficients: dict[str, float]

    @model_validator(mode="after")
    def _known_features(self) -> EstimatorWeights:
        unknown = sorted(set(self.coefficients) - set(FEATURE_NAMES))
        if unknown:
            raise ValueError(f"coefficients name unknown features {unknown}; "
                             f"known: {', '.join(FEATURE_NAMES)}")  # fmt: skip
        return self


DEFAULT_WEIGHTS = EstimatorWeights(
    bias=-5.6,
    coefficients={
        "log_chars": 0.8,
        "latex_commands": 0.0,
        "fractions_roots": 0.2,
        "calculus_series": 1.0,
        "advanced_notation": 0.2,
        "constraints": 0.25,
        "hard_keywords": 0.5,
        "easy_keywords": -0.3,
        "numbers": 0.0,
        "max_digits": 0.08,
        "variables": 0.35,
        "diagram": 0.0,
    },
)
"""Hand-set defaults: longer prompts with constraints and hard topics score higher."""


def extract_features(prompt: str) -> dict[str, float]:
    """The surface features of ``prompt`` named in ``FEATURE_NAMES`` (counts are log1p).

    Asymptote diagram code (``[asy]...[/asy]``) only sets ``diagram``: it would otherwise
    pass for length and notation.
    """
    diagram = 1.0 if _DIAGRAM.search(prompt) else 0.0
    prompt = _DIAGRAM.sub(" ", prompt)
    numbers = _NUMBER.findall(prompt)
    math_text = " ".join("".join(groups) for groups in _MATH_SPAN.findall(prompt))
    variables = set(_VARIABLE.findall(_COMMAND.sub(" ", math_text)))
    max_digits = max((len(n.split(".")[0]) for n in numbers), default=0)
    return {
        "log_chars": math.log1p(len(prompt)),
        "latex_commands": math.log1p(len(_COMMAND.findall(prompt))),
        "fractions_roots": math.log1p(len(_FRACTION_ROOT.findall(prompt))),
        "calculus_series": math.log1p(len(_CALCULUS.findall(prompt))),
        "advanced_notation": math.log1p(len(_ADVANCED.findall(prompt))),
        "constraints": math.log1p(len(_CONSTRAINT.findall(prompt))),
        "hard_keywords": math.log1p(len(_HARD.findall(prompt))),
        "easy_keywords": math.log1p(len(_EASY.findall(prompt))),
        "numbers": math.log1p(len(numbers)),
        "max_digits": float(min(max_digits, 12)),
        "variables": math.log1p(len(variables)),
        "diagram": diagram,
    }


def score_features(features: Mapping[str, float], weights: EstimatorWeights) -> float:
    """The logistic score in [0, 1] of already-extracted ``features``."""
    logit = weights.bias + sum(
        coefficient * features.get(name, 0.0) for name, coefficient in weights.coefficients.items()
    )
    return _sigmoid(logit)


@dataclass(frozen=True)
class FeatureEstimator:
    """The default estimator: prompt features through a logistic model."""

    weights: EstimatorWeights = field(default=DEFAULT_WEIGHTS)

    def estimate(self, prompt: str) -> DifficultyEstimate:
        features = extract_features(prompt)
        return DifficultyEstimate(score=score_features(features, self.weights), features=features)


@dataclass(frozen=True)
class ConstantEstimator:
    """Gives every prompt the same score: for effort-only routing and for tests."""

    score: float = 0.5

    def estimate(self, prompt: str) -> DifficultyEstimate:
        return DifficultyEstimate(score=self.score)


def fit_logistic(
    features: Sequence[Mapping[str, float]],
    labels: Sequence[float],
    *,
    l2_penalty: float = 1.0,
    max_iterations: int = 50,
    tolerance: float = 1e-8,
) -> EstimatorWeights:
    """Learn ``EstimatorWeights`` by L2-regularised logistic regression (Newton's method).

    ``labels`` are targets in [0, 1]: hard/easy as 1/0, or soft targets such as
    ``(level - 1) / 4`` for MATH levels or a problem's observed error rate. Features are
    standardised for the fit and the weights mapped back to raw features, so the penalty
    treats every feature alike and the result plugs straight into ``FeatureEstimator``.
    """
    if len(features) != len(labels) or not features:
        raise PolicyError("fit_logistic needs as many labels as feature rows, and at least one")
    if any(not 0.0 <= y <= 1.0 for y in labels):
        raise PolicyError("fit_logistic labels must lie in [0, 1]")
    rows = [[row.get(name, 0.0) for name in FEATURE_NAMES] for row in features]
    count, width = len(rows), len(FEATURE_NAMES)
    means = [sum(row[j] for row in rows) / count for j in range(width)]
    scales = [
        math.sqrt(sum((row[j] - means[j]) ** 2 for row in rows) / count) or 1.0
        for j in range(width)
    ]
    design = [[1.0] + [(row[j] - means[j]) / scales[j] for j in range(width)] for row in rows]
    theta = [0.0] * (width + 1)
    for _ in range(max_iterations):
        gradient = [l2_penalty * t for t in theta]
        gradient[0] = 0.0  # the intercept is not penalised
        hessian = [[0.0] * (width + 1) for _ in range(width + 1)]
        for k in range(width + 1):
            hessian[k][k] = l2_penalty if k else 1e-9
        for x, y in zip(design, labels, strict=True):
            p = _sigmoid(sum(t * v for t, v in zip(theta, x, strict=True)))
            residual, curvature = p - y, p * (1.0 - p)
            for a, xa in enumerate(x):
                gradient[a] += residual * xa
                row_a, scaled = hessian[a], curvature * xa
                for b in range(a + 1):
                    row_a[b] += scaled * x[b]
        for a in range(width + 1):
            for b in range(a):
                hessian[b][a] = hessian[a][b]
        step = _solve(hessian, gradient)
        theta = [t - s for t, s in zip(theta, step, strict=True)]
        if max(abs(s) for s in step) < tolerance:
            break
    coefficients = {name: theta[j + 1] / scales[j] for j, name in enumerate(FEATURE_NAMES)}
    bias = theta[0] - sum(coefficients[name] * means[j] for j, name in enumerate(FEATURE_NAMES))
    return EstimatorWeights(bias=bias, coefficients=coefficients)


def _sigmoid(logit: float) -> float:
    if logit >= 0:
        return 1.0 / (1.0 + math.exp(-logit))
    z = math.exp(logit)
    return z / (1.0 + z)


def _solve(matrix: list[list[float]], vector: list[float]) -> list[float]:
    """Solve ``matrix @ x = vector`` by Gaussian elimination with partial pivoting."""
    size = len(vector)
    augmented = [[*matrix[i], vector[i]] for i in range(size)]
    for col in range(size):
        pivot = max(range(col, size), key=lambda r: abs(augmented[r][col]))
        if abs(augmented[pivot][col]) < 1e-12:
            raise PolicyError("fit_logistic: singular system (constant or duplicate features)")
        augmented[col], augmented[pivot] = augmented[pivot], augmented[col]
        for r in range(col + 1, size):
            factor = augmented[r][col] / augmented[col][col]
            if factor:
                for c in range(col, size + 1):
                    augmented[r][c] -= factor * augmented[col][c]
    solution = [0.0] * size
    for r in range(size - 1, -1, -1):
        tail = sum(augmented[r][c] * solution[c] for c in range(r + 1, size))
        solution[r] = (augmented[r][size] - tail) / augmented[r][r]
    return solution

r"""Pure behaviour of the stand-in LLM, a simulator standing in for a GPU LLM.

Role: decide what the simulated model writes for one prompt and one set of sampling
parameters — how many reasoning tokens, whether the final ``\boxed{}`` answer is right,
and which wrong answer it gives otherwise. No Triton, no clock and no I/O except the
``load_*`` functions, which read ``shared/data`` in place. Its neighbours: ``1/model.py``
(the Triton python-backend model) adds timing, streaming, concurrency and cancellation;
``tests/unit/test_sim_llm_behaviour.py`` calls this module directly. It runs inside
Triton's python-backend stub as well, so it imports only the standard library.

Calibration, all from ``shared/data``:

- **accuracy**: the per-level mean of ``n_correct / n_samples`` in
  ``samples/qwen25math_math100_x8_problems.csv`` (100 MATH problems, 8 samples each),
  smoothed by a weighted least-squares line in logit(accuracy) over the level so that
  harder levels are never easier (the raw means of levels 1-4 lie within noise of each
  other). Per problem, the accuracy is logit-normal around its level's mean; the spread
  is matched to the observed between-problem variance (the data are U-shaped: most
  problems 8/8, a few 0/8), and each problem's place in the spread is fixed by its id,
  stratified within its level so the level means hold on MATH-500 itself.
- **wrong answers**: 2-3 distractors derived from the reference with skewed weights (real
  wrong answers cluster: one problem's 8 samples all answer ``4:30``), plus a small share
  of one-off answers.
- **reasoning length**: the whole-day median DeepSeek-R1 output length from
  ``traces/servegen_deepseek_r1_length_quantiles.csv`` times ``length_scale`` (scaled down
  so tests are fast), growing with level as response length does in the Qwen samples
  (log-linear fit), with per-problem and per-sample spreads from those samples, harder
  problems longer, and wrong samples longer by the ratio the samples show.
- **confidence** (the vLLM backend's ``cumulative_logprob``; simulated, not a model's
  real log-probabilities): each sample's answer confidence is drawn from the empirical
  distribution of a real reasoning model's confidence in its final answer, among traces
  that were right or among traces that were wrong, as this sample is right or wrong:
  ``prediction_probability / choice_probability_mass`` of the full traces
  (``is_full_trace``) in ``samples/gemma4_12b_thinking_trajectories.csv`` (Gemma-4-12B,
  150 multiple-choice questions x 10 traces; 711 right, 789 wrong), read at load. Those
  questions were selected in cohorts that over-represent overthinking, so the overlap
  between right and wrong confidences is, if anything, larger than on random questions.
  The reported ``cumulative_logprob`` after ``i`` of the sample's ``n`` tokens is
  ``i * (REASONING_LOGPROB_PER_TOKEN + log(confidence) / n)``: a constant per-token cost
  of reasoning (an assumption, not from the data) plus the answer's log-confidence spread
  evenly over the trace, so a running per-token mean already carries the signal.
- **revisions** (simulated, not calibrated): a prompt that carries a previous attempt and
  asks to review it (``REVISION_CUE``, the router's ``revise`` strategy) is the original
  problem with its logit accuracy raised by ``REVISION_LOGIT_GAIN``, and at least
  ``REVISION_KEEP_RIGHT`` when the attempt was right.
- **forced answers** (budget forcing; simulated, not calibrated): a prompt that ends with an
  answer cue (``Final answer:``) after a partial trace gets a short ``\boxed{}`` answer,
  the whole trace's with a probability that grows with how far the trace had got
  (``FORCED_ANSWER_EXPONENT``), else a wrong one. It takes as many tokens as a reasoning
  model's tokenizer would give `` \boxed{X}.`` and the end of sequence
  (``forced_answer_tokens``: 8 for ``42``; MATH-500's answers 10 on average), cut at
  ``max_tokens`` like any sample. After a cue that opens the box (``Final answer:
  \boxed{``, a probe's), and whatever of the answer is already written after it, only
  the rest: what is inside the box, ``}``, ``.`` and the end of sequence.
- **stop strings** as vLLM: the token that completes one is generated and counted, the
  text ends before it (``include_stop_str_in_output``: after it), ``finish_reason`` stop.
- **reasoning mode** (``SimSettings.reasoning_mode``; a simulation, calibrated): a sample's
  length is drawn from the whole-day DeepSeek-R1 output-length distribution
  (``traces/servegen_deepseek_r1_length_pmf_allday.csv``) times ``length_scale``, and its
  intermediate answer converges over the trace: each sample settles on its final answer
  at a point drawn so that the share of samples already on their final answer at each
  tenth of the trace is the share of Gemma-4-12B traces whose answer there equals their
  final one (``samples/gemma4_12b_thinking_trajectories.csv``; the data's cohorts
  over-represent overthinking). Before it settles, the answer at each tenth is another
  of the problem's answers, drawn afresh per tenth. An answer cue mid-stream answers
  with the converged-so-far answer at that point (``ReasoningCalibration``).
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import itertools
import json
import math
import random
import re
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MATH500_FILE = "math/math500_test.jsonl"
PROBLEMS_FILE = "samples/qwen25math_math100_x8_problems.csv"
SAMPLES_FILE = "samples/qwen25math_math100_x8_samples.csv"
LENGTHS_FILE = "traces/servegen_deepseek_r1_length_quantiles.csv"
CONFIDENCE_FILE = "samples/gemma4_12b_thinking_trajectories.csv"

LEVELS = (1, 2, 3, 4, 5)
UNKNOWN_LEVEL = 3
VLLM_DEFAULT_MAX_TOKENS = 16
"""vLLM's own default: a request without ``max_tokens`` gets 16 tokens there, and here."""
UNLIMITED_MAX_TOKENS = 32768
"""What ``max_tokens: null`` means: the simulated model's context length."""
MIN_REASONING_TOKENS = 3
MIN_MATCH_CHARS = 16
"""Shorter problem texts are matched only as the whole prompt, never as a substring."""
DIFFICULTY_LENGTH_CORRELATION = 0.5
"""Assumed correlation of a problem's hardness with its reasoning length (not in the data)."""
SCATTER_SHARE = 0.1
"""Share of wrong samples that give a one-off answer instead of a distractor."""
ANSWER_TOKENS = 4  # "\\nThe ", "answer ", "is ", "\\boxed{X}."
REASONING_LOGPROB_PER_TOKEN = -0.3
"""Assumed mean log-probability of a reasoning token (nats); not calibrated from data."""
MIN_CONFIDENCE = 1e-6
"""Floor of an answer confidence before its log is taken (the data hold a few zeros)."""

_QUADRATURE_POINTS = 48
_SPREAD_BOUNDS_LOGIT = (0.25, 8.0)
_NUMBER = re.compile(r"\d+(?:\.\d+)?")
_SENTENCES = tuple(
    s.split()
    for s in (
        "Let us restate the problem in our own words.",
        "First, we identify what is given and what is asked.",
        "We set up an equation for the unknown quantity.",
        "Substituting the known values gives a simpler expression.",
        "We simplify both sides and collect like terms.",
        "Now we check whether this satisfies every condition.",
        "Wait, let me double-check that step.",
        "That looks consistent, so we continue.",
        "Alternatively, we can approach this from another direction.",
        "Factoring the expression helps here.",
        "We consider the cases one at a time.",
        "Hmm, this case leads to a contradiction, so we discard it.",
        "Combining the remaining cases gives the result.",
        "Let me verify the arithmetic once more.",
    )
)
# sampling_parameters keys that vLLM's SamplingParams (0.5-0.6) or its Triton backend
# accept; the simulator honours the ones in SamplingParams below and ignores the rest.
_VLLM_KEYS = frozenset(
    {
        "n", "best_of", "presence_penalty", "frequency_penalty", "repetition_penalty",
        "temperature", "top_p", "top_k", "min_p", "seed", "stop", "stop_token_ids",
        "include_stop_str_in_output", "ignore_eos", "max_tokens", "min_tokens", "logprobs",
        "prompt_logprobs", "detokenize", "skip_special_tokens",
        "spaces_between_special_tokens", "truncate_prompt_tokens", "use_beam_search",
        "length_penalty", "early_stopping", "lora_name", "logit_bias", "allowed_token_ids",
        "guided_decoding", "output_kind",
    }
)  # fmt: skip
_SIM_KEYS = frozenset({"ponder_token_latency_ms"})


class SimLLMError(ValueError):
    """Base error of the stand-in LLM."""


class SamplingParameterError(SimLLMError):
    """The request's sampling parameters are invalid; the message says which and why."""


class CalibrationDataError(SimLLMError):
    """A ``shared/data`` file is missing or malformed; the message names the file."""


# --- hashing: every "random" choice that must not depend on the seed -----------------


def _digest(*parts: object) -> bytes:
    h = hashlib.sha256()
    for part in parts:
        h.update(str(part).encode())
        h.update(b"\x1f")
    return h.digest()


def _unit(*parts: object) -> float:
    """A number in (0, 1) fixed by ``parts``."""
    return (int.from_bytes(_digest(*parts)[:7], "big") + 0.5) / 2.0**56


def _rng(*parts: object) -> random.Random:
    return random.Random(int.from_bytes(_digest(*parts)[:16], "big"))


def _sigmoid(x: float) -> float:
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)
    return e / (1.0 + e)


def _logit(p: float) -> float:
    p = min(max(p, 1e-4), 1 - 1e-4)
    return math.log(p / (1 - p))


_NORMAL = statistics.NormalDist()
_GRID = tuple(_NORMAL.inv_cdf((i + 0.5) / _QUADRATURE_POINTS) for i in range(_QUADRATURE_POINTS))


def _mean_accuracy(center: float, spread: float) -> float:
    """E[sigmoid(center - spread * z)] for z ~ N(0, 1)."""
    return sum(_sigmoid(center - spread * z) for z in _GRID) / len(_GRID)


def solve_level_center(mean_accuracy: float, spread_logit: float) -> float:
    """The logit centre whose logit-normal accuracies average ``mean_accuracy``."""
    lo, hi = -40.0, 40.0
    for _ in range(50):
        mid = (lo + hi) / 2
        if _mean_accuracy(mid, spread_logit) < mean_accuracy:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def _weighted_line(
    xs: Sequence[float], ys: Sequence[float], ws: Sequence[float]
) -> tuple[float, float]:
    """Weighted least squares ``y = a + b x``; returns ``(a, b)``."""
    total = sum(ws)
    x_mean = sum(w * x for w, x in zip(ws, xs, strict=True)) / total
    y_mean = sum(w * y for w, y in zip(ws, ys, strict=True)) / total
    sxx = sum(w * (x - x_mean) ** 2 for w, x in zip(ws, xs, strict=True))
    if sxx == 0:
        return y_mean, 0.0
    sxy = sum(w * (x - x_mean) * (y - y_mean) for w, x, y in zip(ws, xs, ys, strict=True))
    slope = sxy / sxx
    return y_mean - slope * x_mean, slope


def normalize_text(text: str) -> str:
    """Whitespace-insensitive form used to recognise a problem inside a prompt."""
    return " ".join(text.split())


# --- problems ------------------------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    problem_id: str
    text: str
    answer: str
    level: int


class Catalog:
    """Known problems, found by their normalised text inside a prompt.

    Each problem gets a fixed hardness ``z`` (standard normal, higher is harder), taken
    from the quantiles of its level in an order fixed by its id.
    """

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems = tuple(problems)
        self._by_text = {normalize_text(p.text): p for p in self.problems}
        self._matchable = [
            (text, p) for text, p in self._by_text.items() if len(text) >= MIN_MATCH_CHARS
        ]
        self.hardness_z: Mapping[str, float] = compute_stratified_hardness(self.problems)

    def find(self, prompt: str) -> Problem | None:
        """The problem whose text the prompt contains, if any.

        When several do (worked examples before the question), the one ending last wins,
        then the longest.
        """
        text = normalize_text(prompt)
        exact = self._by_text.get(text)
        if exact is not None:
            return exact
        matches = [
            (start + len(problem_text), len(problem_text), problem)
            for problem_text, problem in self._matchable
            if (start := text.rfind(problem_text)) >= 0
        ]
        return max(matches, key=lambda m: m[:2])[2] if matches else None


def compute_stratified_hardness(problems: Iterable[Problem]) -> dict[str, float]:
    by_level: dict[int, list[str]] = {}
    for p in problems:
        by_level.setdefault(p.level, []).append(p.problem_id)
    hardness: dict[str, float] = {}
    for ids in by_level.values():
        ordered = sorted(ids, key=lambda pid: _unit("hardness", pid))
        for rank, pid in enumerate(ordered):
            hardness[pid] = _NORMAL.inv_cdf((rank + 0.5) / len(ordered))
    return hardness


def load_catalog(data_dir: Path) -> Catalog:
    """MATH-500 (problem, reference answer, level) from ``data_dir``."""
    path = data_dir / MATH500_FILE
    try:
        with path.open(encoding="utf-8") as f:
            rows = [json.loads(line) for line in f if line.strip()]
        return Catalog(
            Problem(str(r["unique_id"]), str(r["problem"]), str(r["answer"]), int(r["level"]))
            for r in rows
        )
    except (OSError, KeyError, ValueError) as exc:
        raise CalibrationDataError(
            f"cannot read the problem set {path} (set PONDER_DATA_DIR): {exc}"
        ) from exc


# --- calibration ---------------------------------------------------------------------


@dataclass(frozen=True)
class Calibration:
    """What the data say about accuracy and length; see the module docstring."""

    observed_level_accuracy: Mapping[int, float]
    level_accuracy: Mapping[int, float]
    spread_logit: float
    median_output_tokens: float
    mean_level: float
    length_level_slope: float
    length_spread_problem: float
    length_spread_sample: float
    wrong_length_log_ratio: float


def _predicted_variance(
    level_accuracy: Mapping[int, float],
    level_weights: Mapping[int, int],
    spread: float,
    samples_per_problem: float,
) -> float:
    total = 0.0
    for level, mean in level_accuracy.items():
        center = solve_level_center(mean, spread)
        ps = [_sigmoid(center - spread * z) for z in _GRID]
        between = sum((p - mean) ** 2 for p in ps) / len(ps)
        binomial = sum(p * (1 - p) for p in ps) / len(ps) / samples_per_problem
        total += level_weights[level] * (between + binomial)
    return total / sum(level_weights.values())


def compute_calibration(
    problem_rows: Sequence[Mapping[str, str]],
    sample_rows: Sequence[Mapping[str, str]],
    median_output_tokens: float,
) -> Calibration:
    """Fit accuracy and length from the Qwen 100x8 rows and the R1 median length."""
    level_of = {r["idx"]: int(r["level"]) for r in problem_rows}
    fractions: dict[int, list[float]] = {}
    for r in problem_rows:
        frac = int(r["n_correct"]) / int(r["n_samples"])
        fractions.setdefault(int(r["level"]), []).append(frac)
    levels = sorted(fractions)
    observed = {lv: statistics.fmean(fractions[lv]) for lv in levels}
    counts = {lv: len(fractions[lv]) for lv in levels}
    a, b = _weighted_line(
        [lv - 3 for lv in levels],
        [_logit(observed[lv]) for lv in levels],
        [counts[lv] for lv in levels],
    )
    smoothed = {lv: _sigmoid(a + b * (lv - 3)) for lv in LEVELS}

    observed_var = statistics.fmean((f - observed[lv]) ** 2 for lv in levels for f in fractions[lv])
    n_samples = statistics.fmean(int(r["n_samples"]) for r in problem_rows)
    fit_levels = {lv: smoothed[lv] for lv in levels}
    lo, hi = _SPREAD_BOUNDS_LOGIT
    for _ in range(30):
        mid = (lo + hi) / 2
        if _predicted_variance(fit_levels, counts, mid, n_samples) < observed_var:
            lo = mid
        else:
            hi = mid
    spread = (lo + hi) / 2

    logs: dict[str, list[tuple[float, bool]]] = {}
    for r in sample_rows:
        logs.setdefault(r["idx"], []).append(
            (math.log(max(1, int(r["response_chars"]))), r["correct"] == "1")
        )
    per_level: dict[int, list[float]] = {}
    within: list[float] = []
    wrong_gaps: list[float] = []
    for idx, samples in logs.items():
        values = [v for v, _ in samples]
        per_level.setdefault(level_of[idx], []).append(statistics.fmean(values))
        within.append(statistics.pvariance(values))
        right = [v for v, ok in samples if ok]
        wrong = [v for v, ok in samples if not ok]
        if right and wrong:
            wrong_gaps.append(statistics.fmean(wrong) - statistics.fmean(right))
    length_levels = sorted(per_level)
    _, slope = _weighted_line(
        [float(lv) for lv in length_levels],
        [statistics.fmean(per_level[lv]) for lv in length_levels],
        [len(per_level[lv]) for lv in length_levels],
    )
    within_var = statistics.fmean(within)
    between_var = statistics.fmean(
        statistics.pvariance(per_level[lv]) for lv in length_levels if len(per_level[lv]) > 1
    )
    per_problem = max(1.0, statistics.fmean(len(s) for s in logs.values()))
    return Calibration(
        observed_level_accuracy=observed,
        level_accuracy=smoothed,
        spread_logit=spread,
        median_output_tokens=median_output_tokens,
        mean_level=statistics.fmean(level_of.values()),
        length_level_slope=slope,
        length_spread_problem=math.sqrt(max(0.0, between_var - within_var / per_problem)),
        length_spread_sample=math.sqrt(within_var),
        wrong_length_log_ratio=statistics.fmean(wrong_gaps) if wrong_gaps else 0.0,
    )


def _read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def load_calibration(data_dir: Path) -> Calibration:
    """Read the three calibration files from ``data_dir`` and fit."""
    try:
        problems = _read_csv(data_dir / PROBLEMS_FILE)
        samples = _read_csv(data_dir / SAMPLES_FILE)
        lengths = _read_csv(data_dir / LENGTHS_FILE)
        median = next(
            float(r["p50"])
            for r in lengths
            if r["field"] == "output_tokens"
            and r["window_start_s"] == "0"
            and r["window_end_s"] == "86400"
        )
        return compute_calibration(problems, samples, median)
    except (OSError, KeyError, ValueError, StopIteration) as exc:
        raise CalibrationDataError(
            f"cannot read the calibration data under {data_dir} (set PONDER_DATA_DIR): {exc!r}"
        ) from exc


@dataclass(frozen=True)
class ConfidenceCalibration:
    """Empirical answer log-confidences of real reasoning traces, right and wrong."""

    right_log_confidence: tuple[float, ...]
    wrong_log_confidence: tuple[float, ...]

    def draw(self, correct: bool, rng: random.Random) -> float:
        """One log-confidence for a right (``correct``) or wrong sample."""
        pool = self.right_log_confidence if correct else self.wrong_log_confidence
        return rng.choice(pool)


def compute_confidence_calibration(rows: Iterable[Mapping[str, str]]) -> ConfidenceCalibration:
    """The log of each full trace's answer confidence among the choices, by correctness."""
    right: list[float] = []
    wrong: list[float] = []
    for r in rows:
        if r["is_full_trace"] != "True":
            continue
        mass = float(r["choice_probability_mass"])
        confidence = float(r["prediction_probability"]) / mass if mass > 0 else 0.0
        value = math.log(min(1.0, max(MIN_CONFIDENCE, confidence)))
        (right if r["correct"] == "True" else wrong).append(value)
    if not right or not wrong:
        raise ValueError("the confidence data need right and wrong full traces")
    return ConfidenceCalibration(tuple(sorted(right)), tuple(sorted(wrong)))


def load_confidence_calibration(data_dir: Path) -> ConfidenceCalibration:
    """Read the Gemma trajectories from ``data_dir`` and collect the confidences."""
    path = data_dir / CONFIDENCE_FILE
    try:
        return compute_confidence_calibration(_read_csv(path))
    except (OSError, KeyError, ValueError) as exc:
        raise CalibrationDataError(
            f"cannot read the confidence data {path} (set PONDER_DATA_DIR): {exc!r}"
        ) from exc


# --- answers -------------------------------------------------------------------------


def _perturb_integer(n: int) -> list[int]:
    out = [n + 1, n - 1, 2 * n, n + 2, n * 10]
    if n != 0:
        out.append(-n)
    if n % 2 == 0 and n != 0:
        out.append(n // 2)
    return out


def _perturb_number(token: str) -> list[str]:
    if "." in token:
        whole, frac = token.split(".")
        last = str((int(frac[-1]) + 1) % 10)
        return [f"{whole}.{frac[:-1]}{last}", f"{int(whole) + 1}.{frac}", whole]
    return [str(v) for v in _perturb_integer(int(token)) if v >= 0]


def _distractor_candidates(reference: str) -> list[str]:
    ref = reference.strip()
    if re.fullmatch(r"-?\d+", ref):
        return [str(v) for v in _perturb_integer(int(ref))]
    candidates: list[str] = []
    for match in list(_NUMBER.finditer(ref))[:3]:
        for new in _perturb_number(match.group()):
            candidates.append(ref[: match.start()] + new + ref[match.end() :])
    if len(set(candidates) - {ref}) < 3:
        simple = re.fullmatch(r"[\\\w{}^]+", ref) is not None
        candidates += [f"-{ref}" if simple else f"-({ref})", f"2{ref}" if simple else f"2({ref})"]
    return candidates


def compute_distractors(reference: str, key: str) -> tuple[str, ...]:
    """Two or three plausible wrong answers derived from ``reference``, fixed by ``key``."""
    k = 2 if _unit("distractor-count", key) < 0.5 else 3
    unique = dict.fromkeys(c for c in _distractor_candidates(reference) if c != reference)
    ranked = sorted(unique, key=lambda c: _unit("distractor", key, c))
    return tuple(ranked[:k])


def compute_distractor_weights(count: int, key: str) -> tuple[float, ...]:
    """Skewed weights: the first distractor takes about half or more of the wrong mass."""
    u, v = _unit("weight-1", key), _unit("weight-2", key)
    if count <= 1:
        return (1.0,) * count
    if count == 2:
        first = 0.55 + 0.3 * u
        return (first, 1 - first)
    first = 0.45 + 0.3 * u
    second = (1 - first) * (0.6 + 0.2 * v)
    return (first, second, 1 - first - second)


def _scatter_answer(reference: str, rng: random.Random) -> str:
    match = _NUMBER.search(reference)
    if match is None:
        return f"{reference}+{rng.randint(2, 9)}"
    value = float(match.group()) + rng.randint(3, 60)
    text = str(int(value)) if "." not in match.group() else f"{value:.2f}"
    return reference[: match.start()] + text + reference[match.end() :]


# --- an answer forced at the cue ---------------------------------------------------------

_ANSWER_CUE = re.compile(
    r"(?:final answer|the answer is)\s*:?\s*(?:\\boxed\{(?P<written>[^\n]{0,256}))?$",
    re.IGNORECASE,
)
_OPENING_TOKENS = 3
"""`` \\``, ``boxed``, ``{``: the tokens of an answer before what is inside its box."""
_TRACE_WORDS = frozenset(word for sentence in _SENTENCES for word in sentence)
_TRACE_OPENERS = sorted({sentence[0] for sentence in _SENTENCES}, key=len, reverse=True)
_MAX_MARKER_CHARS = 32
_ANSWER_PIECE = re.compile(r"\s*(?:\\[A-Za-z]+|[A-Za-z]+|\d|\S)")
END_OF_SEQUENCE = ""
"""The end-of-sequence token: no text, but a generated token (vLLM counts it)."""
FORCED_ANSWER_EXPONENT = 0.5
"""A forced answer is the one the whole trace would have given with probability
``(trace so far / whole trace) ** FORCED_ANSWER_EXPONENT``, else a wrong one. Simulated:
an assumption, not calibrated from data (an answer forced at half the trace keeps ~71 %
of the whole trace's)."""


REVISION_CUE = "\n\nA previous attempt at this problem:\n"
"""What a revision prompt inserts after the original prompt (the router's ``revise``)."""
REVISION_LOGIT_GAIN = 1.0
"""Added to a problem's logit accuracy when a revision prompt's attempt was wrong.
REVISION_KEEP_RIGHT and this are assumptions that make revision worth testing, not
measurements: no data here has revisions, and intrinsic self-correction often gains
little on real models."""
REVISION_KEEP_RIGHT = 0.9
"""Least probability that a revision keeps a right attempt's answer."""


def forced_answer_tokens(answer: str) -> tuple[str, ...]:
    """The tokens of the answer a reasoning model writes at an answer cue, `` \\boxed{X}.``
    and the end of sequence, split as its tokenizer would (an assumption, no tokenizer
    here): ``\\``, ``boxed``, ``{``, then one token per digit (DeepSeek-R1's and Qwen's
    tokenizers split numbers into digits), per LaTeX command, per run of letters and per
    other character of ``X``, then ``}``, ``.`` and the end of sequence. MATH-500's
    reference answers take 7 to 37 such tokens, 8 at the median, 10 on average (``42``: 8)."""
    return (" \\", "boxed", "{", *_ANSWER_PIECE.findall(answer), "}", ".", END_OF_SEQUENCE)


def _after_written(tokens: tuple[str, ...], written: str) -> tuple[str, ...] | None:
    """The tokens after those that spell ``written``; None when none do (the box holds
    something this answer does not begin with)."""
    spelt = ""
    for index, token in enumerate(tokens):
        if spelt == written:
            return tokens[index:]
        spelt += token
    return None


@dataclass(frozen=True)
class RevisionPrompt:
    """A prompt that asks to revise a previous attempt at ``original``."""

    original: str
    attempt: str


def split_revision_prompt(prompt: str) -> RevisionPrompt | None:
    """The original prompt and the attempt of a revision prompt (``REVISION_CUE``)."""
    head, cue, rest = prompt.partition(REVISION_CUE)
    attempt, _, request = rest.rpartition("\n\n")
    if not cue or "review the attempt above" not in request.lower():
        return None
    return RevisionPrompt(head, attempt)


@dataclass(frozen=True)
class ForcedPrompt:
    """A prompt that continues a partial trace of this simulator with an answer cue."""

    original: str
    """The prompt the trace was written for."""
    trace_tokens: int
    written: str | None = None
    """None: the cue did not open the answer's box; else what is already written inside
    it (a probe's cue ends in ``\\boxed{``, and goes on after a stop string)."""


def split_forced_prompt(prompt: str) -> ForcedPrompt | None:
    """The original prompt and trace length when ``prompt`` ends with an answer cue
    (``Final answer:``, after an optional end-of-thinking marker such as ``</think>``)
    after a partial trace of this simulator's reasoning words, which opens a sentence of
    it; else None. The cue may open the answer's box and write some of it (``Final answer:
    \\boxed{\\frac{1}``), as long as the box is still open. The trace is the longest such run
    (a simulator's heuristic)."""
    cue = _ANSWER_CUE.search(prompt)
    if cue is None:
        return None
    written = cue.group("written")
    if written is not None and written.count("}") >= written.count("{") + 1:
        return None  # the box is closed: an answer, not a cue
    head = prompt[: cue.start()].rstrip()
    while head.endswith(">") and 0 <= len(head) - head.rfind("<") <= _MAX_MARKER_CHARS:
        head = head[: head.rfind("<")].rstrip()
    found: ForcedPrompt | None = None
    for count, match in enumerate(reversed(list(re.finditer(r"\S+", head))), start=1):
        word = match.group()
        if word in _TRACE_OPENERS:
            found = ForcedPrompt(head[: match.start()], count, written)
        elif (glued := next((w for w in _TRACE_OPENERS if word.endswith(w)), None)) is not None:
            # The trace's first word follows the prompt without a space ("<think>\nLet").
            return ForcedPrompt(head[: match.end() - len(glued)], count, written)
        if word not in _TRACE_WORDS:
            break
    return found


# --- the model -----------------------------------------------------------------------


@dataclass(frozen=True)
class SimSettings:
    """Knobs of one simulated model (Triton model-config parameters)."""

    length_scale: float = 1 / 16
    """Reasoning length relative to DeepSeek-R1's median output length."""
    skill_logit_offset: float = 0.0
    """Added to every problem's logit accuracy: below 0 a weaker model, above 0 stronger."""
    spread_logit: float | None = None
    """Per-problem spread of logit accuracy; None uses the calibrated one."""
    reasoning_mode: bool = False
    """Lengths from DeepSeek-R1's distribution and answers that converge over the trace
    (``ReasoningCalibration``; a simulation)."""


@dataclass(frozen=True)
class ProblemProfile:
    """Everything fixed about one problem (or one unknown prompt) for one model."""

    key: str
    problem_id: str | None
    level: int
    reference: str
    accuracy: float
    distractors: tuple[str, ...]
    distractor_weights: tuple[float, ...]
    median_reasoning_tokens: float
    sample_length_spread: float
    wrong_length_log_ratio: float


@dataclass(frozen=True)
class SampleDraw:
    answer: str
    correct: bool
    reasoning_tokens: int
    settle_fraction: float = 0.0
    """Reasoning mode: the share of the trace after which it answers ``answer``."""


def _wrong_answer(profile: ProblemProfile, rng: random.Random) -> str:
    if rng.random() < SCATTER_SHARE or not profile.distractors:
        return _scatter_answer(profile.reference, rng)
    return rng.choices(profile.distractors, weights=profile.distractor_weights)[0]


def draw_sample(profile: ProblemProfile, rng: random.Random) -> SampleDraw:
    """One sample's answer and reasoning length."""
    correct = rng.random() < profile.accuracy
    answer = profile.reference if correct else _wrong_answer(profile, rng)
    log_factor = rng.gauss(0.0, profile.sample_length_spread)
    if not correct:
        log_factor += profile.wrong_length_log_ratio
    tokens = round(profile.median_reasoning_tokens * math.exp(log_factor))
    return SampleDraw(answer, correct, max(MIN_REASONING_TOKENS, tokens))


@dataclass(frozen=True)
class SamplingParams:
    """The vLLM sampling parameters the simulator honours."""

    max_tokens: int = VLLM_DEFAULT_MAX_TOKENS
    min_tokens: int = 0
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] = ()
    include_stop_str_in_output: bool = False
    ignore_eos: bool = False
    token_latency_ms: float | None = None
    """``ponder_token_latency_ms``: simulator-only override of the per-token latency."""


def parse_sampling_parameters(
    raw: str | Mapping[str, Any] | None, ignore: Iterable[str] = ()
) -> SamplingParams:
    """Parse the ``sampling_parameters`` JSON as vLLM would, rejecting unknown keys."""
    if raw is None or raw == "":
        return SamplingParams()
    try:
        params = json.loads(raw) if isinstance(raw, str) else dict(raw)
    except json.JSONDecodeError as exc:
        raise SamplingParameterError(f"sampling_parameters is not valid JSON: {exc}") from exc
    if not isinstance(params, dict):
        raise SamplingParameterError("sampling_parameters must be a JSON object")
    for key in ignore:
        params.pop(key, None)
    unknown = sorted(set(params) - _VLLM_KEYS - _SIM_KEYS)
    if unknown:
        raise SamplingParameterError(f"unexpected sampling parameter(s): {', '.join(unknown)}")
    try:
        max_tokens_raw = params.get("max_tokens", VLLM_DEFAULT_MAX_TOKENS)
        max_tokens = UNLIMITED_MAX_TOKENS if max_tokens_raw is None else int(max_tokens_raw)
        stop_raw = params.get("stop") or ()
        stop = (stop_raw,) if isinstance(stop_raw, str) else tuple(str(s) for s in stop_raw)
        latency = params.get("ponder_token_latency_ms")
        seed = params.get("seed")
        result = SamplingParams(
            max_tokens=max_tokens,
            min_tokens=int(params.get("min_tokens") or 0),
            temperature=float(params.get("temperature", 1.0)),
            top_p=float(params.get("top_p", 1.0)),
            seed=None if seed is None else int(seed),
            stop=tuple(s for s in stop if s),
            include_stop_str_in_output=bool(params.get("include_stop_str_in_output", False)),
            ignore_eos=bool(params.get("ignore_eos", False)),
            token_latency_ms=None if latency is None else float(latency),
        )
    except (TypeError, ValueError) as exc:
        raise SamplingParameterError(f"invalid sampling parameter: {exc}") from exc
    if result.max_tokens < 1:
        raise SamplingParameterError(f"max_tokens must be at least 1, got {result.max_tokens}.")
    if result.temperature < 0:
        raise SamplingParameterError(f"temperature must be non-negative, got {result.temperature}.")
    if not 0 < result.top_p <= 1:
        raise SamplingParameterError(f"top_p must be in (0, 1], got {result.top_p}.")
    if result.token_latency_ms is not None and result.token_latency_ms < 0:
        raise SamplingParameterError("ponder_token_latency_ms must be non-negative.")
    return result


@dataclass(frozen=True)
class Completion:
    """One generated sample: its tokens (text pieces) and what they amount to."""

    tokens: tuple[str, ...]
    finish_reason: str
    """``"stop"`` (the model ended, or a stop string) or ``"length"`` (``max_tokens``)."""
    answer: str | None
    """The ``\\boxed{}`` answer in the text; None when the sample was cut off before it."""
    correct: bool | None
    problem_id: str | None
    level: int
    logprob_per_token: float = REASONING_LOGPROB_PER_TOKEN
    """The simulated mean log-probability of this sample's tokens (see the module)."""

    @property
    def text(self) -> str:
        return "".join(self.tokens)

    def cumulative_logprob(self, tokens_sent: int) -> float:
        """The simulated ``cumulative_logprob`` after the first ``tokens_sent`` tokens."""
        return self.logprob_per_token * tokens_sent


def _reasoning_tokens(rng: random.Random, count: int) -> list[str]:
    words: list[str] = []
    while len(words) < count:
        words.extend(w + " " for w in rng.choice(_SENTENCES))
    return words[:count]


def _apply_stop(tokens: list[str], stop: Sequence[str], include: bool) -> tuple[list[str], bool]:
    """The tokens up to the one that completes the first stop string, as vLLM does: that
    token is generated (and counted), the text ends before the stop string (after it with
    ``include``)."""
    text = "".join(tokens)
    hits = [(i + len(s), i, s) for s in stop if (i := text.find(s)) >= 0]
    if not hits:
        return tokens, False
    end, index, _ = min(hits)
    cut = end if include else index
    kept: list[str] = []
    used = 0
    for token in tokens:
        kept.append(token[: max(cut - used, 0)])
        used += len(token)
        if used >= end:
            break
    return kept, True


def render_completion(
    draw: SampleDraw, profile: ProblemProfile, params: SamplingParams, rng: random.Random
) -> Completion:
    """The sample as tokens: reasoning words, then ``The answer is \\boxed{X}.``."""
    reasoning = max(draw.reasoning_tokens, params.min_tokens - ANSWER_TOKENS)
    boxed = f"\\boxed{{{draw.answer}}}."
    tokens = [*_reasoning_tokens(rng, reasoning), "\nThe ", "answer ", "is ", boxed]
    if params.ignore_eos and len(tokens) < params.max_tokens:
        tokens += [" " + w.strip() for w in _reasoning_tokens(rng, params.max_tokens - len(tokens))]
    tokens, stopped = _apply_stop(tokens, params.stop, params.include_stop_str_in_output)
    finish = "stop"
    if len(tokens) > params.max_tokens:
        tokens, finish = tokens[: params.max_tokens], "length"
    elif params.ignore_eos and not stopped:
        finish = "length"
    answered = f"\\boxed{{{draw.answer}}}" in "".join(tokens)
    return Completion(
        tokens=tuple(tokens),
        finish_reason=finish,
        answer=draw.answer if answered else None,
        correct=draw.correct if answered else None,
        problem_id=profile.problem_id,
        level=profile.level,
    )


class SimModel:
    """A simulated model: catalog + calibration + settings; every method is pure."""

    def __init__(
        self,
        catalog: Catalog,
        calibration: Calibration,
        settings: SimSettings | None = None,
        confidence: ConfidenceCalibration | None = None,
        reasoning: ReasoningCalibration | None = None,
    ) -> None:
        self.reasoning = reasoning
        """None: lengths and forced answers as without reasoning mode."""
        self.catalog = catalog
        self.calibration = calibration
        self.confidence = confidence
        """None: every token at ``REASONING_LOGPROB_PER_TOKEN``, no confidence signal."""
        self.settings = settings or SimSettings()
        self.spread_logit = (
            calibration.spread_logit
            if self.settings.spread_logit is None
            else self.settings.spread_logit
        )
        self._centers = {
            level: solve_level_center(calibration.level_accuracy[level], self.spread_logit)
            + self.settings.skill_logit_offset
            for level in LEVELS
        }

    @classmethod
    def load(
        cls, data_dir: Path, settings: SimSettings | None = None
    ) -> SimModel:
        return cls(
            load_catalog(data_dir),
            load_calibration(data_dir),
            settings,
            load_confidence_calibration(data_dir),
            load_reasoning_calibration(data_dir) if settings and settings.reasoning_mode else None,
        )

    def expected_level_accuracy(self, level: int) -> float:
        """Mean accuracy over a level's problems (the calibrated mean, plus the skill offset)."""
        return _mean_accuracy(self._centers[level], self.spread_logit)

    def problem_accuracy(self, problem: Problem) -> float:
        z = self.catalog.hardness_z.get(problem.problem_id, 0.0)
        return _sigmoid(self._centers[problem.level] - self.spread_logit * z)

    def _profile(
        self,
        key: str,
        problem_id: str | None,
        level: int,
        reference: str,
        accuracy: float,
        hardness_z: float,
    ) -> ProblemProfile:
        cal = self.calibration
        rho = DIFFICULTY_LENGTH_CORRELATION
        length_z = rho * hardness_z + math.sqrt(1 - rho * rho) * _NORMAL.inv_cdf(
            _unit("length", key)
        )
        median = (
            cal.median_output_tokens
            * self.settings.length_scale
            * math.exp(cal.length_level_slope * (level - cal.mean_level))
            * math.exp(cal.length_spread_problem * length_z)
        )
        distractors = compute_distractors(reference, key)
        return ProblemProfile(
            key=key,
            problem_id=problem_id,
            level=level,
            reference=reference,
            accuracy=accuracy,
            distractors=distractors,
            distractor_weights=compute_distractor_weights(len(distractors), key),
            median_reasoning_tokens=median,
            sample_length_spread=cal.length_spread_sample,
            wrong_length_log_ratio=cal.wrong_length_log_ratio,
        )

    def profile_problem(self, problem: Problem) -> ProblemProfile:
        z = self.catalog.hardness_z.get(problem.problem_id, 0.0)
        return self._profile(
            problem.problem_id,
            problem.problem_id,
            problem.level,
            problem.answer,
            self.problem_accuracy(problem),
            z,
        )

    def profile_prompt(self, prompt: str) -> ProblemProfile:
        """The known problem in the prompt, or a generic mid-difficulty one."""
        problem = self.catalog.find(prompt)
        if problem is not None:
            return self.profile_problem(problem)
        key = "prompt:" + _digest(normalize_text(prompt)).hex()[:16]
        reference = str(100 + int(_unit("reference", key) * 900))
        accuracy = self.expected_level_accuracy(UNKNOWN_LEVEL)
        return self._profile(key, None, UNKNOWN_LEVEL, reference, accuracy, 0.0)

    def complete(
        self, prompt: str, params: SamplingParams, entropy: int | None = None
    ) -> Completion:
        """One sample for ``prompt``: fixed by (prompt, seed); greedy when temperature is 0.

        ``entropy`` seeds an unseeded request; None draws it from the system. A prompt that
        ends with an answer cue after a partial trace (``split_forced_prompt``) gets a
        forced answer (``forced_answer``).
        """
        if params.temperature == 0:
            seed: object = "greedy"
        elif params.seed is not None:
            seed = params.seed
        else:
            seed = entropy if entropy is not None else random.SystemRandom().getrandbits(64)
        forced = split_forced_prompt(prompt)
        if forced is not None:
            return self.forced_answer(forced, prompt, seed, params)
        revision = split_revision_prompt(prompt)
        profile = self.profile_prompt(prompt if revision is None else revision.original)
        if revision is not None:
            revised = _sigmoid(_logit(profile.accuracy) + REVISION_LOGIT_GAIN)
            if f"\\boxed{{{profile.reference}}}" in revision.attempt:
                revised = max(revised, REVISION_KEEP_RIGHT)
            profile = dataclasses.replace(profile, accuracy=revised)
        rng = _rng("sample", normalize_text(prompt), seed)
        draw = self.draw(profile, rng)
        completion = render_completion(draw, profile, params, rng)
        if self.confidence is None:
            return completion
        confidence_rng = _rng("confidence", normalize_text(prompt), seed)
        log_confidence = self.confidence.draw(draw.correct, confidence_rng)
        full_tokens = draw.reasoning_tokens + ANSWER_TOKENS
        per_token = REASONING_LOGPROB_PER_TOKEN + log_confidence / full_tokens
        return dataclasses.replace(completion, logprob_per_token=per_token)

    def forced_answer(self, forced: ForcedPrompt, prompt: str, seed: object,
                      params: SamplingParams | None = None) -> Completion:  # fmt: skip
        """The answer at the cue: the whole trace's (the sample this seed draws for the
        original prompt) with a probability that grows with how far the trace had got
        (``FORCED_ANSWER_EXPONENT``), else a wrong one; in reasoning mode the answer the
        trace had converged to at that point (``converged_answer``). A simulation. After a
        cue that opened the box, only what is not yet written of it; stop strings as vLLM
        (``_apply_stop``): a stop inside the answer (the first ``}`` of ``\\frac{1}{2}``)
        leaves it unanswered, one at its closing brace answers."""
        params = params or SamplingParams()
        profile = self.profile_prompt(forced.original)
        draw = self.draw(profile, _rng("sample", normalize_text(forced.original), seed))
        fraction = min(1.0, forced.trace_tokens / draw.reasoning_tokens)
        cued = prompt.removesuffix(forced.written or "")  # one answer however much is written
        rng = _rng("forced", normalize_text(cued), seed)
        if self.reasoning is not None:
            tenth = _rng("unsettled", normalize_text(forced.original), seed,
                         int(fraction * TENTHS))  # fmt: skip
            answer = converged_answer(draw, profile, fraction, tenth)
            correct = answer == profile.reference
        elif rng.random() < fraction**FORCED_ANSWER_EXPONENT:
            answer, correct = draw.answer, draw.correct
        else:
            answer, correct = _wrong_answer(profile, rng), False
        if answer == profile.reference:
            correct = True
        full = forced_answer_tokens(answer)
        rest = full if forced.written is None else _after_written(
            full[_OPENING_TOKENS:], forced.written)  # fmt: skip
        tail = full[-3:] if rest is None else rest
        closing = len(tail) - 3  # "}" is the third token from the end
        kept, _ = _apply_stop(list(tail), params.stop, params.include_stop_str_in_output)
        tokens, finish = tuple(kept), "stop"
        if len(tokens) > params.max_tokens:  # cut off
            tokens, finish = tokens[: params.max_tokens], "length"
        if rest is None or len(tokens) <= closing:  # an answer only once its own box closed
            return Completion(tokens=tokens, finish_reason=finish, answer=None, correct=None,
                              problem_id=profile.problem_id, level=profile.level)  # fmt: skip
        return Completion(
            tokens=tokens, finish_reason=finish, answer=answer,
            correct=correct, problem_id=profile.problem_id, level=profile.level,
        )

    def draw(self, profile: ProblemProfile, rng: random.Random) -> SampleDraw:
        """One sample's answer and length (``draw_sample``); in reasoning mode its length
        from DeepSeek-R1's distribution and the point where it settles."""
        draw = draw_sample(profile, rng)
        if self.reasoning is None:
            return draw
        length = self.reasoning.length_tokens(rng.random()) * self.settings.length_scale
        return dataclasses.replace(
            draw, reasoning_tokens=max(MIN_REASONING_TOKENS, round(length)),
            settle_fraction=self.reasoning.settle_fraction(rng.random()),
        )  # fmt: skip


# --- reasoning mode (a simulation, calibrated from real trajectories) ------------------

LENGTH_PMF_FILE = "traces/servegen_deepseek_r1_length_pmf_allday.csv"
TENTHS = 10


@dataclass(frozen=True)
class ReasoningCalibration:
    """How a reasoning trace converges, and how long it is (see the module docstring)."""

    settled_share: tuple[float, ...]
    """At each tenth 0..10 of the trace, the share of samples already on their final
    answer (the data's share, made non-decreasing; 1.0 at the end)."""
    observed_share: tuple[float, ...]
    """The data's share itself (an earlier answer can equal the final one by chance)."""
    length_cdf: tuple[tuple[float, float], ...]
    """``(tokens, cumulative probability)`` at the bins' upper edges, from (0, 0)."""

    def settle_fraction(self, u: float) -> float:
        """The point (share of the trace) where a sample at quantile ``u`` settles: the
        inverse of the piecewise-linear settled share."""
        share = self.settled_share
        if u <= share[0]:
            return 0.0
        for i in range(1, len(share)):
            if u <= share[i]:
                step = share[i] - share[i - 1]
                within = (u - share[i - 1]) / step if step > 0 else 1.0
                return (i - 1 + within) / TENTHS
        return 1.0

    def length_tokens(self, u: float) -> float:
        """Output tokens at quantile ``u`` of DeepSeek-R1's lengths (linear in a bin)."""
        points = self.length_cdf
        for (t0, c0), (t1, c1) in itertools.pairwise(points):
            if u <= c1:
                return t0 + (t1 - t0) * ((u - c0) / (c1 - c0) if c1 > c0 else 1.0)
        return points[-1][0]


def converged_answer(draw: SampleDraw, profile: ProblemProfile, fraction: float,
                     rng: random.Random) -> str:  # fmt: skip
    """The answer at ``fraction`` of the trace: the final one once settled, else another
    of the problem's answers (``rng`` is fixed per tenth of the trace)."""
    if fraction >= 1.0 or fraction >= draw.settle_fraction:
        return draw.answer
    for _ in range(8):
        answer = profile.reference if rng.random() < profile.accuracy \
            else _wrong_answer(profile, rng)  # fmt: skip
        if answer != draw.answer:
            return answer
    return _scatter_answer(draw.answer, rng)


def compute_reasoning_calibration(trajectory_rows: Iterable[Mapping[str, str]],
                                  length_rows: Iterable[Mapping[str, str]],
                                  ) -> ReasoningCalibration:  # fmt: skip
    """The settled share per tenth from trajectory rows (``decile``, ``prediction``,
    ``final_prediction``) and the length CDF from the PMF rows of ``output_tokens``."""
    same: dict[int, list[bool]] = {}
    for r in trajectory_rows:
        same.setdefault(int(r["decile"]) // 10, []).append(
            r["prediction"] == r["final_prediction"])
    if sorted(same) != list(range(TENTHS + 1)):
        raise ValueError("the trajectories need a checkpoint at every tenth")
    observed = tuple(statistics.fmean(same[i]) for i in range(TENTHS + 1))
    settled: list[float] = []
    for value in observed[:-1]:
        settled.append(max(value, settled[-1]) if settled else value)
    cdf = [(0.0, 0.0)]
    for r in length_rows:
        if r["field"] == "output_tokens":
            cdf.append((float(r["bin_hi"]), cdf[-1][1] + float(r["prob"])))
    if len(cdf) < 2 or cdf[-1][1] <= 0:
        raise ValueError("no output_tokens distribution")
    total = cdf[-1][1]
    return ReasoningCalibration(
        settled_share=(*settled, 1.0), observed_share=observed,
        length_cdf=tuple((t, c / total) for t, c in cdf),
    )  # fmt: skip


def load_reasoning_calibration(data_dir: Path) -> ReasoningCalibration:
    """Read the Gemma trajectories and DeepSeek-R1's lengths from ``data_dir``."""
    try:
        return compute_reasoning_calibration(_read_csv(data_dir / CONFIDENCE_FILE),
                                             _read_csv(data_dir / LENGTH_PMF_FILE))  # fmt: skip
    except (OSError, KeyError, ValueError) as exc:
        raise CalibrationDataError(
            f"cannot read the reasoning-mode data under {data_dir} (set PONDER_DATA_DIR): "
            f"{exc!r}") from exc

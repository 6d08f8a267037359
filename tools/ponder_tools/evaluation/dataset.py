"""Evaluation data: problems with many sampled completions each, loaded from JSONL.

Role: the input side of ``replay`` and ``calibrate``. One JSON object per line::

    {"id": str, "question": str, "reference": str, "samples": [str, ...],
     "scores": [float, ...]?, "tokens": [int, ...]?, "confidences": [float, ...]?,
     "answers": [str | null, ...]?, "level": int?,
     "checkpoints": [[[int, str | null], ...], ...]?}

Each sample is a completion (or any text the router's extractor reads, such as
``\\boxed{42}``); the router's own extractor (a named one, or ``regex`` with a ``pattern``,
as a service's ``spec.answers`` says) pulls the final answer out and ``answers.answer_key``
keys it once, here, so replays compare integers. ``answers`` holds answers already
extracted (``null`` abstains); with it, ``samples`` may be left out. ``confidences`` is the
model's own confidence in each sample, a probability in [0, 1] (for a live service, the
geometric-mean token probability the router reads from ``cumulative_logprob``).
``checkpoints`` is each sample's trajectory, when the data have one: ``[prefix_tokens,
answer]`` pairs in trace order, the answer the model gives when stopped after that many
tokens (pre-extracted, ``null`` for none); the replay of budget forcing reads the answer
at a cap from it.
A sample with no extractable answer is kept as an abstention (it costs budget and casts
no vote, as in the router) and reported. ``load_dataset`` reports every other problem
with its line number: malformed JSON, missing or mistyped fields, empty sample lists,
``scores``/``tokens`` of the wrong length, repeated ids. Lenient loading skips those
problems and counts them; ``strict=True`` raises ``DatasetError`` instead. Nothing is
dropped without a report.

Sources under the shared data folder (``ponder_tools.data.shared_data_dir``), read in place:
``convert_qwen25math`` (Qwen2.5-Math, 100 MATH problems x 8 samples, with reward-model
scores) and ``generate`` with a generator registered as an entry point (``standin-math500``:
the stand-in LLM, a simulator, over MATH-500, from the ``ponder-localstack`` package).
Generated files go where the caller says (a temporary or output folder), never into
the repository.
"""

from __future__ import annotations

import csv
import itertools
import json
import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Protocol

from pydantic import ValidationError

from ponder_router.answers import AnswerFormat, EqualityMode, Extractor, answer_key
from ponder_router.errors import PolicyError
from ponder_tools.data import shared_data_dir

GENERATOR_GROUP = "ponder_tools.generators"
"""Entry-point group of sample generators (``SampleGenerator``) for ``--builtin``."""
QWEN_PROBLEMS = "samples/qwen25math_math100_x8_problems.csv"
QWEN_SAMPLES = "samples/qwen25math_math100_x8_samples.csv"
MATH_5000 = "math/math_test5000.jsonl"
CHARS_PER_TOKEN = 4.0
"""Qwen's files give response lengths in characters; tokens are estimated as chars / 4."""


class DatasetError(PolicyError):
    """Evaluation data is unreadable or (in strict mode) has a bad line; the message says
    which file and line."""


class SampleGenerator(Protocol):
    """Yields evaluation rows (the JSONL shape above) sampled from a model over the shared
    data in ``root``; deterministic under ``seed``. Raises ``ValueError`` on unreadable data."""

    def __call__(
        self,
        root: Path,
        *,
        samples_per_problem: int,
        seed: int,
        skill_logit_offset: float,
        problem_limit: int | None,
    ) -> Iterator[dict[str, Any]]: ...


@dataclass(frozen=True)
class EvalProblem:
    """One problem, its samples keyed once, and what each sample cost."""

    problem_id: str
    question: str
    reference: str
    reference_key: str
    answer_keys: tuple[str | None, ...]
    """Each sample's answer key (``answers.answer_key``); ``None`` abstains."""
    tokens: tuple[int, ...] | None = None
    scores: tuple[float, ...] | None = None
    confidences: tuple[float, ...] | None = None
    """Each sample's confidence, a probability in [0, 1] (``None``: the data has none)."""
    level: int | None = None
    line: int = 0
    checkpoints: tuple[tuple[tuple[int, str | None], ...], ...] | None = None
    """Each sample's trajectory: ``(prefix_tokens, answer key)`` in trace order."""

    @property
    def sample_count(self) -> int:
        return len(self.answer_keys)

    def answer_at(self, sample: int, cap_tokens: float) -> str | None:
        """The answer key ``sample`` gives when forced at ``cap_tokens``: its last checkpoint
        within the cap (the first when the cap is below all); ``ValueError`` without one."""
        if self.checkpoints is None:
            raise ValueError(f"problem {self.problem_id} has no trajectories")
        points = self.checkpoints[sample]
        reached = [key for tokens, key in points if tokens <= cap_tokens]
        return reached[-1] if reached else points[0][1]

    @property
    def pass_at_1(self) -> float:
        """Share of samples whose answer equals the reference (abstentions are wrong)."""
        right = sum(key == self.reference_key for key in self.answer_keys)
        return right / len(self.answer_keys)


@dataclass(frozen=True)
class LoadIssue:
    """Something wrong with one line: ``skipped`` problems are not in the dataset."""

    line: int
    message: str
    skipped: bool
    problem_id: str | None = None

    @property
    def where(self) -> str:
        return f"line {self.line}" + (f" ({self.problem_id})" if self.problem_id else "")

    def __str__(self) -> str:
        return f"{self.where}: {self.message}" + (" [problem skipped]" if self.skipped else "")


@dataclass(frozen=True)
class Dataset:
    """Problems in file order, with the issues met while loading them."""

    name: str
    problems: tuple[EvalProblem, ...]
    issues: tuple[LoadIssue, ...] = ()
    source: str = ""

    @property
    def skipped(self) -> int:
        return sum(issue.skipped for issue in self.issues)

    @property
    def abstentions(self) -> int:
        return sum(key is None for p in self.problems for key in p.answer_keys)

    @property
    def has_tokens(self) -> bool:
        return bool(self.problems) and all(p.tokens is not None for p in self.problems)

    @property
    def has_scores(self) -> bool:
        return bool(self.problems) and all(p.scores is not None for p in self.problems)

    @property
    def has_confidences(self) -> bool:
        return bool(self.problems) and all(p.confidences is not None for p in self.problems)

    def subset(self, ids: Iterable[str], name: str | None = None) -> Dataset:
        """The problems whose ids are in ``ids``, in file order."""
        wanted = set(ids)
        kept = tuple(p for p in self.problems if p.problem_id in wanted)
        return Dataset(name or self.name, kept, self.issues, self.source)

    def summary(self) -> str:
        samples = sum(p.sample_count for p in self.problems)
        return (f"{self.name}: {len(self.problems)} problems, {samples} samples, "
                f"{self.abstentions} abstentions, {self.skipped} problems skipped")  # fmt: skip


class _Skip(Exception):
    """A line that cannot become a problem; ``parse`` records it and moves on."""

    def __init__(self, message: str, problem_id: str | None = None) -> None:
        super().__init__(message)
        self.message, self.problem_id = message, problem_id


@dataclass
class _Parser:
    extractor: str
    mode: EqualityMode
    extract: Extractor
    issues: list[LoadIssue] = field(default_factory=list)
    seen: set[str] = field(default_factory=set)

    def parse(self, line_no: int, text: str) -> EvalProblem | None:
        try:
            return self._problem(line_no, text)
        except _Skip as skip:
            self.issues.append(LoadIssue(line_no, skip.message, True, skip.problem_id))
            return None

    def _problem(self, line_no: int, text: str) -> EvalProblem:
        try:
            row = json.loads(text)
        except json.JSONDecodeError as exc:
            raise _Skip(f"malformed JSON: {exc.msg} at column {exc.colno}") from exc
        if not isinstance(row, dict):
            raise _Skip("expected a JSON object")
        pid = row.get("id") if isinstance(row.get("id"), str) else None
        listed = "answers" if "answers" in row else "samples"
        missing = [k for k in ("id", "question", "reference", listed) if k not in row]
        if missing:
            raise _Skip(f"missing field(s): {', '.join(missing)}", pid)
        for name in ("id", "question", "reference"):
            if not isinstance(row[name], str) or not row[name].strip():
                raise _Skip(f"field {name!r} must be a non-empty string", pid)
        samples = row.get("samples")
        if samples is not None and (not isinstance(samples, list)
                                    or not all(isinstance(s, str) for s in samples)):
            raise _Skip("field 'samples' must be a list of strings", pid)
        given = row.get("answers")
        if given is not None and (not isinstance(given, list) or not all(
                a is None or isinstance(a, str) for a in given)):
            raise _Skip("field 'answers' must be a list of strings or nulls", pid)
        if given is not None and samples is not None and len(given) != len(samples):
            raise _Skip(f"field 'answers' has {len(given)} entries for {len(samples)} "
                        "samples", pid)
        texts: list[str | None] = list(given) if given is not None else list(samples or [])
        if not texts:
            raise _Skip("empty sample list", pid)
        if pid in self.seen:
            raise _Skip("repeated id", pid)
        tokens = _numbers(row, "tokens", len(texts), pid, integral=True)
        scores = _numbers(row, "scores", len(texts), pid, integral=False)
        confidences = _numbers(row, "confidences", len(texts), pid, integral=False)
        if confidences is not None and not all(0.0 <= c <= 1.0 for c in confidences):
            raise _Skip("field 'confidences' must hold probabilities in [0, 1]", pid)
        level = row.get("level")
        if level is not None and (isinstance(level, bool) or not isinstance(level, int)):
            raise _Skip("field 'level' must be an integer", pid)
        keys: list[str | None] = []
        for index, sample in enumerate(texts):
            answer = sample if given is not None else self.extract(sample or "")
            if answer is None or not answer.strip():
                if given is None:
                    message = (f"sample {index}: no answer found by extractor "
                               f"{self.extractor!r} (kept as an abstention)")  # fmt: skip
                    self.issues.append(LoadIssue(line_no, message, False, pid))
                keys.append(None)
            else:
                keys.append(answer_key(answer, self.mode))
        checkpoints = _checkpoints(row, len(texts), pid, self.mode)
        problem_id: str = row["id"]
        self.seen.add(problem_id)
        return EvalProblem(
            problem_id=problem_id, question=row["question"], reference=row["reference"],
            reference_key=answer_key(row["reference"], self.mode), answer_keys=tuple(keys),
            tokens=None if tokens is None else tuple(int(t) for t in tokens),
            scores=scores, confidences=confidences, level=level, line=line_no,
            checkpoints=checkpoints,
        )  # fmt: skip


def _numbers(row: Mapping[str, Any], name: str, count: int, pid: str | None, *,
             integral: bool) -> tuple[float, ...] | None:  # fmt: skip
    """The optional list ``name`` (None when absent); ``_Skip`` when invalid."""
    values = row.get(name)
    if values is None:
        return None
    kind = "non-negative integers" if integral else "finite numbers"
    ok = isinstance(values, list) and all(
        not isinstance(v, bool) and isinstance(v, int | float) and math.isfinite(v)
        and (not integral or (v == int(v) and v >= 0)) for v in values
    )  # fmt: skip
    if not ok:
        raise _Skip(f"field {name!r} must be a list of {kind}", pid)
    if len(values) != count:
        raise _Skip(f"field {name!r} has {len(values)} entries for {count} samples", pid)
    return tuple(float(v) for v in values)


Trajectory = tuple[tuple[int, str | None], ...]
"""One sample's checkpoints: ``(prefix_tokens, answer key)`` in trace order."""


def _checkpoints(row: Mapping[str, Any], count: int, pid: str | None,
                 mode: EqualityMode) -> tuple[Trajectory, ...] | None:  # fmt: skip
    """The optional ``checkpoints`` field, answers keyed (None when absent); ``_Skip`` when
    invalid: per sample a non-empty list of ``[tokens, answer]`` in trace order."""
    values = row.get("checkpoints")
    if values is None:
        return None
    if not isinstance(values, list) or len(values) != count:
        raise _Skip(f"field 'checkpoints' must hold one list per sample ({count})", pid)
    out = []
    for points in values:
        ok = isinstance(points, list) and bool(points) and all(
            isinstance(p, list) and len(p) == 2 and isinstance(p[0], int)
            and not isinstance(p[0], bool) and p[0] >= 0 and (p[1] is None or isinstance(p[1], str))
            for p in points)  # fmt: skip
        if not ok or any(a[0] > b[0] for a, b in itertools.pairwise(points)):
            raise _Skip("field 'checkpoints' must list [tokens, answer] pairs in trace order", pid)
        out.append(tuple((int(t), None if a is None or not a.strip() else answer_key(a, mode))
                         for t, a in points))  # fmt: skip
    return tuple(out)


def parse_lines(
    lines: Iterable[str],
    *,
    name: str = "data",
    source: str = "<lines>",
    extractor: str = "chain",
    mode: EqualityMode = "numeric",
    strict: bool = False,
    pattern: str | None = None,
) -> Dataset:
    """A ``Dataset`` from JSONL ``lines`` (see the module docstring); blank lines hold
    nothing and are passed over. ``strict`` raises on the first issue of any kind.
    ``extractor``, ``pattern`` and ``mode`` are a service's ``spec.answers`` (extractor,
    pattern, equality), refused with ``DatasetError`` where the router would refuse them."""
    try:
        answers = AnswerFormat.model_validate(
            {"extractor": extractor, "pattern": pattern, "equality": mode})
    except ValidationError as exc:
        reasons = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise DatasetError(f"answers: {reasons.replace('Value error, ', '')}") from exc
    parser = _Parser(extractor, mode, answers.extractor_function())
    problems: list[EvalProblem] = []
    for line_no, text in enumerate(lines, start=1):
        if not text.strip():
            continue
        before = len(parser.issues)
        problem = parser.parse(line_no, text)
        if strict and len(parser.issues) > before:
            issue = parser.issues[before]
            raise DatasetError(f"{source}: {issue.where}: {issue.message} (strict mode)")
        if problem is not None:
            problems.append(problem)
    if not problems:
        first = f"; first issue: {parser.issues[0]}" if parser.issues else ""
        raise DatasetError(f"{source}: no usable problems{first}")
    return Dataset(name, tuple(problems), tuple(parser.issues), source)


def load_dataset(
    path: Path,
    *,
    extractor: str = "chain",
    mode: EqualityMode = "numeric",
    strict: bool = False,
    name: str | None = None,
    pattern: str | None = None,
) -> Dataset:
    """Read the JSONL file at ``path`` (see ``parse_lines``)."""
    try:
        with path.open(encoding="utf-8") as lines:
            return parse_lines(lines, name=name or path.stem, source=str(path),
                               extractor=extractor, mode=mode, strict=strict,
                               pattern=pattern)  # fmt: skip
    except OSError as exc:
        raise DatasetError(f"cannot read {path}: {exc}") from exc
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{path} is not UTF-8 text: {exc}") from exc


def write_jsonl(rows: Iterable[Mapping[str, Any]], path: Path) -> Path:
    """Write ``rows`` one JSON object a line; returns ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as out:
        for row in rows:
            out.write(json.dumps(row, ensure_ascii=False) + "\n")
    return path


# -- sources ------------------------------------------------------------------------------


def read_csv(path: Path) -> list[dict[str, str]]:
    """Rows of the CSV file at ``path``, read in place (``DatasetError`` when unreadable)."""
    try:
        with path.open(newline="", encoding="utf-8") as f:
            return list(csv.DictReader(f))
    except OSError as exc:
        raise DatasetError(f"cannot read {path} (set PONDER_DATA_DIR): {exc}") from exc


def convert_qwen25math(root: Path | None = None) -> Iterator[dict[str, Any]]:
    """The Qwen2.5-Math 100x8 samples as JSONL rows.

    Each sample is its parsed answer written as ``\\boxed{pred}`` (the texts were not
    released), scored by its reward-model score, with tokens estimated as
    ``response_chars / 4``; the question text comes from the MATH test set by index.
    """
    root = root or shared_data_dir()
    problems = read_csv(root / QWEN_PROBLEMS)
    by_problem: dict[str, list[dict[str, str]]] = {}
    for sample in read_csv(root / QWEN_SAMPLES):
        by_problem.setdefault(sample["idx"], []).append(sample)
    questions: dict[str, str] = {}
    try:
        with (root / MATH_5000).open(encoding="utf-8") as lines:
            for text in lines:
                if text.strip():
                    row = json.loads(text)
                    questions[str(row["idx"])] = str(row["problem"])
    except (OSError, ValueError, KeyError) as exc:
        raise DatasetError(f"cannot read {root / MATH_5000}: {exc}") from exc
    for problem in problems:
        samples = sorted(by_problem.get(problem["idx"], []), key=lambda s: int(s["sample_idx"]))
        try:
            yield {
                "id": f"math-test-{problem['math_test5000_idx']}",
                "question": questions[problem["math_test5000_idx"]],
                "reference": problem["gt_answer"],
                "samples": [f"\\boxed{{{s['pred_answer']}}}" for s in samples],
                "scores": [float(s["rm_score"]) for s in samples],
                "tokens": [max(1, round(int(s["response_chars"]) / CHARS_PER_TOKEN))
                           for s in samples],
                "level": int(problem["level"]),
            }  # fmt: skip
        except (KeyError, ValueError) as exc:
            raise DatasetError(f"{root / QWEN_PROBLEMS}: problem {problem.get('idx')}: "
                               f"{exc!r}") from exc  # fmt: skip


def load_generator(name: str) -> SampleGenerator:
    """The sample generator registered as ``name`` in the ``ponder_tools.generators``
    entry-point group (``standin-math500`` comes from the ``ponder-localstack`` package).

    The tools never import a generator's package; a missing one is a ``DatasetError`` that
    says what to install, not an import traceback.
    """
    missing = DatasetError(
        f"--builtin {name} needs the stand-in LLM from the ponder-localstack package, which "
        "is not installed here: in a Ponder checkout run `make setup` (or `pip install -e "
        "localstack`); elsewhere pass recorded samples with --data FILE.jsonl"
    )
    found = entry_points(group=GENERATOR_GROUP, name=name)
    if not found:
        raise missing
    try:
        generator: SampleGenerator = next(iter(found)).load()
    except ImportError as exc:  # registered by a stale installation whose package is gone
        raise missing from exc
    return generator


def generate(
    name: str,
    root: Path | None = None,
    *,
    samples_per_problem: int = 40,
    seed: int = 0,
    skill_logit_offset: float = 0.0,
    problem_limit: int | None = None,
) -> Iterator[dict[str, Any]]:
    """Rows from generator ``name`` over the shared data (``root``, default
    ``shared_data_dir()``); a generator's ``ValueError`` (unreadable calibration data)
    becomes a ``DatasetError``."""
    generator = load_generator(name)
    try:
        yield from generator(root or shared_data_dir(), samples_per_problem=samples_per_problem,
                             seed=seed, skill_logit_offset=skill_logit_offset,
                             problem_limit=problem_limit)  # fmt: skip
    except ValueError as exc:
        raise DatasetError(str(exc)) from exc

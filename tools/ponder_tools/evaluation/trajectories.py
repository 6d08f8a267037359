"""Reasoning trajectories: a thinking model's answer, and its confidence, along each trace.

Role: the input for everything that depends on *when* a chain of thought settles: budget
forcing and thinking budgets (the answer at a cap), probe exits (stop once probes agree)
and confidence-based early termination (the running confidence of a trace). One source
today, read in place from the shared data folder (``ponder_tools.data.shared_data_dir``):
the Gemma-4-12B thinking traces on MMLU-Pro and GPQA-Diamond, 10 traces a question, each
probed for its answer letter at 0 %, 10 %, ..., 100 % of its tokens.

Caveat carried with every figure computed from it: the questions were chosen in three equal
cohorts (right at the end, wrong throughout, right at some point but wrong at the end), so
overthinking is over-represented compared with a random sample of questions.

``convert_gemma_thinking`` also writes the traces as ``ponder evaluate`` rows (the answer
and confidence at the end of each trace, pre-extracted, and each trace's checkpoints), so
the vote over 10 traces replays like any other per-sample set, and a sample cut at its
tier's cap votes with its answer there (the replay of budget forcing).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ponder_tools.data import shared_data_dir

from .dataset import DatasetError, read_csv

GEMMA_TRAJECTORIES = "samples/gemma4_12b_thinking_trajectories.csv"
GEMMA_QUESTIONS = "samples/gemma4_12b_thinking_questions.csv"
GEMMA_CAVEAT = ("Gemma-4-12B traces: questions chosen in three equal cohorts (right, wrong, "
                "right then wrong), so overthinking is over-represented")  # fmt: skip


@dataclass(frozen=True)
class Checkpoint:
    """The answer the model gives when stopped at ``prefix_tokens`` of its trace."""

    fraction: float
    """Share of the trace written, 0 to 1."""
    prefix_tokens: int
    answer: str
    confidence: float
    """The answer's probability among the choices (0 to 1)."""
    correct: bool


@dataclass(frozen=True)
class Trace:
    """One sampled chain of thought with its checkpoints in trace order."""

    question_id: str
    dataset: str
    seed: int
    tokens: int
    """Thinking tokens of the whole trace."""
    reference: str
    checkpoints: tuple[Checkpoint, ...]

    @property
    def final(self) -> Checkpoint:
        return self.checkpoints[-1]

    def at_tokens(self, budget_tokens: int) -> Checkpoint:
        """The last checkpoint written within ``budget_tokens`` (the first one when the
        budget is below every checkpoint): the answer forced at that cap."""
        reached = [c for c in self.checkpoints if c.prefix_tokens <= budget_tokens]
        return reached[-1] if reached else self.checkpoints[0]


def load_gemma_traces(root: Path | None = None) -> list[Trace]:
    """Every Gemma-4-12B trace, ordered by question then seed."""
    root = root or shared_data_dir()
    questions = {q["question_id"]: q for q in read_csv(root / GEMMA_QUESTIONS)}
    grouped: dict[tuple[str, int], list[dict[str, str]]] = {}
    for row in read_csv(root / GEMMA_TRAJECTORIES):
        grouped.setdefault((row["question_id"], int(row["run_seed"])), []).append(row)
    traces: list[Trace] = []
    for (qid, seed), rows in sorted(grouped.items()):
        try:
            rows.sort(key=lambda r: int(r["decile"]))
            points = tuple(Checkpoint(
                fraction=int(r["decile"]) / 100, prefix_tokens=int(r["prefix_token_count"]),
                answer=r["prediction"], confidence=_confidence(r),
                correct=r["correct"] == "True") for r in rows)  # fmt: skip
            traces.append(Trace(qid, rows[0]["dataset"], seed, int(rows[0]["trace_token_count"]),
                                questions[qid]["answer"], points))  # fmt: skip
        except (KeyError, ValueError) as exc:
            raise DatasetError(f"{root / GEMMA_TRAJECTORIES}: {qid} seed {seed}: {exc!r}") from exc
    if not traces:
        raise DatasetError(f"{root / GEMMA_TRAJECTORIES}: no traces")
    return traces


def _confidence(row: dict[str, str]) -> float:
    mass = float(row["choice_probability_mass"])
    return min(1.0, float(row["prediction_probability"]) / mass) if mass > 0 else 0.0


def by_question(traces: Sequence[Trace]) -> dict[str, list[Trace]]:
    """Traces grouped by question, each group in seed order."""
    grouped: dict[str, list[Trace]] = {}
    for trace in traces:
        grouped.setdefault(trace.question_id, []).append(trace)
    return grouped


def convert_gemma_thinking(root: Path | None = None) -> Iterator[dict[str, Any]]:
    """The traces as ``ponder evaluate`` rows: per question, each trace's final answer
    (pre-extracted), its confidence and its thinking tokens."""
    root = root or shared_data_dir()
    questions = {q["question_id"]: q for q in read_csv(root / GEMMA_QUESTIONS)}
    for qid, traces in by_question(load_gemma_traces(root)).items():
        yield {
            "id": qid, "question": questions[qid]["question"], "reference": traces[0].reference,
            "answers": [t.final.answer for t in traces],
            "confidences": [round(t.final.confidence, 6) for t in traces],
            "tokens": [t.tokens for t in traces],
            "checkpoints": [[[c.prefix_tokens, c.answer] for c in t.checkpoints]
                            for t in traces],
        }  # fmt: skip

"""Thinking budgets from trajectories: fixed caps, budget forcing and probe exits, replayed.

Role: what ``ponder calibrate`` and ``bench/bench_thinking.py`` know about the length of one
chain of thought. Input: samples with a trajectory (the answer the model gives when stopped
at each checkpoint of its trace; ``trajectories.Trace`` or an ``EvalProblem`` with
``checkpoints``), as ``ThinkingSample``. Each rule below is a pure function of one sample:

- ``run_full``: the whole trace, its final answer (no cap);
- ``run_cap``: a token cap; a longer trace is cut there and abstains (``forcing=False``, a
  hard ``max_tokens`` today) or answers with its last checkpoint within the cap, costing
  the cap plus the answer allowance (budget forcing, the router's ``forcing``);
- ``run_fraction``: a cap at a share of each trace's own length, with forcing (an oracle:
  a live router does not know the length in advance; the issue's yardstick);
- ``run_probe_exit``: probe exits over the checkpoints (the router's probes at the data's
  probe points): the sample stops at the first checkpoint where the last ``agree``
  probed answers are equal (and, with ``confidence_floor``, the latest one is at least
  that confident), answering with it; each probe costs ``probe_tokens``. A sample that
  never settles runs to its end.

``summarise`` gives per-sample accuracy (each question weighs the same), the vote over a
question's samples (the router's ``majority_vote``), mean tokens, the share saved against
the full traces and the paired standard error of the accuracy difference.
``choose_cap`` picks a tier's thinking budget: the smallest candidate cap whose forced
accuracy is within ``tolerance`` of the full traces', or the one with the most correct
answers per token. Checkpoints at 0 tokens (the answer before any thinking) are never
probed: a live probe comes after the first interval.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Literal

import numpy as np

from ponder_router.aggregate import majority_vote

from .dataset import EvalProblem
from .trajectories import Trace


@dataclass(frozen=True)
class ThinkingSample:
    """One trace: its length, its checkpoints ``(prefix_tokens, answer, confidence)`` in
    trace order (the last one is the final answer) and the question's reference."""

    question_id: str
    tokens: int
    reference: str
    points: tuple[tuple[int, str | None, float], ...]

    @property
    def final(self) -> str | None:
        return self.points[-1][1]

    def answer_at(self, cap_tokens: float) -> str | None:
        """The last checkpoint's answer within ``cap_tokens`` (the first's when none is)."""
        reached = [answer for tokens, answer, _ in self.points if tokens <= cap_tokens]
        return reached[-1] if reached else self.points[0][1]


def from_trace(trace: Trace) -> ThinkingSample:
    return ThinkingSample(trace.question_id, trace.tokens, trace.reference,
                          tuple((c.prefix_tokens, c.answer, c.confidence)
                                for c in trace.checkpoints))  # fmt: skip


def from_problem(problem: EvalProblem) -> list[ThinkingSample]:
    """``problem``'s samples that carry checkpoints and tokens (keys compare as answers;
    the data set has no checkpoint confidences: 1.0)."""
    if problem.checkpoints is None or problem.tokens is None:
        return []
    pairs = zip(problem.checkpoints, problem.tokens, strict=True)
    return [ThinkingSample(problem.problem_id, int(tokens), problem.reference_key,
                           tuple((t, key, 1.0) for t, key in points))
            for points, tokens in pairs]  # fmt: skip


@dataclass(frozen=True)
class SampleRun:
    """What one sample answers under a rule and what it costs."""

    answer: str | None
    thinking_tokens: float
    probe_tokens: float = 0.0

    @property
    def tokens(self) -> float:
        return self.thinking_tokens + self.probe_tokens


Rule = Callable[[ThinkingSample], SampleRun]


def run_full(sample: ThinkingSample) -> SampleRun:
    return SampleRun(sample.final, sample.tokens)


def run_cap(sample: ThinkingSample, cap_tokens: float, *, forcing: bool,
            answer_tokens: int = 32) -> SampleRun:  # fmt: skip
    """A hard cap (a longer trace abstains) or, with ``forcing``, an answer at the cap."""
    if sample.tokens <= cap_tokens:
        return SampleRun(sample.final, sample.tokens)
    if not forcing:
        return SampleRun(None, cap_tokens)
    return SampleRun(sample.answer_at(cap_tokens), cap_tokens + answer_tokens)


def run_fraction(sample: ThinkingSample, fraction: float, answer_tokens: int = 32) -> SampleRun:
    """Forcing at ``fraction`` of this trace's own length (an oracle cap)."""
    if fraction >= 1.0:
        return run_full(sample)
    return run_cap(sample, fraction * sample.tokens, forcing=True, answer_tokens=answer_tokens)


def run_probe_exit(sample: ThinkingSample, agree: int, *, confidence_floor: float = 0.0,
                   probe_tokens: int = 8) -> SampleRun:  # fmt: skip
    """Stop once ``agree`` consecutive probes give the same answer (see the docstring)."""
    if agree < 1:
        raise ValueError("agree must be at least 1")
    probes = [p for p in sample.points[:-1] if p[0] > 0]  # the last point is the end
    for i in range(agree - 1, len(probes)):
        window = probes[i - agree + 1: i + 1]
        answers = {answer for _, answer, _ in window}
        sure = all(confidence >= confidence_floor for _, _, confidence in window)
        if sure and None not in answers and len(answers) == 1:
            return SampleRun(probes[i][1], probes[i][0], (i + 1) * probe_tokens)
    return SampleRun(sample.final, sample.tokens, len(probes) * probe_tokens)


# -- summaries ----------------------------------------------------------------------------


@dataclass(frozen=True)
class ThinkingResult:
    """One rule over every sample (accuracies in [0, 1]; tokens per sample)."""

    name: str
    accuracy: float
    vote_accuracy: float
    mean_tokens: float
    mean_probe_tokens: float
    saved: float
    """Share of the full traces' tokens not spent (probes counted as spent)."""
    paired_se: float
    """Standard error of the per-question accuracy difference to the full traces."""
    delta: float
    """Accuracy minus the full traces' accuracy."""
    params: Mapping[str, object]

    def as_dict(self) -> dict[str, object]:
        return {"name": self.name, "params": dict(self.params),
                "accuracy": round(self.accuracy, 5), "vote_accuracy": round(self.vote_accuracy, 5),
                "mean_tokens": round(self.mean_tokens, 1),
                "mean_probe_tokens": round(self.mean_probe_tokens, 2),
                "tokens_saved": round(self.saved, 4), "delta": round(self.delta, 5),
                "paired_se": round(self.paired_se, 5)}  # fmt: skip


def _by_question(samples: Sequence[ThinkingSample]) -> dict[str, list[ThinkingSample]]:
    grouped: dict[str, list[ThinkingSample]] = {}
    for sample in samples:
        grouped.setdefault(sample.question_id, []).append(sample)
    return grouped


def _per_question(samples: Sequence[ThinkingSample],
                  rule: Rule) -> tuple[np.ndarray, np.ndarray, float, float]:  # fmt: skip
    """Per-question accuracy and vote correctness, mean tokens and probe tokens."""
    acc, vote, tokens, probes = [], [], [], []
    for group in _by_question(samples).values():
        runs = [rule(s) for s in group]
        reference = group[0].reference
        acc.append(np.mean([r.answer is not None and r.answer == reference for r in runs]))
        leader = majority_vote([r.answer for r in runs], "exact")
        vote.append(leader is not None and leader == reference)
        tokens += [r.tokens for r in runs]
        probes += [r.probe_tokens for r in runs]
    return np.asarray(acc), np.asarray(vote), float(np.mean(tokens)), float(np.mean(probes))


def summarise(samples: Sequence[ThinkingSample], rules: Mapping[str, Rule],
              params: Mapping[str, Mapping[str, object]] | None = None,
              ) -> list[ThinkingResult]:  # fmt: skip
    """Every rule in ``rules`` (by name) against the full traces."""
    if not samples:
        raise ValueError("no samples with trajectories")
    full_acc, _, full_tokens, _ = _per_question(samples, run_full)
    out = []
    for name, rule in rules.items():
        acc, vote, tokens, probes = _per_question(samples, rule)
        diff = acc - full_acc
        se = float(diff.std(ddof=1) / math.sqrt(len(diff))) if len(diff) > 1 else 0.0
        out.append(ThinkingResult(
            name=name, accuracy=float(acc.mean()), vote_accuracy=float(vote.mean()),
            mean_tokens=tokens, mean_probe_tokens=probes, saved=1.0 - tokens / full_tokens,
            paired_se=se, delta=float(diff.mean()),
            params=dict((params or {}).get(name, {}))))  # fmt: skip
    return out


# -- a tier's thinking budget -------------------------------------------------------------

Objective = Literal["tolerance", "correct-per-token"]
CAP_ROUNDING = 256
MAX_CANDIDATES = 64


@dataclass(frozen=True)
class ThinkingCap:
    """The thinking budget chosen for one tier, and what it keeps."""

    cap_tokens: int
    accuracy: float
    full_accuracy: float
    mean_tokens: float
    full_mean_tokens: float
    objective: str

    def as_dict(self) -> dict[str, object]:
        return {"cap_tokens": self.cap_tokens, "objective": self.objective,
                "forced_accuracy": round(self.accuracy, 5),
                "full_accuracy": round(self.full_accuracy, 5),
                "mean_tokens": round(self.mean_tokens, 1),
                "full_mean_tokens": round(self.full_mean_tokens, 1)}  # fmt: skip


def candidate_caps(samples: Sequence[ThinkingSample]) -> list[int]:
    """Caps up to the longest trace in steps of ``CAP_ROUNDING`` tokens (coarser when that
    would give more than ``MAX_CANDIDATES``)."""
    longest = max(s.tokens for s in samples)
    step = CAP_ROUNDING * max(1, math.ceil(longest / CAP_ROUNDING / MAX_CANDIDATES))
    return list(range(step, math.ceil(longest / step) * step + 1, step))


def choose_cap(samples: Sequence[ThinkingSample], *, tolerance: float = 0.005,
               objective: Objective = "tolerance", answer_tokens: int = 32,
               candidates: Sequence[int] | None = None) -> ThinkingCap:  # fmt: skip
    """The tier's thinking budget from its samples' trajectories (with forcing): the
    smallest candidate whose per-sample accuracy is within ``tolerance`` of the full
    traces' (``tolerance``; the longest candidate when none is), or the candidate with
    the most correct answers per token spent (``correct-per-token``)."""
    if not samples:
        raise ValueError("no samples with trajectories")
    caps = sorted(candidates) if candidates else candidate_caps(samples)
    full = [run_full(s) for s in samples]
    full_acc = float(np.mean([r.answer == s.reference for r, s in zip(full, samples, strict=True)]))
    full_tokens = float(np.mean([r.tokens for r in full]))
    scored = []
    for cap in caps:
        runs = [run_cap(s, cap, forcing=True, answer_tokens=answer_tokens) for s in samples]
        acc = float(np.mean([r.answer is not None and r.answer == s.reference
                             for r, s in zip(runs, samples, strict=True)]))  # fmt: skip
        scored.append((cap, acc, float(np.mean([r.tokens for r in runs]))))
    if objective == "tolerance":
        within = [c for c in scored if c[1] >= full_acc - tolerance]
        cap, acc, tokens = within[0] if within else scored[-1]
    else:
        cap, acc, tokens = max(scored, key=lambda c: (c[1] / c[2], -c[0]))
    return ThinkingCap(cap, acc, full_acc, tokens, full_tokens, objective)


# -- probe settings -----------------------------------------------------------------------

AGREEMENTS = (1, 2, 3, 4, 5)
CONFIDENCE_FLOORS = (0.0, 0.5, 0.8, 0.9)


@dataclass(frozen=True)
class ProbeChoice:
    """The probe setting chosen on some samples (``agreement``, ``confidence_floor``)."""

    agreement: int
    confidence_floor: float
    accuracy: float
    full_accuracy: float
    mean_tokens: float
    full_mean_tokens: float

    def as_dict(self) -> dict[str, object]:
        return {"agreement": self.agreement, "confidence_floor": self.confidence_floor,
                "accuracy": round(self.accuracy, 5), "full_accuracy": round(self.full_accuracy, 5),
                "mean_tokens": round(self.mean_tokens, 1),
                "full_mean_tokens": round(self.full_mean_tokens, 1)}  # fmt: skip


def choose_probe(samples: Sequence[ThinkingSample], *, tolerance: float = 0.005,
                 agreements: Sequence[int] = AGREEMENTS,
                 floors: Sequence[float] = CONFIDENCE_FLOORS,
                 probe_tokens: int = 8) -> ProbeChoice:  # fmt: skip
    """The probe-exit setting with the fewest tokens (probes included) whose per-sample
    accuracy is within ``tolerance`` of the full traces'; the most accurate when none is."""
    if not samples:
        raise ValueError("no samples with trajectories")
    full = [run_full(s) for s in samples]
    full_acc = float(np.mean([r.answer == s.reference for r, s in zip(full, samples, strict=True)]))
    full_tokens = float(np.mean([r.tokens for r in full]))
    tried = []
    for agree in agreements:
        for floor in floors:
            runs = [run_probe_exit(s, agree, confidence_floor=floor, probe_tokens=probe_tokens)
                    for s in samples]  # fmt: skip
            acc = float(np.mean([r.answer is not None and r.answer == s.reference
                                 for r, s in zip(runs, samples, strict=True)]))  # fmt: skip
            tokens = float(np.mean([r.tokens for r in runs]))
            tried.append(ProbeChoice(agree, floor, acc, full_acc, tokens, full_tokens))
    within = [c for c in tried if c.accuracy >= full_acc - tolerance]
    if within:
        return min(within, key=lambda c: (c.mean_tokens, c.agreement))
    return max(tried, key=lambda c: (c.accuracy, -c.mean_tokens))


def calibrate_thinking(train: Sequence[ThinkingSample], test: Sequence[ThinkingSample],
                       caps: Sequence[int], *, tolerance: float = 0.005,
                       answer_tokens: int = 32) -> dict[str, object]:  # fmt: skip
    """``ponder calibrate``'s thinking section: the probe setting chosen on ``train`` and,
    on ``test``, it and each tier cap (forced) against the full traces."""
    probe = choose_probe(train, tolerance=tolerance)
    rules: dict[str, Rule] = {
        f"cap {cap}, forced": partial(run_cap, cap_tokens=cap, forcing=True,
                                      answer_tokens=answer_tokens)
        for cap in sorted(set(caps))}  # fmt: skip
    rules["probe exit (chosen on train)"] = partial(
        run_probe_exit, agree=probe.agreement, confidence_floor=probe.confidence_floor)
    return {"probe_chosen_on_train": probe.as_dict(), "tolerance": tolerance,
            "test": [r.as_dict() for r in summarise(test, rules)] if test else []}  # fmt: skip


# -- the evaluate report ------------------------------------------------------------------

PROBE_AGREEMENTS = (2, 3, 4)


def thinking_report(samples: Sequence[ThinkingSample], caps: Sequence[int], *,
                    answer_tokens: int = 32, probe_tokens: int = 8,
                    tolerance: float = 0.005) -> list[ThinkingResult]:  # fmt: skip
    """Per trace, side by side: the full traces; each of ``caps`` (a policy's tiers) cut
    off (abstains) and forced; the cap ``choose_cap`` picks on these samples (in-sample);
    and probe exits at each agreement of ``PROBE_AGREEMENTS``."""
    rules: dict[str, Rule] = {"full traces": run_full}
    for cap in sorted(set(caps)):
        rules[f"cap {cap}, cut off"] = partial(run_cap, cap_tokens=cap, forcing=False)
        rules[f"cap {cap}, forced"] = partial(run_cap, cap_tokens=cap, forcing=True,
                                              answer_tokens=answer_tokens)  # fmt: skip
    chosen = choose_cap(samples, tolerance=tolerance, answer_tokens=answer_tokens).cap_tokens
    rules[f"calibrated cap {chosen}, forced (in-sample)"] = partial(
        run_cap, cap_tokens=chosen, forcing=True, answer_tokens=answer_tokens)
    for agree in PROBE_AGREEMENTS:
        rules[f"probe exit, agree {agree}"] = partial(run_probe_exit, agree=agree,
                                                      probe_tokens=probe_tokens)  # fmt: skip
    return summarise(samples, rules)


def format_thinking(results: Sequence[ThinkingResult], title: str) -> str:
    """``results`` as a table (accuracy per sample and of the vote, tokens per sample)."""
    lines = [title, f"{'rule':44s} {'acc %':>6s} {'vote %':>6s} {'tokens':>7s} {'saved':>6s} "
                    f"{'delta':>6s} {'± se':>5s}"]  # fmt: skip
    for r in results:
        lines.append(f"{r.name:44s} {r.accuracy * 100:6.2f} {r.vote_accuracy * 100:6.2f} "
                     f"{r.mean_tokens:7.0f} {r.saved:6.1%} {r.delta * 100:+6.2f} "
                     f"{r.paired_se * 100:5.2f}")  # fmt: skip
    return "\n".join(lines)

"""Confidence-aware stopping, side by side: each policy with and without per-sample confidence.

Data with per-sample confidences, each read or generated in place from ``$PONDER_DATA_DIR``:

- the stand-in LLM (a simulator) over MATH-500, 40 samples a problem; its confidence is
  the geometric-mean token probability the router reads live from the simulated
  ``cumulative_logprob`` (drawn from Gemma-4-12B's real answer confidences, right or wrong);
- Qwen2.5-Math, 100 MATH problems x 8 samples: **its reward-model score stands in for a
  confidence** (``sigmoid(rm_score)``; weights and the gate use only ranks, so any
  increasing map gives the same result). It is not the model's own confidence, and a
  prefix's score is not known, so the gate is replayed as on the stand-in (below);
- the Gemma-4-12B thinking traces (MMLU-Pro and GPQA-Diamond, 150 questions x 10 traces,
  ``--equality text``): the model's real answer probability, and the running one at every
  tenth of each trace (the gate cancels at the first checkpoint past ``minTokens`` below
  its threshold and the trace costs the tokens to there). Its questions over-represent
  overthinking (three equal cohorts).

Policies, each replayed through the router's ``RequestPlan`` with one confidence gate per
pass of the service over the problems (``ponder_tools.evaluation.confidence_replay``):
Adaptive-Consistency (beta 0.95, one sample at a time), the margin rule (3 votes ahead, one
at a time) and Ponder's default policy (tiers and waves), each **off** (today), with
**weighted** votes, with low-confidence **cancel**, and with **both**. With final
confidences only (stand-in, Qwen) a cancelled sample is charged ``minTokens``: the replay
takes its final confidence as its running one from the first token (the stand-in's own
construction; for Qwen an assumption). ``minTokens`` is a tenth of the data set's median
sample length (the gate's knob is in tokens; the sets' lengths differ a hundredfold).

Tokens are generated tokens only: cancellation launches more samples (each cancelled one
abstains and counts against the budget), and each extra sample also costs its prompt's
prefill, which this table does not count. "Equal accuracy" is not worse than the same
policy off by more than 0.5 points or one paired standard error (Qwen's 100 problems give
a standard error near 1.5 points, so it is a loose test there).

Prints the table (accuracy, mean samples, mean tokens, tokens saved against the same
policy off) and the verdict on the target (>= 30 % fewer tokens at equal accuracy, on at
least two of the three), writes ``bench/results/confidence.json`` and
``bench/results/confidence.png``.

    PYTHONPATH=operator:router:tools:localstack .venv/bin/python bench/bench_confidence.py
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ponder_localstack.standin import generate_standin
from ponder_router.aggregate import StopRule, StopRuleKind
from ponder_router.budgets import Budget, default_policy
from ponder_router.confidence import ConfidenceConfig
from ponder_tools.data import shared_data_dir
from ponder_tools.evaluation.confidence_replay import (
    VARIANTS,
    ReplayedPolicy,
    compare_confidence,
    format_confidence_table,
    running_from_traces,
)
from ponder_tools.evaluation.dataset import Dataset, convert_qwen25math, load_dataset, write_jsonl
from ponder_tools.evaluation.suite import ponder_budgets
from ponder_tools.evaluation.trajectories import (
    by_question,
    convert_gemma_thinking,
    load_gemma_traces,
)

TARGET_SAVING = 0.30


def qwen_rows() -> Iterator[dict[str, Any]]:
    """Qwen's rows with ``sigmoid(rm_score)`` as each sample's confidence (a proxy)."""
    for row in convert_qwen25math():
        yield {**row, "confidences": [1 / (1 + math.exp(-s)) for s in row["scores"]]}


def load_sets(folder: Path) -> list[tuple[Dataset, dict[str, Any] | None]]:
    standin = load_dataset(write_jsonl(generate_standin(shared_data_dir(),
                                                        samples_per_problem=40),
                                       folder / "standin.jsonl"), name="standin-math500")
    qwen = load_dataset(write_jsonl(qwen_rows(), folder / "qwen.jsonl"),
                        name="qwen25math-100x8 (rm_score as confidence)")
    gemma = load_dataset(write_jsonl(convert_gemma_thinking(), folder / "gemma.jsonl"),
                         name="gemma4-12b-thinking", mode="text")
    running = running_from_traces(by_question(load_gemma_traces()))
    return [(standin, None), (qwen, None), (gemma, running)]  # fmt: skip


def policies(dataset: Dataset) -> list[ReplayedPolicy]:
    """Adaptive-Consistency and the margin rule (one sample at a time, up to every sample)
    and Ponder's default policy (its tiers and waves)."""
    flat = [Budget(tier="all", strategy="vote", max_tokens_per_sample=1 << 30,
                   max_samples=p.sample_count, wave_size=1, expected_tokens=0.0)
            for p in dataset.problems]  # fmt: skip
    distinct, index = ponder_budgets(dataset.problems, default_policy())
    tiers = [distinct[i] for i in index.tolist()]
    return [ReplayedPolicy("adaptive-consistency@0.95", flat,
                           StopRule(kind=StopRuleKind.BETA, threshold=0.95), waves=False),
            ReplayedPolicy("margin@3", flat, StopRule(kind=StopRuleKind.MARGIN, margin=3),
                           waves=False),
            ReplayedPolicy("ponder-default", tiers, StopRule())]  # fmt: skip


def base_config(dataset: Dataset, percentile: float) -> ConfidenceConfig:
    """The knobs' defaults, with ``minTokens`` a tenth of the set's median sample length."""
    tokens = [t for p in dataset.problems for t in (p.tokens or ())]
    return ConfidenceConfig(percentile=percentile,
                            min_tokens=max(int(np.median(tokens) / 10), 1))


def run(folder: Path, orderings: int, percentile: float) -> dict[str, Any]:
    rows: list[dict[str, Any]] = []
    for dataset, running in load_sets(folder):
        rows += compare_confidence(dataset, policies(dataset), base_config(dataset, percentile),
                                   orderings=orderings, running=running)  # fmt: skip
    return {"orderings": orderings, "percentile": percentile, "rows": rows,
            "verdict": verdict(rows)}  # fmt: skip


def equal_accuracy(row: dict[str, Any]) -> bool:
    """Not worse than the same policy off by more than 0.5 points or one paired SE."""
    return row["accuracy_change"] >= -max(0.005, row["accuracy_change_se"])


def verdict(rows: list[dict[str, Any]]) -> dict[str, Any]:
    best: dict[str, dict[str, Any]] = {}
    for row in rows:
        if row["variant"] == "off" or not equal_accuracy(row):
            continue
        held = best.get(row["dataset"])
        if held is None or row["tokens_saved"] > held["tokens_saved"]:
            best[row["dataset"]] = row
    met = [d for d, r in best.items() if r["tokens_saved"] >= TARGET_SAVING]
    return {"best_at_equal_accuracy": {d: f"{r['policy']}/{r['variant']}: "
                                          f"{100 * r['tokens_saved']:.1f}% fewer tokens"
                                       for d, r in best.items()},
            "sets_meeting_target": met, "target_met": len(met) >= 2}  # fmt: skip


def print_table(doc: dict[str, Any]) -> None:
    print(format_confidence_table(doc["rows"]))
    print("verdict:", json.dumps(doc["verdict"], indent=1))


def plot(doc: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sets = list(dict.fromkeys(r["dataset"] for r in doc["rows"]))
    fig, axes = plt.subplots(1, len(sets), figsize=(6 * len(sets), 4.5))
    markers = dict(zip(VARIANTS, "os^D", strict=True))
    for ax, name in zip(np.atleast_1d(axes), sets, strict=True):
        for policy in dict.fromkeys(r["policy"] for r in doc["rows"]):
            rows = [r for r in doc["rows"] if r["dataset"] == name and r["policy"] == policy]
            line = ax.plot([r["mean_tokens"] for r in rows], [100 * r["accuracy"] for r in rows],
                           ":", label=policy)[0]
            for r in rows:
                ax.plot(r["mean_tokens"], 100 * r["accuracy"], markers[r["variant"]],
                        color=line.get_color())
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("mean tokens per problem")
        ax.set_ylabel("accuracy %")
        ax.legend(fontsize=7, title="o off, s weighted, ^ cancel, D both", title_fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orderings", type=int, default=10)
    parser.add_argument("--percentile", type=float, default=ConfidenceConfig().percentile)
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    parser.add_argument("--name", default="confidence")
    args = parser.parse_args()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        doc = run(Path(tmp), args.orderings, args.percentile)
    doc["seconds"] = round(time.perf_counter() - started, 1)
    print_table(doc)
    print(f"{doc['seconds']} s")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.name}.json").write_text(json.dumps(doc, indent=1) + "\n")
    plot(doc, args.out / f"{args.name}.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

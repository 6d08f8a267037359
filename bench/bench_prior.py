"""What the router's prompt prior, learned from its own traffic, knows: cross-fitted AUROC.

For each real data set with several samples per problem (Llama-2-13B and GPT-4 on GSM8K,
Qwen2.5-Math on MATH, Gemma-4-12B thinking traces; read in place from
``$PONDER_DATA_DIR``), every problem is replayed as one request through the router's
``RequestPlan`` under the default policy, and its free label (``ponder_router.prior``:
how contested the vote was, how many samples it drew, its confidence where the data have
it) is what the router would learn from. Cross-fitted over two folds: the prior learns
online, one pass, from one fold's requests in a random traffic order and scores the other
fold's prompts. Reported for "the first sample is wrong": the learned prior's AUROC, the
fixed estimator's on the same requests, and the free label's own (it reads the request's
samples, so it is an in-flight signal, not a prompt prior: the ceiling of what the prior
is taught); and the Spearman correlation of the learned score with the held-out requests'
free labels (does the prior learn its own target?). Writes ``bench/results/prior.json``.

    .venv/bin/python bench/bench_prior.py [--seeds 3] [--out bench/results]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from ponder_router.answers import EqualityMode
from ponder_router.prior import PriorConfig
from ponder_tools.data import shared_data_dir
from ponder_tools.evaluation.dataset import (
    Dataset,
    convert_qwen25math,
    load_dataset,
    write_jsonl,
)
from ponder_tools.evaluation.prior_fit import crossfit_prior
from ponder_tools.evaluation.trajectories import convert_gemma_thinking

SIGNALS = ("learned_prior", "fixed_estimator", "free_label_in_flight")


def datasets(workdir: Path) -> list[Dataset]:
    samples = shared_data_dir() / "samples"
    sets: list[tuple[Path, EqualityMode]] = [
        (samples / "mot_llama2_13b_gsm8k_pot_400x48.jsonl", "numeric"),
        (samples / "mot_gpt4_gsm8k_cot_1319x6.jsonl", "numeric"),
        (write_jsonl(convert_qwen25math(), workdir / "qwen25math-100x8.jsonl"), "numeric"),
        (write_jsonl(convert_gemma_thinking(), workdir / "gemma4-12b-thinking.jsonl"), "text"),
    ]
    return [load_dataset(path, mode=mode) for path, mode in sets]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3, help="fold splits and traffic orders")
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    args = parser.parse_args()
    config = PriorConfig()
    results: dict[str, Any] = {"prior": config.model_dump(by_alias=True), "sets": {}}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for dataset in datasets(Path(tmp)):
            runs = [crossfit_prior(dataset, config, seed=seed) for seed in range(args.seeds)]
            mean = {s: _mean([r["auroc_first_wrong"][s] for r in runs]) for s in SIGNALS}
            rho = _mean([r["spearman_learned_vs_free_label"] for r in runs])
            results["sets"][dataset.name] = {"runs": runs, "mean_auroc_first_wrong": mean,
                                             "mean_spearman_learned_vs_free_label": rho}
            print(f"{dataset.name:40s} {runs[0]['problems']:5d} problems, first sample "
                  f"wrong {100 * (runs[0]['first_wrong_rate'] or 0):5.1f}%  AUROC: "
                  + "  ".join(f"{s} {_fmt(mean[s])}" for s in SIGNALS)
                  + f"  | Spearman(learned, held-out label) {_fmt(rho)}")  # fmt: skip
    results["elapsed_seconds"] = round(time.perf_counter() - started, 1)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "prior.json").write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out / 'prior.json'}")
    return 0


def _mean(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return round(float(np.mean(present)), 4) if present else None


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


if __name__ == "__main__":
    raise SystemExit(main())

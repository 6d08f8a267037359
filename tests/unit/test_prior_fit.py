"""``ponder calibrate``'s prompt prior: free labels from replayed requests, the cross-fitted
measurement, and the state file that warm-starts a router."""

from __future__ import annotations

import json
import random
from pathlib import Path

from ponder_router.prior import PriorConfig
from ponder_router.prior_store import load_prior
from ponder_tools.cli import main as ponder
from ponder_tools.evaluation.dataset import Dataset, EvalProblem, write_jsonl
from ponder_tools.evaluation.prior_fit import crossfit_prior, fit_prior, replay_requests

HARD = ["polynomial", "modulo", "primes", "divisible"]
EASY = ["apples", "ducks", "eggs", "basket"]


def synthetic(problems: int = 240, samples: int = 16, seed: int = 0) -> Dataset:
    """Hard problems (their own words) get scattered answers, easy ones a unanimous one."""
    rng = random.Random(seed)
    rows = []
    for i in range(problems):
        hard = i % 2 == 0
        words = [*rng.sample(HARD if hard else EASY, 2), str(rng.randint(1, 99))]
        scattered = tuple(str(rng.randint(1, 8)) for _ in range(samples))
        keys = scattered if hard else ("7",) * samples
        rows.append(EvalProblem(problem_id=f"p{i}", question="Find the " + " ".join(words),
                                reference="1" if hard else "7",
                                reference_key="1" if hard else "7", answer_keys=keys,
                                tokens=(100,) * samples))  # fmt: skip
    return Dataset(name="synthetic", problems=tuple(rows))


def test_contested_problems_teach_higher_labels_than_unanimous_ones() -> None:
    requests = replay_requests(synthetic(problems=40))
    hard = [r.observation.label for r in requests[0::2] if r.observation is not None]
    easy = [r.observation.label for r in requests[1::2] if r.observation is not None]

    assert len(hard) == len(easy) == 20
    assert max(easy) == 0.0
    assert sum(label > 0.5 for label in hard) >= 15  # a first wave may agree by chance


def test_a_prior_fitted_on_one_fold_ranks_the_other_folds_first_sample_errors() -> None:
    result = crossfit_prior(synthetic(), PriorConfig(n_features=1 << 12))

    assert result["problems"] == 240
    assert result["auroc_first_wrong"]["learned_prior"] > 0.85
    assert result["auroc_first_wrong"]["free_label_in_flight"] > 0.85


def test_fitting_learns_every_request_once() -> None:
    prior = fit_prior(replay_requests(synthetic(problems=32)), PriorConfig(n_features=1 << 12))
    assert prior.seen == 32


def test_calibrate_writes_a_prior_state_the_router_loads(tmp_path: Path) -> None:
    rows = [{"id": p.problem_id, "question": p.question, "reference": p.reference,
             "answers": list(p.answer_keys), "tokens": list(p.tokens or ())}
            for p in synthetic(problems=120).problems]  # fmt: skip
    data = write_jsonl(rows, tmp_path / "synthetic.jsonl")
    out = tmp_path / "calibrated"
    state = tmp_path / "state" / "prior.npz"

    assert ponder(["calibrate", "--data", str(data), "--orderings", "3", "--out", str(out),
                   "--prior-out", str(state), "--prior-features", "4096"]) == 0  # fmt: skip
    report = json.loads((out / "calibration.json").read_text())
    prior = load_prior(PriorConfig(n_features=4096), state)

    assert prior.seen == report["prior"]["requests_learned"] == 120
    assert report["prior"]["crossfit"]["auroc_first_wrong"]["learned_prior"] is not None
    assert prior.predict("Find the polynomial modulo 5") > prior.predict("Find the apples ducks 5")

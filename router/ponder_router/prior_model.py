"""``LearnedPrior``: a prompt's hashed n-grams into an online linear model of its difficulty.

Role: the prompt prior the executor consults beside ``difficulty``'s fixed estimator. It
hashes the prompt's word and character n-grams (scikit-learn's ``HashingVectorizer``, a
fixed ``n_features``, so memory is bounded whatever the traffic) into an online linear
model (``SGDRegressor.partial_fit``) of ``prior.free_label``. Once it has learned from
``warm_requests`` requests the executor takes its score instead of the fixed estimator's,
so the tier (first wave size, token cap) follows what this service's traffic showed; until
then it defers. It also keeps, per band of its own score, the mean share of the envelope
that requests drew past their first wave (``expected_extra_ratio``), which replaces
``DemandModel``'s fixed ``extra_sample_ratio`` in the demand the autoscaler reads.

Prompt text is hashed and dropped: only hashed features are held, until the next batch
is fitted. ``state``/``restore`` give the learned arrays (weights, counts, a hash of the
feature layout) to ``prior_store``. Pure: no I/O, no clock, no logging.
"""

from __future__ import annotations

import hashlib
import math
from typing import Any

import numpy as np
import scipy.sparse as sp
from sklearn.feature_extraction.text import HashingVectorizer
from sklearn.linear_model import SGDRegressor

from .difficulty import DifficultyEstimate
from .prior import Observation, PriorConfig

LAYOUT_VERSION = 1
"""Bumped whenever the hashed feature layout changes (old state files are then ignored)."""
EXTRA_BANDS = 10
"""Bands of the prior's score over which the extra-sample share is averaged."""
_MIN_BAND_REQUESTS = 5
"""Requests a band needs before its extra-sample share replaces the fixed ratio."""
LEARN_BATCH = 16
"""Observations hashed and held (features only) before one ``partial_fit`` over them: one
call costs about as much as sixteen single steps."""


class LearnedPrior:
    """Hashed n-grams of the prompt into an online linear model of ``free_label``."""

    def __init__(self, config: PriorConfig) -> None:
        self.config = config
        words = config.n_features // 2
        self._words = HashingVectorizer(analyzer="word", ngram_range=(1, 2), n_features=words,
                                        alternate_sign=False, norm="l2")  # fmt: skip
        self._chars = HashingVectorizer(analyzer="char_wb", ngram_range=(3, 5),
                                        n_features=config.n_features - words,
                                        alternate_sign=False, norm="l2")  # fmt: skip
        self._model = SGDRegressor(loss="squared_error", penalty="l2", alpha=1e-6,
                                   learning_rate="constant", eta0=config.learning_rate,
                                   shuffle=False)  # fmt: skip
        self.seen = 0
        self._pending: list[tuple[sp.csr_matrix, float]] = []
        self.extra_sums = np.zeros(EXTRA_BANDS)
        self.extra_counts = np.zeros(EXTRA_BANDS)

    @property
    def layout(self) -> str:
        """A hash of what the weights mean: a state with another layout cannot be used."""
        text = f"v{LAYOUT_VERSION}:words(1,2):char_wb(3,5):n={self.config.n_features}"
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    @property
    def warm(self) -> bool:
        return self.seen >= self.config.warm_requests

    def _features(self, prompt: str) -> sp.csr_matrix:
        halves = [self._words.transform([prompt]), self._chars.transform([prompt])]
        return sp.csr_matrix(sp.hstack(halves, format="csr") * math.sqrt(0.5))

    def _predict(self, features: sp.csr_matrix) -> float:
        coef = getattr(self._model, "coef_", None)
        if coef is None:
            return 0.0
        value = features.dot(coef)[0] + self._model.intercept_[0]
        return float(np.clip(value, 0.0, 1.0))

    def predict(self, prompt: str) -> float:
        """The learned difficulty of ``prompt`` in [0, 1] (0 before any learning)."""
        return self._predict(self._features(prompt))

    def estimate(self, prompt: str) -> DifficultyEstimate:
        """``difficulty.DifficultyEstimator``: the learned score."""
        return DifficultyEstimate(score=self.predict(prompt), features={"prior": 1.0})

    def learn(self, prompt: str, observation: Observation) -> None:
        """One online step towards ``observation.label`` for ``prompt``."""
        features = self._features(prompt)
        if observation.extra_ratio is not None:
            band = _band(self._predict(features))
            self.extra_sums[band] += observation.extra_ratio
            self.extra_counts[band] += 1
        self._pending.append((features, observation.label))
        if len(self._pending) >= LEARN_BATCH:
            self.flush()

    def flush(self) -> None:
        """Fit the observations held so far (``learn`` does so every ``LEARN_BATCH``)."""
        if not self._pending:
            return
        rows = sp.vstack([features for features, _ in self._pending], format="csr")
        labels = np.array([label for _, label in self._pending])
        self._pending.clear()
        self._model.partial_fit(rows, labels)
        self.seen += len(labels)

    def expected_extra_ratio(self, score: float) -> float | None:
        """Mean share of the envelope drawn past the first wave by requests the prior
        scored like ``score``; None until that band has seen enough of them."""
        band = _band(score)
        if self.extra_counts[band] < _MIN_BAND_REQUESTS:
            return None
        return float(self.extra_sums[band] / self.extra_counts[band])

    def reconfigure(self, config: PriorConfig) -> LearnedPrior:
        """This prior under new knobs: itself (learning rate updated) when the layout holds,
        else a cold one."""
        fresh = LearnedPrior(config)
        if fresh.layout != self.layout:
            return fresh
        self.config = config
        self._model.set_params(eta0=config.learning_rate)
        return self

    # -- state ---------------------------------------------------------------------------

    def state(self) -> dict[str, np.ndarray[Any, Any]]:
        """Copies of the arrays that make this prior: weights, counts, the layout's hash."""
        self.flush()
        trained = getattr(self._model, "coef_", None) is not None
        return {
            "layout": np.array(self.layout),
            "coef": self._model.coef_.copy() if trained else np.zeros(0),
            "intercept": self._model.intercept_.copy() if trained else np.zeros(1),
            "steps": np.array(self._model.t_ if trained else 1.0),
            "seen": np.array(self.seen),
            "extra_sums": self.extra_sums.copy(),
            "extra_counts": self.extra_counts.copy(),
        }

    def restore(self, arrays: dict[str, np.ndarray[Any, Any]]) -> None:
        """Take the learned state in ``arrays``; ``ValueError`` when it does not fit."""
        if str(arrays["layout"]) != self.layout:
            raise ValueError("the state was written for another feature layout")
        coef = np.asarray(arrays["coef"], dtype=np.float64)
        if coef.shape not in ((0,), (self.config.n_features,)):
            raise ValueError("the state's weights have the wrong size")
        sums, counts = arrays["extra_sums"], arrays["extra_counts"]
        if sums.shape != (EXTRA_BANDS,) or counts.shape != (EXTRA_BANDS,):
            raise ValueError("the state's demand bands have the wrong size")
        if coef.size:
            self._model.coef_ = coef.copy()
            self._model.intercept_ = np.asarray(arrays["intercept"], dtype=np.float64).reshape(1)
            self._model.t_ = float(arrays["steps"])
            self._model.n_features_in_ = self.config.n_features
        self.seen = int(arrays["seen"])
        self.extra_sums = sums.astype(np.float64)
        self.extra_counts = counts.astype(np.float64)


def _band(score: float) -> int:
    return min(int(score * EXTRA_BANDS), EXTRA_BANDS - 1)

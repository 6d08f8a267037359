"""Small statistics for calibration: rank correlation, AUROC, shrunk bin means.

Role: pure helpers under ``calibrate`` and ``calibration_report`` (numpy only; no scipy
in the product's dependencies).
"""

from __future__ import annotations

import numpy as np

from .replay import BoolArray, FloatArray, IntArray


class EmptyBinError(ValueError):
    """A difficulty bin holds no training problem."""


def _ranks(values: FloatArray) -> FloatArray:
    order = np.argsort(values, kind="stable")
    ranks = np.empty(len(values))
    ranks[order] = np.arange(len(values), dtype=np.float64)
    for value in np.unique(values):  # ties share their mean rank
        tied = values == value
        ranks[tied] = ranks[tied].mean()
    return ranks


def spearman(xs: FloatArray, ys: FloatArray) -> float | None:
    """Spearman's rank correlation (None when either side is constant)."""
    rx, ry = _ranks(np.asarray(xs, float)), _ranks(np.asarray(ys, float))
    if rx.std() == 0 or ry.std() == 0:
        return None
    return float(np.corrcoef(rx, ry)[0, 1])


def auroc(scores: FloatArray, positive: BoolArray) -> float | None:
    """P(a positive scores above a negative), ties half (None without both classes)."""
    pos, neg = int(positive.sum()), int((~positive).sum())
    if pos == 0 or neg == 0:
        return None
    ranks = _ranks(np.asarray(scores, float)) + 1
    return float((ranks[positive].sum() - pos * (pos + 1) / 2) / (pos * neg))


def shrunk_bin_means(values: FloatArray, bins: IntArray, mask: BoolArray, count: int) -> FloatArray:
    """Per-bin means of ``values`` over ``mask``, shrunk towards the pooled mean.

    Method-of-moments empirical Bayes: the between-bin variance is what the bin means
    vary by beyond their sampling variance; a bin keeps that share of its deviation.
    """
    return shrunk_bin_stats(values, bins, mask, count)[0]


def shrunk_bin_stats(values: FloatArray, bins: IntArray, mask: BoolArray,
                     count: int) -> tuple[FloatArray, FloatArray]:  # fmt: skip
    """``shrunk_bin_means`` and the standard error of each shrunk mean.

    A shrunk mean is ``keep_b`` x its bin's mean plus ``1 - keep_b`` x the pooled mean
    (itself the size-weighted bin means); with independent bin means its variance is
    ``(keep_b + (1 - keep_b) w_b)^2 var_b + (1 - keep_b)^2 sum_{j != b} w_j^2 var_j``.
    """
    pooled = float(values[mask].mean())
    means, variances, weights = np.zeros(count), np.zeros(count), np.zeros(count)
    for b in range(count):
        chosen = values[mask & (bins == b)]
        if chosen.size == 0:
            raise EmptyBinError(f"bin {b} has no training problems; use fewer bins")
        means[b] = chosen.mean()
        variances[b] = chosen.var(ddof=1) / chosen.size if chosen.size > 1 else 0.0
        weights[b] = chosen.size
    weights /= weights.sum()
    deviation = means - pooled
    between = max(0.0, float((weights * deviation**2).sum() - (weights * variances).sum()))
    keep = np.where(between + variances > 0, between / np.maximum(between + variances, 1e-300),
                    1.0)  # fmt: skip
    result: FloatArray = pooled + deviation * keep
    others = float((weights**2 * variances).sum()) - weights**2 * variances
    variance = (keep + (1.0 - keep) * weights) ** 2 * variances + (1.0 - keep) ** 2 * others
    se: FloatArray = np.sqrt(np.maximum(variance, 0.0))
    return result, se

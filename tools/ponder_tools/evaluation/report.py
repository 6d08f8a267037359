"""What ``ponder evaluate`` prints and writes: a table, a JSON document, a PNG.

Role: presentation for ``suite`` results. ``compare_policies`` states, for each Ponder
policy, its accuracy gap to maj@N_max (with the paired standard error over problems),
how many times fewer samples it draws, and what Adaptive-Consistency, ESC and plain
majority voting need to reach the same accuracy (read off their curves, linear between
points). ``compare_along_curve`` turns it round: at each Adaptive-Consistency
threshold's accuracy, what a Ponder curve needs. The table counts verifier calls
beside samples (they are compute too). matplotlib (the ``tools`` extra) is imported only
to draw.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .replay import PolicyResult
from .suite import (
    AC_PAPER_THRESHOLD,
    ESC_PAPER_WINDOW,
    SuiteResult,
    accuracy_at_samples,
    samples_at_accuracy,
)

TABLE_MAJ_N = (1, 2, 3, 4, 5, 8, 16, 32)


def _paired_se(a: PolicyResult, b: PolicyResult) -> float:
    diff = a.problem_accuracy - b.problem_accuracy
    return float(diff.std(ddof=1) / math.sqrt(len(diff))) if len(diff) > 1 else 0.0


def compare_policies(suite: SuiteResult) -> list[dict[str, Any]]:
    """For each Ponder policy: the gap to maj@N_max and compute at equal accuracy."""
    top = suite.by_name(f"maj@{suite.max_samples}")
    ac_curve = suite.family("adaptive-consistency")
    esc_curve = suite.family("esc")
    majority = suite.family("majority")
    ac_paper = suite.by_name(f"adaptive-consistency@{AC_PAPER_THRESHOLD:g}")
    rows = []
    for p in suite.family("ponder"):
        ac_need = samples_at_accuracy(ac_curve, p.accuracy)
        rows.append({
            "policy": p.name,
            "accuracy": round(p.accuracy, 5),
            "mean_samples": round(p.mean_samples, 3),
            "mean_waves": _round(p.mean_waves),
            "maj_max": {"name": top.name, "accuracy": round(top.accuracy, 5),
                        "mean_samples": round(top.mean_samples, 3)},
            "gap_points": round(100 * (top.accuracy - p.accuracy), 3),
            "gap_points_paired_se": round(100 * _paired_se(top, p), 3),
            "sample_reduction_vs_maj_max": round(top.mean_samples / p.mean_samples, 2),
            "ac_paper": {"accuracy": round(ac_paper.accuracy, 5),
                         "mean_samples": round(ac_paper.mean_samples, 3),
                         "mean_waves": _round(ac_paper.mean_waves)},
            "ac_samples_at_equal_accuracy": None if ac_need is None else round(ac_need, 3),
            "esc_samples_at_equal_accuracy": _round(samples_at_accuracy(esc_curve, p.accuracy)),
            "maj_samples_at_equal_accuracy": _round(samples_at_accuracy(majority, p.accuracy)),
            "fewer_samples_than_ac_at_equal_accuracy": ac_need is None
            or p.mean_samples < ac_need,
        })  # fmt: skip
    return rows


SAME_SAMPLES = 0.005  # mean samples closer than this are a tie


def compare_along_curve(
    suite: SuiteResult, curve: Sequence[PolicyResult], baseline: str = "adaptive-consistency"
) -> list[dict[str, Any]]:
    """For each point of the ``baseline`` family: its accuracy and samples, the samples
    ``curve`` needs for that accuracy (its frontier, linear between points), and which
    needs fewer (``ponder``, ``baseline``, ``tie``, or ``never`` when the curve does not
    reach that accuracy; then how far below it tops out, with the paired standard error
    of that gap over problems). Where both curves are flat a hundredth of a point moves
    the samples a lot, so each row also reads the other way: the accuracy ``curve``
    reaches with the baseline's samples."""
    top = max(curve, key=lambda r: (r.accuracy, -r.mean_samples))
    rows = []
    for point in suite.family(baseline):
        mine = samples_at_accuracy(curve, point.accuracy)
        reached = accuracy_at_samples(curve, point.mean_samples)
        row: dict[str, Any] = {
            "baseline": point.name, "accuracy": round(point.accuracy, 5),
            "baseline_samples": round(point.mean_samples, 3),
            "ponder_samples_at_equal_accuracy": _round(mine),
            "ponder_accuracy_at_equal_samples": None if reached is None
            else round(reached, 5),
        }  # fmt: skip
        if mine is None:
            row["fewer"] = "never"
            row["ponder_top"] = {"policy": top.name, "accuracy": round(top.accuracy, 5),
                                 "mean_samples": round(top.mean_samples, 3),
                                 "gap_points": round(100 * (point.accuracy - top.accuracy), 3),
                                 "gap_points_paired_se": round(100 * _paired_se(point, top),
                                                               3)}  # fmt: skip
        elif abs(mine - point.mean_samples) <= SAME_SAMPLES:
            row["fewer"] = "tie"
        else:
            row["fewer"] = "ponder" if mine < point.mean_samples else "baseline"
        rows.append(row)
    return rows


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def _shown(result: PolicyResult, max_samples: int) -> bool:
    if result.family in ("majority", "best-of-n"):
        n = int(str(result.params.get("n", 0)))
        return n in TABLE_MAJ_N or n == max_samples
    return True


def format_table(suite: SuiteResult, title: str | None = None) -> str:
    """A fixed-width table of the policies (maj@N and best-of-N for a few N)."""
    head = (f"{'policy':<30} {'acc %':>7} {'±se':>5} {'samples':>8} {'done':>6} "
            f"{'waves':>6} {'tokens':>9} {'x fewer':>7} {'verifier':>8}")  # fmt: skip
    top = suite.by_name(f"maj@{suite.max_samples}")
    lines = [title or f"{suite.dataset}: {suite.problems} problems, up to "
             f"{suite.max_samples} samples each", head, "-" * len(head)]  # fmt: skip
    for r in suite.results:
        if not _shown(r, suite.max_samples):
            continue
        tokens = "-" if r.mean_tokens is None else f"{r.mean_tokens:9.0f}"
        verifier = f"{r.mean_verifier_calls:8.2f}" if r.mean_verifier_calls else "-"
        waves = "-" if r.mean_waves is None else f"{r.mean_waves:6.2f}"
        lines.append(f"{r.name:<30} {100 * r.accuracy:7.2f} {100 * r.accuracy_se:5.2f} "
                     f"{r.mean_samples:8.2f} {r.mean_completed:6.2f} {waves:>6} {tokens:>9} "
                     f"{top.mean_samples / r.mean_samples:7.1f} {verifier:>8}")  # fmt: skip
    lines.append("samples: launched per request (cancelled ones count); done: finished; "
                 "waves: sequential rounds of launches (the latency cost); "
                 "x fewer: samples of maj@N_max over the policy's; verifier: verifier calls "
                 "per request, compute on top of the samples")  # fmt: skip
    return "\n".join(lines)


def format_comparisons(rows: Sequence[dict[str, Any]]) -> str:
    lines = []
    for c in rows:
        ac = c["ac_samples_at_equal_accuracy"]
        ac_text = "never reaches it" if ac is None else f"needs {ac:.2f} samples"
        waves = "" if c["mean_waves"] is None else f" in {c['mean_waves']:.2f} waves"
        lines.append(
            f"{c['policy']}: {100 * c['accuracy']:.2f}% with {c['mean_samples']:.2f} samples"
            f"{waves}; {c['maj_max']['name']} {100 * c['maj_max']['accuracy']:.2f}% "
            f"(gap {c['gap_points']:+.2f} ± {c['gap_points_paired_se']:.2f} points, "
            f"{c['sample_reduction_vs_maj_max']:.1f}x fewer samples); "
            f"Adaptive-Consistency at equal accuracy {ac_text}")  # fmt: skip
    return "\n".join(lines)


def suite_document(suite: SuiteResult, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The JSON result: every policy's averages, the comparisons, the settings."""
    return {
        "dataset": suite.dataset, "problems": suite.problems,
        "max_samples": suite.max_samples,
        "elapsed_seconds": round(suite.elapsed_seconds, 3),
        "stop_function_calls": suite.cache_calls,
        "results": [r.as_dict() for r in suite.results],
        "comparisons": compare_policies(suite),
        **(extra or {}),
    }  # fmt: skip


def plot_suite(suite: SuiteResult, path: Path, title: str | None = None) -> bool:
    """Accuracy against mean samples (and mean tokens, when known), one PNG; False (and
    nothing written) without matplotlib (the ``tools`` extra)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False

    has_tokens = all(r.mean_tokens is not None for r in suite.results)
    panels = 2 if has_tokens else 1
    fig, axes = plt.subplots(1, panels, figsize=(6.5 * panels, 4.6), squeeze=False)
    for ax, unit in zip(axes[0], ("samples", "tokens")[:panels], strict=True):
        def x(r: PolicyResult, unit: str = unit) -> float:
            return r.mean_samples if unit == "samples" else float(r.mean_tokens or 0.0)

        for family, style, label in (("majority", "-o", "maj@N"),
                                     ("best-of-n", "-s", "best-of-N (score)"),
                                     ("adaptive-consistency", "-^", "Adaptive-Consistency"),
                                     ("esc", "-v", "ESC (window)"),
                                     ("margin", "-d", "margin rule (SPRT)"),
                                     ("ponder-curve", "-*", "Ponder calibrated, budget "
                                                            "sweep")):  # fmt: skip
            curve = sorted(suite.family(family), key=x)
            if curve:
                ax.plot([x(r) for r in curve], [100 * r.accuracy for r in curve], style,
                        markersize=3, linewidth=1, label=label)  # fmt: skip
        for r in suite.family("ponder"):
            ax.plot([x(r)], [100 * r.accuracy], "*", markersize=13, label=r.name)
        for name, offset in ((f"adaptive-consistency@{AC_PAPER_THRESHOLD:g}", (4, -11)),
                             (f"esc@{ESC_PAPER_WINDOW}", (4, 5))):
            paper = suite.by_name(name)
            ax.annotate(name, (x(paper), 100 * paper.accuracy), fontsize=7,
                        xytext=offset, textcoords="offset points")  # fmt: skip
        ax.set_xscale("log", base=2)
        ax.set_xlabel(f"mean {unit} per problem (log scale)")
        ax.set_ylabel("accuracy (%)")
        ax.grid(alpha=0.3)
        accuracies = [100 * r.accuracy for r in suite.results]
        ax.set_ylim(float(np.percentile(accuracies, 5)) - 1, max(accuracies) + 0.5)
    axes[0][0].legend(fontsize=7, loc="lower right")
    fig.suptitle(title or f"{suite.dataset}: accuracy against compute", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True

"""Replay results → the numbers a benchmark reports, a table, JSON rows and a plot.

Role: the last step of a replay, used by ``compare``, the ``ponder simulate`` CLI and
``bench/bench_autoscaler.py``. The GPU price comes from the shared data's
``prices/gpu_price_summary.csv`` (median over clouds and offerings of the per-GPU
on-demand median for one accelerator). Plotting needs matplotlib (the ``tools`` extra); without it
``plot_timelines`` returns False and writes nothing.
"""

from __future__ import annotations

import csv
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ponder_tools.data import shared_data_dir

from .engine import SimResult
from .errors import SimulationError
from .oracle import OracleBound

PRICE_SUMMARY_PATH = Path("prices") / "gpu_price_summary.csv"


@dataclass(frozen=True)
class PolicySummary:
    """One policy on one trace: service level, latency, GPU time and cost."""

    policy: str
    trace: str
    requests: int
    completed: int
    slo_attainment: float
    wait_p50_seconds: float
    wait_p99_seconds: float
    ttft_p50_seconds: float
    ttft_p99_seconds: float
    latency_p50_seconds: float
    latency_p99_seconds: float
    gpu_hours: float
    cost_usd: float
    oracle_ratio: float
    peak_gpu_replicas: int
    scale_changes: int
    replay_wall_seconds: float

    def as_dict(self) -> dict[str, float | int | str]:
        return asdict(self)


def gpu_hourly_price(accelerator: str = "H100", root: Path | None = None, *,
                     spot: bool = False) -> float:  # fmt: skip
    """USD per GPU-hour: the median per-GPU price of ``accelerator`` across offerings,
    on-demand, or with ``spot`` the median spot price (preemptible capacity; offerings
    without one, such as Lambda's, left out)."""
    path = (root or shared_data_dir()) / PRICE_SUMMARY_PATH
    if not path.is_file():
        raise SimulationError(f"price file {path} not found")
    with path.open(newline="") as handle:
        rows = [row for row in csv.DictReader(handle) if row["accelerator"] == accelerator]
    if spot:
        prices = [float(row["spot_median"]) / float(row["accelerator_count"])
                  for row in rows if row["spot_median"] and row["accelerator_count"]]  # fmt: skip
    else:
        prices = [float(row["ondemand_per_gpu_median"])
                  for row in rows if row["ondemand_per_gpu_median"]]  # fmt: skip
    if not prices:
        kind = "spot" if spot else "on-demand"
        raise SimulationError(f"no {kind} price for accelerator {accelerator!r} in {path}")
    return statistics.median(prices)


def summarize(result: SimResult, oracle: OracleBound, gpu_hourly_price: float) -> PolicySummary:
    """The reported figures of ``result``; requests that never started count as SLO misses."""
    wait = result.wait_seconds
    met = np.nan_to_num(wait, nan=np.inf) <= result.slo_queue_wait_seconds
    requests = len(wait)

    def pct(values: np.ndarray, q: float) -> float:
        finite = values[~np.isnan(values)]
        return float(np.percentile(finite, q)) if len(finite) else float("nan")

    return PolicySummary(
        policy=result.policy,
        trace=result.trace,
        requests=requests,
        completed=result.completed,
        slo_attainment=float(met.mean()) if requests else 1.0,
        wait_p50_seconds=pct(wait, 50),
        wait_p99_seconds=pct(wait, 99),
        ttft_p50_seconds=pct(result.ttft_seconds, 50),
        ttft_p99_seconds=pct(result.ttft_seconds, 99),
        latency_p50_seconds=pct(result.latency_seconds, 50),
        latency_p99_seconds=pct(result.latency_seconds, 99),
        gpu_hours=result.gpu_hours,
        cost_usd=result.gpu_hours * gpu_hourly_price,
        oracle_ratio=result.gpu_seconds / oracle.gpu_seconds if oracle.gpu_seconds else 0.0,
        peak_gpu_replicas=int(result.timeline.gpu_replicas.max(initial=0)),
        scale_changes=result.scale_changes,
        replay_wall_seconds=result.replay_wall_seconds,
    )


def format_table(summaries: Sequence[PolicySummary], oracle: OracleBound, price: float) -> str:
    """A fixed-width table: one row per policy, then the oracle and fluid bounds."""
    header = (f"{'policy':<16}{'SLO met':>9}{'wait p50':>10}{'wait p99':>10}{'TTFT p99':>10}"
              f"{'lat p50':>9}{'lat p99':>9}{'GPU-h':>8}{'cost $':>9}{'x oracle':>9}"
              f"{'peak':>6}{'replay s':>9}")
    lines = [header, "-" * len(header)]
    for s in summaries:
        lines.append(
            f"{s.policy:<16}{s.slo_attainment:>9.2%}{s.wait_p50_seconds:>10.2f}"
            f"{s.wait_p99_seconds:>10.2f}{s.ttft_p99_seconds:>10.2f}"
            f"{s.latency_p50_seconds:>9.1f}{s.latency_p99_seconds:>9.1f}{s.gpu_hours:>8.2f}"
            f"{s.cost_usd:>9.2f}{s.oracle_ratio:>9.2f}{s.peak_gpu_replicas:>6d}"
            f"{s.replay_wall_seconds:>9.2f}")
    lines.append(
        f"{'oracle':<16}{1.0:>9.2%}{0.0:>10.2f}{'':>10}{'':>10}{'':>9}{'':>9}"
        f"{oracle.gpu_hours:>8.2f}{oracle.gpu_hours * price:>9.2f}{1.0:>9.2f}"
        f"{int(oracle.replicas.max(initial=0)):>6d}")
    lines.append(
        f"{'fluid bound':<16}{'':>9}{'':>10}{'':>10}{'':>10}{'':>9}{'':>9}"
        f"{oracle.fluid_gpu_hours:>8.2f}{oracle.fluid_gpu_hours * price:>9.2f}"
        f"{oracle.fluid_gpu_seconds / (oracle.gpu_seconds or 1.0):>9.2f}")
    return "\n".join(lines)


def plot_timelines(
    results: Sequence[SimResult], oracle: OracleBound, path: Path, title: str
) -> bool:
    """Replicas holding GPUs and queued requests over time, per policy, as a PNG."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    figure, (top, bottom) = plt.subplots(2, 1, figsize=(11, 7), sharex=True)
    if len(oracle.replicas):
        minutes = np.arange(len(oracle.replicas) + 1) * oracle.interval_seconds / 60.0
        top.step(minutes, np.append(oracle.replicas, oracle.replicas[-1:]), where="post",
                 color="black", linestyle="--", linewidth=1.2, label="oracle")
    for result in results:
        line = result.timeline
        top.plot(line.time_seconds / 60.0, line.gpu_replicas, linewidth=1.0, label=result.policy)
        bottom.plot(line.time_seconds / 60.0, line.queued_requests, linewidth=1.0,
                    label=result.policy)
    top.set_ylabel("replicas holding GPUs")
    top.set_title(title)
    top.legend(loc="upper left", fontsize=8, ncol=3)
    bottom.set_ylabel("queued requests")
    bottom.set_xlabel("minutes")
    bottom.set_yscale("symlog", linthresh=10)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return True

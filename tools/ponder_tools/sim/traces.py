"""Request traces for the simulator: arrival times and token counts, read in place.

Role: the first step of a replay. ``load_trace`` reads one of the public traces under
``$PONDER_DATA_DIR/traces`` (default: ``shared/data`` beside the checkout; never copied
into the project)
into a ``Trace`` of numpy arrays; ``workload`` then turns each request into a reasoning
request with a budget. ``synthetic_trace`` builds small traces for tests.

Traces (see the data folder's README for provenance and licences):

- ``azure-conv``  Azure LLM inference 2023, conversation (19,366 requests, 58 min)
- ``azure-code``  Azure LLM inference 2023, code (8,819 requests, 57 min, very bursty)
- ``mooncake``    Mooncake FAST'25 conversation trace (12,031 requests, 59 min)
- ``servegen-r1`` ServeGen's DeepSeek-R1 pool over one day (``servegen_trace``): its 144
  ten-minute rates (4.3-42.5 req/s, about 1.38 million requests) as Poisson arrivals, prompt
  and output tokens drawn from the pool's whole-day length distributions. ServeGen
  publishes rates and length distributions, not requests, so this trace is drawn (under
  ``seed``), not read; ``servegen_trace`` also compresses the day and rescales its rate,
  for a day-long shape in a short replay.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import numpy as np
import numpy.typing as npt

from ponder_tools.data import DATA_DIR_ENV, shared_data_dir

from .errors import SimulationError

TRACE_FILES: Final = {
    "azure-conv": "AzureLLMInferenceTrace_conv.csv",
    "azure-code": "AzureLLMInferenceTrace_code.csv",
    "mooncake": "mooncake_conversation_trace.jsonl",
}
"""Traces read request by request, and their files under ``<data dir>/traces``."""

SERVEGEN_POOLS: Final = {"servegen-r1": "deepseek-r1"}
"""Traces drawn from a ServeGen pool's rates (``servegen_trace``), and the pool."""

SERVEGEN_RATES: Final = "servegen_pool_rate_10min.csv"
SERVEGEN_LENGTHS: Final = {"deepseek-r1": "servegen_deepseek_r1_length_pmf_allday.csv"}
SERVEGEN_WINDOW_SECONDS: Final = 600.0
"""ServeGen's rate windows."""

TRACE_NAMES: Final = (*TRACE_FILES, *SERVEGEN_POOLS)
"""Every trace name the simulator accepts."""


@dataclass(frozen=True)
class Trace:
    """Requests in arrival order: seconds since the first request, prompt and output tokens."""

    name: str
    arrival_seconds: npt.NDArray[np.float64]
    input_tokens: npt.NDArray[np.int64]
    output_tokens: npt.NDArray[np.int64]

    def __post_init__(self) -> None:
        sizes = {len(self.arrival_seconds), len(self.input_tokens), len(self.output_tokens)}
        if len(sizes) != 1:
            raise SimulationError(f"trace {self.name}: columns differ in length {sorted(sizes)}")
        if len(self.arrival_seconds) and np.any(np.diff(self.arrival_seconds) < 0):
            raise SimulationError(f"trace {self.name}: arrivals are not sorted")

    @property
    def requests(self) -> int:
        return len(self.arrival_seconds)

    @property
    def duration_seconds(self) -> float:
        return float(self.arrival_seconds[-1]) if self.requests else 0.0

    def head(self, seconds: float) -> Trace:
        """The requests that arrive in the first ``seconds``."""
        count = int(np.searchsorted(self.arrival_seconds, seconds, side="left"))
        return Trace(self.name, self.arrival_seconds[:count], self.input_tokens[:count],
                     self.output_tokens[:count])


def load_trace(name: str, root: Path | None = None, *, seed: int = 0) -> Trace:
    """Trace ``name`` (one of ``TRACE_NAMES``) from ``root/traces``: read, or for a ServeGen
    pool drawn at its real rates under ``seed`` (``servegen_trace``)."""
    if name in SERVEGEN_POOLS:
        return servegen_trace(name, root, seed=seed)
    if name not in TRACE_FILES:
        raise SimulationError(f"unknown trace {name!r}; known: {', '.join(TRACE_NAMES)}")
    path = (root or shared_data_dir()) / "traces" / TRACE_FILES[name]
    if not path.is_file():
        raise SimulationError(f"trace file {path} not found; set {DATA_DIR_ENV}")
    if path.suffix == ".jsonl":
        return _load_mooncake(name, path)
    return _load_azure(name, path)


def synthetic_trace(
    rates_per_second: list[tuple[float, float]],
    *,
    output_tokens: int = 200,
    input_tokens: int = 500,
    seed: int = 0,
    name: str = "synthetic",
) -> Trace:
    """Poisson arrivals at piecewise-constant rates: ``[(duration_seconds, rate), ...]``."""
    rng = np.random.default_rng(seed)
    times: list[npt.NDArray[np.float64]] = []
    start = 0.0
    for duration, rate in rates_per_second:
        count = int(rng.poisson(rate * duration))
        times.append(np.sort(rng.uniform(start, start + duration, count)))
        start += duration
    arrivals = np.concatenate(times) if times else np.zeros(0)
    arrivals = arrivals - (arrivals[0] if len(arrivals) else 0.0)
    count = len(arrivals)
    return Trace(name, arrivals.astype(np.float64), np.full(count, input_tokens, np.int64),
                 np.full(count, output_tokens, np.int64))


def servegen_trace(name: str = "servegen-r1", root: Path | None = None, *,
                   window_seconds: float = SERVEGEN_WINDOW_SECONDS,
                   mean_rate_rps: float | None = None, seed: int = 0) -> Trace:  # fmt: skip
    """A day of ServeGen pool ``name``'s traffic, drawn under ``seed``.

    Each of ServeGen's ten-minute windows lasts ``window_seconds`` here (600: real time;
    less compresses the day, keeping its shape) and receives Poisson arrivals at the
    window's rate (the sum of its clients' rates), scaled so the day's mean rate is
    ``mean_rate_rps`` (None: the real rates). Poisson, because the pool's per-window rates
    are all the data keeps: ServeGen fits each client's own inter-arrival distribution,
    so real traffic inside a window is burstier than this. Prompt and output tokens are
    drawn independently from the pool's whole-day length distributions (64-token bins,
    uniform inside a bin): ServeGen releases the marginals, not their joint distribution.
    """
    pool = SERVEGEN_POOLS.get(name)
    if pool is None:
        raise SimulationError(f"unknown ServeGen trace {name!r}; known: "
                              f"{', '.join(SERVEGEN_POOLS)}")  # fmt: skip
    if not window_seconds > 0.0 or (mean_rate_rps is not None and not mean_rate_rps > 0.0):
        raise SimulationError("a ServeGen window and mean rate must be positive")
    folder = (root or shared_data_dir()) / "traces"
    rates = _servegen_rates(folder / SERVEGEN_RATES, pool)
    if mean_rate_rps is not None:
        rates = rates * (mean_rate_rps / float(rates.mean()))
    rng = np.random.default_rng(seed)
    counts = rng.poisson(rates * window_seconds)
    starts = np.repeat(np.arange(len(rates)) * window_seconds, counts)
    arrivals = np.sort(starts + rng.uniform(0.0, window_seconds, len(starts)))
    if len(arrivals):
        arrivals -= arrivals[0]
    lengths = folder / SERVEGEN_LENGTHS[pool]
    return Trace(name, arrivals, _draw_lengths(lengths, "input_tokens", rng, len(arrivals)),
                 _draw_lengths(lengths, "output_tokens", rng, len(arrivals)))  # fmt: skip


def _servegen_rates(path: Path, pool: str) -> npt.NDArray[np.float64]:
    """``pool``'s request rate in each window, in window order."""
    if not path.is_file():
        raise SimulationError(f"trace file {path} not found; set {DATA_DIR_ENV}")
    with path.open(newline="") as handle:
        rows = sorted((float(row["window_start_s"]), float(row["total_rate_rps"]))
                      for row in csv.DictReader(handle) if row["pool"] == pool)  # fmt: skip
    if not rows:
        raise SimulationError(f"{path}: no windows for pool {pool!r}")
    return np.array([rate for _, rate in rows], dtype=np.float64)


def _draw_lengths(path: Path, field: str, rng: np.random.Generator,
                  count: int) -> npt.NDArray[np.int64]:  # fmt: skip
    """``count`` token counts drawn from the binned distribution of ``field`` in ``path``."""
    if not path.is_file():
        raise SimulationError(f"length file {path} not found; set {DATA_DIR_ENV}")
    with path.open(newline="") as handle:
        bins = [(int(row["bin_lo"]), int(row["bin_hi"]), float(row["prob"]))
                for row in csv.DictReader(handle) if row["field"] == field]  # fmt: skip
    if not bins:
        raise SimulationError(f"{path}: no {field} distribution")
    low, high, prob = (np.array(column) for column in zip(*bins, strict=True))
    chosen = rng.choice(len(bins), size=count, p=prob / prob.sum())
    return rng.integers(low[chosen], np.maximum(high[chosen], low[chosen] + 1)).astype(np.int64)


def _load_azure(name: str, path: Path) -> Trace:
    with path.open(newline="") as handle:
        rows = list(csv.reader(handle))
    header, body = rows[0], rows[1:]
    try:
        ts, ctx, gen = (header.index(c) for c in ("TIMESTAMP", "ContextTokens", "GeneratedTokens"))
    except ValueError as exc:
        raise SimulationError(f"{path}: unexpected header {header}") from exc
    stamps = np.array([row[ts].replace(" ", "T")[:26] for row in body], dtype="datetime64[us]")
    order = np.argsort(stamps, kind="stable")
    micros = (stamps[order] - stamps[order][0]).astype(np.int64)
    return Trace(
        name,
        micros.astype(np.float64) / 1e6,
        np.array([int(row[ctx]) for row in body], dtype=np.int64)[order],
        np.array([int(row[gen]) for row in body], dtype=np.int64)[order],
    )


def _load_mooncake(name: str, path: Path) -> Trace:
    stamps: list[float] = []
    inputs: list[int] = []
    outputs: list[int] = []
    with path.open() as handle:
        for line in handle:
            if line.strip():
                row = json.loads(line)
                stamps.append(float(row["timestamp"]) / 1000.0)
                inputs.append(int(row["input_length"]))
                outputs.append(int(row["output_length"]))
    arrival = np.array(stamps, dtype=np.float64)
    order = np.argsort(arrival, kind="stable")
    return Trace(name, arrival[order] - arrival[order][0],
                 np.array(inputs, dtype=np.int64)[order], np.array(outputs, dtype=np.int64)[order])

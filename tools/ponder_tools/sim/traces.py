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
"""Trace names the simulator accepts, and their files under ``<data dir>/traces``."""


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


def load_trace(name: str, root: Path | None = None) -> Trace:
    """Read trace ``name`` (a key of ``TRACE_FILES``) from ``root/traces``."""
    if name not in TRACE_FILES:
        raise SimulationError(f"unknown trace {name!r}; known: {', '.join(TRACE_FILES)}")
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

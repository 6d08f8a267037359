"""Pytest fixtures for a real Triton Inference Server serving the stand-in LLM.

The model is ``ponder-sim-llm``, a simulator standing in for a GPU LLM (see
``ponder_localstack.sim_llm``). Loaded as a plugin by ``conftest.py``:

- ``triton_server`` (session): one ``tritonserver`` with the simulated model at a small
  per-token latency, started once and stopped at the end of the session;
- ``start_triton`` (per test): a factory for more servers with other models or
  parameters (and ``TritonServer`` options such as ``exit_timeout_seconds``), each
  stopped when the test ends.

A missing Triton install fails under ``CI=true`` and skips elsewhere, with the set-up
command in the message (``components.require``); a failing test's report carries the
tail of every Triton log.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from components import LOG_FILES, require
from ponder_localstack.triton import SimModelOptions, TritonServer

TEST_TOKEN_LATENCY_MS = 2.0
"""Per-token latency of the session server's model: fast, still visibly streaming."""
TEST_MAX_CONCURRENCY = 8
"""Generations at once in the session server's model; more requests queue in Triton."""

StartTriton = Callable[..., TritonServer]


def start_server(workdir: Path, *models: SimModelOptions, **options: Any) -> TritonServer:
    """Start Triton in ``workdir`` with ``models`` (default: one test-speed model) and
    ``TritonServer`` ``options``."""
    chosen = models or (
        SimModelOptions(
            token_latency_ms=TEST_TOKEN_LATENCY_MS, max_concurrency=TEST_MAX_CONCURRENCY
        ),
    )
    server = TritonServer(workdir, models=chosen, **options)
    LOG_FILES.append(server.log_path)
    try:
        return require(server.start)
    except BaseException:
        server.stop()
        raise


@pytest.fixture(scope="session")
def triton_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TritonServer]:
    """One Triton serving ``ponder-sim-llm`` for the whole session."""
    server = start_server(tmp_path_factory.mktemp("triton"))
    yield server
    server.stop()


@pytest.fixture
def start_triton(tmp_path: Path) -> Iterator[StartTriton]:
    """Start more Triton servers (``start_triton(SimModelOptions(...), ...,
    exit_timeout_seconds=...)``) for one test."""
    started: list[TritonServer] = []

    def start(*models: SimModelOptions, **options: Any) -> TritonServer:
        server = start_server(tmp_path / f"triton-{len(started)}", *models, **options)
        started.append(server)
        return server

    yield start
    for server in reversed(started):
        server.stop()


def triton_counter(server: TritonServer, name: str) -> float:
    """A metric of ``server`` summed over its labels (every model, every version)."""
    text = httpx.get(server.metrics_url).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(name + "{"))  # fmt: skip

"""Shared helpers for fixtures that start real components.

``require`` turns a missing component into a test failure under ``CI=true`` (never a
silent skip) and a skip with the same message on a developer's machine; ``LOG_FILES``
collects the log files that a failing test's report shows the tail of.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest

from ponder_localstack.paths import MissingComponentError
from ponder_tools.data import DATA_DIR_ENV, shared_data_dir

T = TypeVar("T")
LOG_FILES: list[Path] = []


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def require_data(path: Path | str) -> Path:
    """``path`` in the shared data (relative: under ``shared_data_dir()``); missing, it fails
    in CI and skips elsewhere."""
    path = shared_data_dir() / path
    if not path.exists():
        message = f"shared data not found at {path} (set {DATA_DIR_ENV})"
        if in_ci():
            pytest.fail(f"{message}; CI=true, so this fails", pytrace=False)
        pytest.skip(message)
    return path


def require(start: Callable[[], T]) -> T:
    """Run ``start``; a missing component fails in CI and skips elsewhere, with its message."""
    try:
        return start()
    except MissingComponentError as exc:
        if in_ci():
            pytest.fail(f"missing component (CI=true, so this fails): {exc}", pytrace=False)
        pytest.skip(f"missing component: {exc}")

"""Where the local stack's binaries live, and a clear error when one is missing."""

from __future__ import annotations

import os
import shutil
from pathlib import Path


class MissingComponentError(RuntimeError):
    """A binary the local stack needs is not installed; the message names the set-up step."""


def cache_dir() -> Path:
    return Path(os.environ.get("PONDER_CACHE", Path.home() / ".cache" / "ponder"))


def bin_dir() -> Path:
    return cache_dir() / "bin"


def go_tool(name: str) -> Path:
    """A Go-built binary (kube-apiserver, etcd, kwok, helm, ...) from the cache."""
    path = bin_dir() / name
    if not os.access(path, os.X_OK):
        raise MissingComponentError(
            f"{name} is not built: run `hack/setup.sh go` (or `make setup`); looked in {path}"
        )
    return path


def uv_tool() -> Path:
    """The uv that ``hack/setup.sh`` installs (it builds and installs virtualenvs)."""
    path = cache_dir() / "uv" / "bin" / "uv"
    if not os.access(path, os.X_OK):
        raise MissingComponentError(
            f"uv is not installed: run `hack/setup.sh python` (or `make setup`); looked in {path}"
        )
    return path


def tritonserver_dir() -> Path:
    """The tritonserver tree from the nvidia-pytriton wheel (bin/, backends/, lib/)."""
    root = cache_dir() / "tritonserver"
    if not os.access(root / "bin" / "tritonserver", os.X_OK):
        raise MissingComponentError(
            f"tritonserver is not installed: run `hack/setup.sh triton`; looked in {root}"
        )
    return root


def triton_python_dir() -> Path:
    """The virtualenv whose python3 (with numpy) the python backend runs models with."""
    return cache_dir() / "triton-venv" / "bin"


def debian_tool(name: str) -> Path:
    """A binary from a Debian package (prometheus, promtool, ip)."""
    found = shutil.which(name)
    if found is None:
        raise MissingComponentError(
            f"{name} is not installed: run `hack/setup.sh apt` (Debian package)"
        )
    return Path(found)

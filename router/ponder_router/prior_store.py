"""The prompt prior's state file: saved atomically as ``.npz``, loaded at start.

Role: the I/O beside ``prior_model``. ``save_prior`` writes a ``LearnedPrior``'s arrays
(never pickle, never text) to a temporary file and renames it over the target;
``load_prior`` builds a prior from a config and, when there is a usable file, its saved
state: a missing file starts cold, a corrupt or mismatched one is logged (its path and the
kind of fault, never its content) and ignored. The router saves periodically and at
shutdown (``app``); ``ponder calibrate`` writes one to warm-start it.
"""

from __future__ import annotations

import logging
import os
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from .prior import PriorConfig
from .prior_model import LearnedPrior

logger = logging.getLogger(__name__)


def save_prior(prior: LearnedPrior, path: str | Path) -> None:
    """Write ``prior``'s state to ``path`` atomically (``write_state``)."""
    write_state(prior.state(), path)


def write_state(arrays: dict[str, Any], path: str | Path) -> None:
    """Write a prior's ``state()`` arrays to ``path``: a temporary file, then a rename."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=".prior-", suffix=".npz")
    try:
        with os.fdopen(handle, "wb") as stream:
            np.savez_compressed(stream, **arrays)
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def load_prior(config: PriorConfig, path: str | Path | None) -> LearnedPrior:
    """A prior with ``config``, carrying the state saved at ``path`` when there is a usable
    one; a missing file starts cold, a corrupt or mismatched one is logged and ignored."""
    prior = LearnedPrior(config)
    if path is None or not Path(path).exists():
        return prior
    try:
        with np.load(path, allow_pickle=False) as saved:
            prior.restore({name: saved[name] for name in saved.files})
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
        logger.warning("ignoring the prompt prior's state file %s (%s); starting cold",
                       path, type(exc).__name__)  # fmt: skip
        return LearnedPrior(config)
    logger.info("prompt prior loaded from %s after %d requests", path, prior.seen)
    return prior

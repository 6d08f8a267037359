"""Where the shared public data (traces, MATH problems, recorded samples, GPU prices) is read.

One home for the path: the tools, the local stack, the tests and the benchmarks all call
``shared_data_dir``. The data is read in place, never copied into the project.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Final

DATA_DIR_ENV: Final = "PONDER_DATA_DIR"
CHECKOUT_DATA_DIR: Final = Path(__file__).resolve().parents[3] / "shared" / "data"
"""``shared/data`` beside the checkout (``<checkout>/../shared/data``)."""


def shared_data_dir() -> Path:
    """``$PONDER_DATA_DIR`` if set, else ``shared/data`` beside the checkout."""
    return Path(os.environ.get(DATA_DIR_ENV) or CHECKOUT_DATA_DIR)

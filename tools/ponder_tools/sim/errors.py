"""The simulator's error: bad input data or configuration (never retried as is)."""

from __future__ import annotations


class SimulationError(ValueError):
    """A trace, data file or simulator setting cannot be used; the message says which."""

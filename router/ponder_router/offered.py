"""The offered load: tokens per second the arriving requests ask of the pool, unshrunk.

Role: the second half of the load pressure ``budgets.LoadState.from_demand`` computes. The
first half compares the demand still open (queued, running and later-wave tokens) with
``capacity.horizonSeconds`` of the pool's throughput; that stock says how far behind the
pool is, but it also counts the work the pool is busy with, so how much it over-states
depends on how long the service's requests live, and it only rises once queues have
grown. The offered load is the flow: each admitted request's expected tokens *as its
unshrunk budget would spend them* (``Budget.expected_tokens`` at an idle pool), averaged
over about ``horizonSeconds``. Over the pool's throughput it is the utilisation the
traffic asks for; at 2 it asks twice what the pool serves, and a shrink by 2 fits it.
Counting unshrunk budgets keeps the signal from chasing its own shrink.

The average is exponentially weighted in time (time constant ``window_seconds``): two
floats of state, never a prompt. ``offer`` (what the router and the fleet simulator call
on each request's budget), ``record`` and ``tokens_per_second`` take the time from the
caller (the executor's clock, the simulator's), so the model is pure and testable.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

from .budgets import Budget


@dataclass
class OfferedLoad:
    """Exponentially weighted rate of offered tokens per second."""

    window_seconds: float
    _rate: float = field(default=0.0, init=False)
    _at: float | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        if not self.window_seconds > 0.0:
            raise ValueError("window_seconds must be positive")

    def record(self, now: float, tokens: float) -> None:
        """A request arrived at ``now`` asking for ``tokens`` (its expected tokens)."""
        self._rate = self._decayed(now) + max(tokens, 0.0) / self.window_seconds
        self._at = now if self._at is None else max(self._at, now)

    def offer(self, now: float, budget: Budget, unshrunk: Callable[[], Budget]) -> None:
        """A request arrived at ``now`` with ``budget``: record the expected tokens of its
        unshrunk budget (``unshrunk()``, asked only when a load shrink cut ``budget``)."""
        self.record(now, (unshrunk() if budget.shrunk else budget).expected_tokens)

    def tokens_per_second(self, now: float) -> float:
        """The offered tokens per second as of ``now``."""
        return self._decayed(now)

    def _decayed(self, now: float) -> float:
        if self._at is None:
            return 0.0
        return self._rate * math.exp(-max(now - self._at, 0.0) / self.window_seconds)

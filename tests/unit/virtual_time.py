"""Virtual time for tests of deadlines: a running loop's clock that jumps instead of sleeping.

Whenever the event loop would sleep with nothing ready, its clock jumps to the next timer,
so sleeps, ``asyncio.timeout`` and ``asyncio.wait`` deadlines pass at once and in the order
they would on a wall clock; real I/O is still polled first and still wakes the loop. Inject
``VirtualTime.time`` as the router's ``clock`` so its deadlines read the same time. The
fixture ``virtual_time`` (tests/unit/conftest.py) installs one for a test.
"""

from __future__ import annotations

import asyncio
from typing import Any


class VirtualTime:
    """A running loop's clock that jumps to the next timer instead of sleeping."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop: Any = loop
        self._selector: Any = self._loop._selector  # the loop's wait for I/O and timers
        self._real_select = self._selector.select
        self.now = loop.time()

    def time(self) -> float:
        return self.now

    def _select(self, timeout: float | None = None) -> Any:
        ready = self._real_select(0)
        if ready or timeout == 0:
            return ready
        if timeout is None:  # no timer pending: only real I/O can wake the loop
            return self._real_select(None)
        self.now += timeout
        return ready

    def __enter__(self) -> VirtualTime:
        self._loop.time = self.time
        self._selector.select = self._select
        return self

    def __exit__(self, *exc: object) -> None:
        del self._loop.time
        del self._selector.select

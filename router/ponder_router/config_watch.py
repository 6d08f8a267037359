"""Reloads the router's configuration when its file changes (the operator's ConfigMap).

Role: the thin I/O loop around ``settings.load_config``: polls the file, hands every valid
new version to ``app``; an invalid new file never replaces a valid running one. Kept apart
from ``settings`` so the configuration models, which the operator's API and the policy
import, carry no asyncio or logging.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path

from .settings import ConfigError, RouterConfig, load_config

logger = logging.getLogger(__name__)


def _file_version(path: Path) -> tuple[int, int, int] | None:
    """What changes when the file does (a ConfigMap update swaps a symlink: inode too)."""
    try:
        stat = path.stat()
    except OSError:
        return None
    return (stat.st_mtime_ns, stat.st_size, stat.st_ino)


class ConfigWatcher:
    """Polls a config file and hands every valid new version to ``apply``.

    An invalid or unreadable new version is logged and skipped: the running config stays.
    """

    def __init__(
        self,
        path: str | Path,
        apply: Callable[[RouterConfig], Awaitable[None]],
        *,
        poll_seconds: float = 2.0,
    ) -> None:
        self.path = Path(path)
        self._apply = apply
        self.poll_seconds = poll_seconds
        self._version = _file_version(self.path)

    async def check(self) -> bool:
        """Load and apply the file if it changed since the last check; whether it applied."""
        version = _file_version(self.path)
        if version is None or version == self._version:
            return False
        self._version = version
        try:
            config = load_config(self.path)
        except ConfigError as exc:
            logger.error("keeping the running config: %s", exc, extra={"path": str(self.path)})
            return False
        await self._apply(config)
        logger.info("router config reloaded", extra={"path": str(self.path)})
        return True

    async def run(self) -> None:
        """Check forever, every ``poll_seconds``."""
        while True:
            await asyncio.sleep(self.poll_seconds)
            await self.check()

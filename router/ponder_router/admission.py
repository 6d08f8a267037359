"""Admission control: who may send requests, how big, and how many at once.

Role: the first step of every request, before any compute is spent. ``ApiKeys`` maps
an ``Authorization: Bearer`` key to a tenant from the mounted Secret file (lines ``key``
or ``key:tenant``; re-read when the file changes): no key is 401, an unknown key 403.
Without a key file the tenant is the request's ``user`` field (or ``anonymous``).
``Admission`` runs at most ``maxConcurrentRequests`` requests at once and queues up to
``maxQueueLength`` more, first come first served; a tenant may hold at most
``maxConcurrencyPerTenant`` of them. A full queue or tenant quota is refused at once
(429 with ``Retry-After``); a request still queued at its deadline gets 503 with
``Retry-After``. Neighbours: ``executor`` calls ``admit``; ``app`` maps the errors.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import math
import os
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

from .errors import OverloadedError, PonderRouterError
from .settings import AdmissionConfig

logger = logging.getLogger(__name__)

ANONYMOUS = "anonymous"
_MAX_RETRY_AFTER_SECONDS = 60


class AuthError(PonderRouterError):
    """The request's credentials are missing (401) or not accepted (403)."""

    counts_as_rejection = True

    def __init__(self, message: str, *, status: int) -> None:
        super().__init__(message)
        self.status = status
        self.error_type = self.reason = (
            "authentication_error" if status == 401 else "permission_denied"
        )  # fmt: skip


class AdmissionRejectedError(OverloadedError):
    """Refused by admission; ``reason`` labels ``ponder_router_rejections_total``."""

    def __init__(self, message: str, *, retry_after_seconds: float, reason: str,
                 status: int = 429) -> None:  # fmt: skip
        super().__init__(message, retry_after_seconds=retry_after_seconds)
        self.reason = reason
        self.status = status
        self.error_type = "rate_limit_exceeded" if status == 429 else "overloaded"


def parse_api_keys(text: str) -> dict[str, str]:
    """Key -> tenant from lines ``key`` or ``key:tenant`` (``#`` comments, blanks skipped).

    A key without a tenant gets a tenant named after a hash of the key, never the key.
    """
    keys: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, _, tenant = line.partition(":")
        key, tenant = key.strip(), tenant.strip()
        if key:
            keys[key] = tenant or "key-" + hashlib.sha256(key.encode()).hexdigest()[:12]
    return keys


class ApiKeys:
    """The accepted API keys, re-read when the file changes (checked every few seconds)."""

    def __init__(self, path: str | Path, *, check_seconds: float = 2.0,
                 clock: Callable[[], float] = time.monotonic) -> None:  # fmt: skip
        self.path = Path(path)
        self._check_seconds = check_seconds
        self._clock = clock
        self._checked_at = -math.inf
        self._version: tuple[int, int, int] | None = None
        self._keys: dict[str, str] = {}
        self._refresh()

    def _refresh(self) -> None:
        try:
            stat = os.stat(self.path)
            version = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
            if version != self._version:
                self._keys = parse_api_keys(self.path.read_text())
                self._version = version
                logger.info("api keys loaded: %d", len(self._keys))
        except OSError as exc:  # keep the keys we had; with none, every request is refused
            logger.error("cannot read api keys file: %s", exc.strerror)

    def tenant_for(self, authorization: str | None) -> str:
        """The tenant of ``Authorization: Bearer <key>``; ``AuthError`` if refused."""
        now = self._clock()
        if now - self._checked_at >= self._check_seconds:
            self._checked_at = now
            self._refresh()
        if not authorization:
            raise AuthError("missing API key: send Authorization: Bearer <key>", status=401)
        scheme, _, key = authorization.partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            raise AuthError("malformed Authorization header: expected Bearer <key>", status=401)
        tenant = self._keys.get(key.strip())
        if tenant is None:
            raise AuthError("this API key is not allowed for this service", status=403)
        return tenant


class Admission:
    """Bounded concurrency with a bounded FIFO queue and per-tenant quotas."""

    def __init__(self, limits: AdmissionConfig) -> None:
        self.limits = limits
        self.running = 0
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._tenants: dict[str, int] = {}
        self._mean_seconds = 1.0

    @property
    def queued(self) -> int:
        return len(self._waiters)

    def retry_after_seconds(self) -> int:
        """A guess at when a slot frees: mean request time x queue position / slots."""
        turns = (self.queued + 1) / self.limits.max_concurrent_requests
        return max(1, min(math.ceil(self._mean_seconds * turns), _MAX_RETRY_AFTER_SECONDS))

    async def acquire(self, tenant: str, timeout_seconds: float) -> None:
        """Take a running slot for ``tenant`` (waiting up to ``timeout_seconds``)."""
        held = self._tenants.get(tenant, 0)
        if held >= self.limits.max_concurrency_per_tenant:
            raise AdmissionRejectedError(
                f"too many concurrent requests for this tenant "
                f"(limit {self.limits.max_concurrency_per_tenant})",
                retry_after_seconds=self.retry_after_seconds(), reason="tenant",
            )  # fmt: skip
        if self.running < self.limits.max_concurrent_requests and not self._waiters:
            self.running += 1
            self._tenants[tenant] = held + 1
            return
        if self.queued >= self.limits.max_queue_length:
            raise AdmissionRejectedError(
                f"the request queue is full ({self.limits.max_queue_length} waiting)",
                retry_after_seconds=self.retry_after_seconds(), reason="queue",
            )  # fmt: skip
        self._tenants[tenant] = held + 1
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            async with asyncio.timeout(max(timeout_seconds, 0.0)):
                await waiter
        except BaseException as exc:
            if waiter.done() and not waiter.cancelled():
                self.running -= 1  # the slot was handed over as we gave up: pass it on
                self._wake()
            else:
                waiter.cancel()
                self._discard(waiter)
            self._drop_tenant(tenant)
            if isinstance(exc, TimeoutError):
                raise AdmissionRejectedError(
                    "timed out waiting in the request queue",
                    retry_after_seconds=self.retry_after_seconds(), reason="queue-timeout",
                    status=503,
                ) from exc  # fmt: skip
            raise

    def release(self, tenant: str, duration_seconds: float) -> None:
        """Give back a slot taken by ``acquire``."""
        self._mean_seconds += 0.1 * (max(duration_seconds, 0.0) - self._mean_seconds)
        self.running -= 1
        self._drop_tenant(tenant)
        self._wake()

    def _wake(self) -> None:
        while self._waiters and self.running < self.limits.max_concurrent_requests:
            waiter = self._waiters.popleft()
            if not waiter.done():
                self.running += 1
                waiter.set_result(None)

    def _discard(self, waiter: asyncio.Future[None]) -> None:
        with contextlib.suppress(ValueError):
            self._waiters.remove(waiter)

    def _drop_tenant(self, tenant: str) -> None:
        left = self._tenants.get(tenant, 0) - 1
        if left > 0:
            self._tenants[tenant] = left
        else:
            self._tenants.pop(tenant, None)

    def update(self, limits: AdmissionConfig) -> None:
        """New limits from a config reload; more slots wake waiters at once."""
        self.limits = limits
        self._wake()

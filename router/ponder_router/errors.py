"""The router's errors: one base class, each subclass saying what the caller should do.

Policy modules raise them for inputs no configuration could serve; the HTTP layer maps
them to status codes (a client fault is 4xx with a message a person can act on, overload
is 429/503 with ``Retry-After``)::

    PonderRouterError
    ├── PolicyError          bad policy input or configuration (never retry as is)
    │   └── UnknownExtractorError   an answer extractor name not in the registry
    ├── OverloadedError      admission refused; retry after ``retry_after_seconds``
    └── UpstreamError        Triton failed or broke a stream (may be retried)
"""

from __future__ import annotations


class PonderRouterError(Exception):
    """Base of every error the router raises on purpose."""


class PolicyError(PonderRouterError, ValueError):
    """A policy input or configuration is invalid; retrying the same call cannot help."""


class UnknownExtractorError(PolicyError, KeyError):
    """An answer extractor was asked for by a name the registry does not hold."""

    def __str__(self) -> str:
        # KeyError quotes its argument; a person reading the message wants plain text.
        return str(self.args[0]) if self.args else ""


class OverloadedError(PonderRouterError):
    """Admission refused because the pool is saturated; the client should come back later."""

    def __init__(self, message: str, *, retry_after_seconds: float) -> None:
        super().__init__(message)
        self.retry_after_seconds = retry_after_seconds


class UpstreamError(PonderRouterError):
    """The inference server failed, timed out or closed a stream early."""

"""The router's errors: one base class, each subclass saying what the caller should do.

Policy modules raise them for inputs no configuration could serve; the HTTP layer
(``app``) answers every one with a single mapping that reads the class attributes:
``status`` (the HTTP code), ``error_type``/``code``/``param`` (OpenAI's error JSON),
``retry_after_seconds`` (overload only: the ``Retry-After`` header), ``reason`` (the
metric label) and ``counts_as_rejection`` (whether ``ponder_router_rejections_total``
counts it). A client fault is 4xx with a message a person can act on, overload is
429/503 with ``Retry-After``. Where the raise site picks the status (a 404 or 413
``RequestError``, a 401 or 403 ``AuthError``) the instance overrides the class default::

    PonderRouterError              500 server_error    (never raised as is)
    ├── PolicyError                400 invalid_request_error  "invalid"
    │   ├── UnknownExtractorError      an answer extractor name not in the registry
    │   ├── ConfigError  (settings)    the config file is missing, unreadable or invalid
    │   └── RequestError  (api)        400/404/408/413/415/499, reason = its ``code``
    ├── AuthError  (admission)     401 authentication_error / 403 permission_denied
    ├── OverloadedError            429 rate_limit_exceeded  "queue", Retry-After
    │   └── AdmissionRejectedError  (admission)  429 "queue"/"tenant", or
    │                                 503 overloaded "queue-timeout"; Retry-After
    ├── UpstreamError              502 upstream_error  "upstream-error" (may be retried)
    │   ├── EndpointUnavailableError  (triton)   a replica could not be reached
    │   ├── SampleTimeoutError  (triton)         a sample ran past its deadline
    │   └── NoEndpointError  (endpoints)  503 service_unavailable  "no-endpoint",
    │                                     Retry-After (no replica before the deadline)
    └── DeadlineExceededError      504 timeout  "timeout" (no sample finished in time)

The ``outcome`` label of ``ponder_router_requests_total`` is ``rejected`` for a request
refused before it ran (the statuses in ``REFUSED_STATUSES``), else the error's ``reason``.
"""

from __future__ import annotations

REFUSED_STATUSES = frozenset({400, 401, 403, 404, 408, 413, 415, 429})
"""Statuses that refuse a request before it runs: its ``outcome`` label is ``rejected``."""


class PonderRouterError(Exception):
    """Base of every error the router raises on purpose."""

    status: int = 500
    """The HTTP status the client gets."""
    error_type: str = "server_error"
    """OpenAI's ``error.type``."""
    code: str | None = None
    """OpenAI's ``error.code``."""
    param: str | None = None
    """OpenAI's ``error.param``: the request field at fault."""
    retry_after_seconds: float | None = None
    """When to come back (the ``Retry-After`` header); ``None`` for errors that are not
    overload."""
    reason: str = "error"
    """The metric label: the ``reason`` of ``ponder_router_rejections_total`` and the
    ``outcome`` of ``ponder_router_requests_total`` for a request that ran and failed."""
    counts_as_rejection: bool = False
    """Whether ``ponder_router_rejections_total`` counts it (refusals an operator watches:
    credentials, overload, oversized input, no replica)."""

    @property
    def outcome(self) -> str:
        """The ``outcome`` label of ``ponder_router_requests_total``."""
        return "rejected" if self.status in REFUSED_STATUSES else self.reason


class PolicyError(PonderRouterError, ValueError):
    """A policy input or configuration is invalid; retrying the same call cannot help."""

    status = 400
    error_type = "invalid_request_error"
    reason = "invalid"


class UnknownExtractorError(PolicyError, KeyError):
    """An answer extractor was asked for by a name the registry does not hold."""

    def __str__(self) -> str:
        # KeyError quotes its argument; a person reading the message wants plain text.
        return str(self.args[0]) if self.args else ""


class OverloadedError(PonderRouterError):
    """Admission refused because the pool is saturated; the client should come back later."""

    status = 429
    error_type = "rate_limit_exceeded"
    reason = "queue"
    counts_as_rejection = True

    def __init__(self, message: str, *, retry_after_seconds: float) -> None:
        super().__init__(message)
        self.retry_after_seconds = retry_after_seconds


class UpstreamError(PonderRouterError):
    """The inference server failed, timed out or closed a stream early."""

    status = 502
    error_type = "upstream_error"
    reason = "upstream-error"


class DeadlineExceededError(PonderRouterError):
    """The request's deadline passed before any sample finished (504)."""

    status = 504
    error_type = "timeout"
    reason = "timeout"

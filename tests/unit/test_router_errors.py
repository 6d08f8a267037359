"""Each router error says what the client and the metrics see: status, OpenAI error type,
``Retry-After``, the metric reason and the request outcome (``errors``); ``app`` renders
them all with one mapping."""

from __future__ import annotations

import json

import pytest

from ponder_router.admission import AdmissionRejectedError, AuthError
from ponder_router.api import RequestError
from ponder_router.app import error_response
from ponder_router.endpoints import NoEndpointError
from ponder_router.errors import (
    DeadlineExceededError,
    OverloadedError,
    PolicyError,
    PonderRouterError,
    UnknownExtractorError,
    UpstreamError,
)
from ponder_router.settings import ConfigError
from ponder_router.triton import EndpointUnavailableError, SampleTimeoutError

INVALID = "invalid_request_error"


@pytest.mark.parametrize(
    ("error", "status", "error_type", "reason", "outcome", "counted"),
    [
        (RequestError("bad value", param="n"), 400, INVALID, "invalid-request", "rejected", False),
        (RequestError("bad", code="invalid_json"), 400, INVALID, "invalid_json", "rejected", False),
        (RequestError("long", code="context_length_exceeded"), 400, INVALID,
         "context_length_exceeded", "rejected", True),
        (RequestError("no such model", code="model_not_found", status=404), 404, INVALID,
         "model_not_found", "rejected", False),
        (RequestError("slow body", code="request_timeout", status=408), 408, INVALID,
         "request_timeout", "rejected", False),
        (RequestError("big", code="request_too_large", status=413), 413, INVALID,
         "request_too_large", "rejected", True),
        (RequestError("not JSON", code="unsupported_media_type", status=415), 415, INVALID,
         "unsupported_media_type", "rejected", False),
        (RequestError("gone", code="cancelled", status=499), 499, INVALID, "cancelled",
         "cancelled", False),
        (PolicyError("impossible cap"), 400, INVALID, "invalid", "rejected", False),
        (UnknownExtractorError("no extractor"), 400, INVALID, "invalid", "rejected", False),
        (ConfigError("bad config"), 400, INVALID, "invalid", "rejected", False),
        (AuthError("no key", status=401), 401, "authentication_error", "authentication_error",
         "rejected", True),
        (AuthError("wrong key", status=403), 403, "permission_denied", "permission_denied",
         "rejected", True),
        (OverloadedError("full", retry_after_seconds=1), 429, "rate_limit_exceeded", "queue",
         "rejected", True),
        (AdmissionRejectedError("full", retry_after_seconds=1, reason="tenant"), 429,
         "rate_limit_exceeded", "tenant", "rejected", True),
        (AdmissionRejectedError("waited", retry_after_seconds=1, reason="queue-timeout",
                                status=503), 503, "overloaded", "queue-timeout", "queue-timeout",
         True),
        (NoEndpointError("no replica", retry_after_seconds=30), 503, "service_unavailable",
         "no-endpoint", "no-endpoint", True),
        (UpstreamError("broke"), 502, "upstream_error", "upstream-error", "upstream-error", False),
        (EndpointUnavailableError("down"), 502, "upstream_error", "upstream-error",
         "upstream-error", False),
        (SampleTimeoutError("slow"), 502, "upstream_error", "upstream-error", "upstream-error",
         False),
        (DeadlineExceededError("late"), 504, "timeout", "timeout", "timeout", False),
    ],
    ids=lambda value: value if isinstance(value, str) else None,
)  # fmt: skip
def test_each_error_carries_its_status_type_and_metric_labels(
    error: PonderRouterError, status: int, error_type: str, reason: str, outcome: str,
    counted: bool,
) -> None:  # fmt: skip
    assert (error.status, error.error_type, error.reason) == (status, error_type, reason)
    assert error.outcome == outcome
    assert error.counts_as_rejection is counted
    response = error_response(error)
    assert response.status_code == status
    body = json.loads(bytes(response.body))
    assert body == {"error": {"message": str(error), "type": error_type,
                              "param": error.param, "code": error.code}}  # fmt: skip


@pytest.mark.parametrize(
    ("error", "retry_after"),
    [
        (OverloadedError("full", retry_after_seconds=2.2), "3"),
        (AdmissionRejectedError("full", retry_after_seconds=0.2, reason="queue"), "1"),
        (NoEndpointError("no replica", retry_after_seconds=30), "30"),
        (UpstreamError("broke"), None),
        (RequestError("bad"), None),
    ],
)
def test_only_overload_says_when_to_retry_in_whole_seconds(
    error: PonderRouterError, retry_after: str | None
) -> None:
    assert error_response(error).headers.get("Retry-After") == retry_after


def test_the_request_error_names_the_field_at_fault() -> None:
    error = RequestError("Invalid value for n", param="n", code="invalid_value")
    body = json.loads(bytes(error_response(error).body))
    assert body["error"]["param"] == "n"
    assert body["error"]["code"] == "invalid_value"

"""Property-based fuzzing of the router's HTTP API from its own ``/openapi.json``.

Schemathesis reads the document ``api.openapi_schema`` builds, generates requests that
follow it (positive) and requests that break it one rule at a time (negative), and sends
them in-process to ``create_app`` whose Triton is the scripted ``FakeBackend``. The
properties: a request valid by the schema is answered 200, an invalid one 4xx, nothing is
ever a 5xx or an escaped exception, and every response conforms to the schema (errors in
OpenAI's shape). Generation is deterministic, so CI replays the same cases every run;
``test_router_api`` and ``test_router_app`` hold the hand-written regressions it found.
"""

from __future__ import annotations

from typing import Any

import schemathesis
from hypothesis import settings
from schemathesis import Case

from ponder_router.app import create_app
from ponder_router.settings import RouterConfig
from test_router_fakes import FakeFleet, Script, constant

CASES_PER_OPERATION = 800
"""Fuzzing-phase cases per operation, positive and negative; the coverage phase adds its
boundary cases and wrong methods: about 2,200 requests in all, some 40 s on two cores."""

ROUTER_CONFIG = RouterConfig.model_validate(
    {"service": "small", "model_name": "m", "triton_model": "t", "endpoints": ("a:1",)}
)
APP = create_app(ROUTER_CONFIG,
                 backend_factory=FakeFleet(constant(Script(answer="42", tokens=3))).factory)
CONFIG = schemathesis.Config.from_dict({
    "seed": 20240611,
    "generation": {"mode": "all", "deterministic": True, "database": "none",
                   "max-examples": CASES_PER_OPERATION},
    "phases": {"stateful": {"enabled": False}},
    "output": {"sanitization": {"enabled": False}},
    "checks": {
        "positive_data_acceptance": {"expected-statuses": [200]},
        "negative_data_rejection": {"expected-statuses": [400, 404, 405, 413, 415]},
        "not_a_server_error": {"expected-statuses": ["2xx", "4xx"]},
    },
})  # fmt: skip
schema = schemathesis.openapi.from_asgi("/openapi.json", APP, config=CONFIG)


@schema.include(method="POST").parametrize()
@settings(deadline=None)
def test_no_generated_request_gets_a_server_error_and_every_answer_fits_the_schema(
    case: Case,
) -> None:
    case.call_and_validate()


def test_the_schema_documents_both_completion_endpoints_and_the_error_shape() -> None:
    document: dict[str, Any] = schema.raw_schema
    assert set(document["paths"]) >= {"/v1/chat/completions", "/v1/completions"}
    error = document["components"]["schemas"]["ErrorDetail"]
    assert set(error["properties"]) == {"message", "type", "param", "code"}

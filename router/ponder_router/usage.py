"""Per-tenant usage: what each tenant's requests cost, reported to that tenant only.

``UsageLedger`` adds up, per tenant, the requests by outcome, the samples run and the
tokens generated (the same approximate counts as the responses' ``usage``). The router
serves ``GET /v1/usage`` from it: the caller's API key names the tenant, and the answer
holds that tenant's numbers and nobody else's. Without an API key file the tenant is
whatever the request's ``user`` field claims, so the router will not report usage at all
(``app`` answers 403). Counters live in memory since the router started; the cluster-wide,
durable view is the metrics and the cost report. Pure: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class TenantUsage:
    """One tenant's totals since the router started."""

    requests: dict[str, int] = field(default_factory=dict)  # by outcome
    samples: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0

    def as_dict(self, tenant: str, since_unix_seconds: float) -> dict[str, object]:
        return {"object": "usage", "tenant": tenant, "since": int(since_unix_seconds),
                "requests": dict(sorted(self.requests.items())), "samples": self.samples,
                "prompt_tokens": self.prompt_tokens,
                "completion_tokens": self.completion_tokens}  # fmt: skip


class UsageLedger:
    """Tenant -> ``TenantUsage``; bounded by the number of tenants the key file names."""

    def __init__(self, started_unix_seconds: float) -> None:
        self.started_unix_seconds = started_unix_seconds
        self._tenants: dict[str, TenantUsage] = {}

    def record(self, tenant: str, outcome: str, *, samples: int = 0, prompt_tokens: int = 0,
               completion_tokens: int = 0) -> None:  # fmt: skip
        usage = self._tenants.setdefault(tenant, TenantUsage())
        usage.requests[outcome] = usage.requests.get(outcome, 0) + 1
        usage.samples += samples
        usage.prompt_tokens += prompt_tokens
        usage.completion_tokens += completion_tokens

    def report(self, tenant: str) -> dict[str, object]:
        """``tenant``'s usage (zeros for a tenant with no requests yet)."""
        usage = self._tenants.get(tenant, TenantUsage())
        return usage.as_dict(tenant, self.started_unix_seconds)

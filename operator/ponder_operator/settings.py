"""Process settings of the operator, from ``PONDER_*`` environment variables.

Built once in ``main()`` (never at import time) and handed to the handlers.
"""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class OperatorSettings:
    """Operator-wide settings; names carry their unit."""

    prometheus_url: str | None = None
    router_image: str = "ghcr.io/ponder-dev/ponder:0.1.0"
    peering_name: str = "ponder"
    # A replica silent this long is dead to its peers, and a standby takes over.
    peering_lifetime_seconds: int = 60
    namespace: str | None = None  # None: every namespace
    health_host: str = "127.0.0.1"
    health_port: int = 8081
    metrics_host: str = "127.0.0.1"
    metrics_port: int = 9090
    # One PromQL query may take this long before the read counts as failed.
    prometheus_timeout_seconds: float = 5.0
    # A router sample older than this is stale: the autoscaler holds the replica count.
    metrics_max_age_seconds: float = 30.0

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> OperatorSettings:
        e = dict(os.environ) if env is None else env
        return cls(
            prometheus_url=e.get("PONDER_PROMETHEUS_URL") or None,
            router_image=e.get("PONDER_ROUTER_IMAGE", cls.router_image),
            peering_name=e.get("PONDER_PEERING_NAME", cls.peering_name),
            peering_lifetime_seconds=int(e.get("PONDER_PEERING_LIFETIME_SECONDS",
                                               cls.peering_lifetime_seconds)),
            namespace=e.get("PONDER_NAMESPACE") or None,
            health_host=e.get("PONDER_HEALTH_HOST", cls.health_host),
            health_port=int(e.get("PONDER_HEALTH_PORT", cls.health_port)),
            metrics_host=e.get("PONDER_METRICS_HOST", cls.metrics_host),
            metrics_port=int(e.get("PONDER_METRICS_PORT", cls.metrics_port)),
            prometheus_timeout_seconds=float(e.get("PONDER_PROMETHEUS_TIMEOUT_SECONDS",
                                                   cls.prometheus_timeout_seconds)),
            metrics_max_age_seconds=float(e.get("PONDER_METRICS_MAX_AGE_SECONDS",
                                                cls.metrics_max_age_seconds)),
        )

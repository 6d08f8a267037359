"""``ponder-operator``: run the kopf operator (handlers in ``handlers``).

Settings come from ``PONDER_*`` variables (``settings.OperatorSettings``), plus
``PONDER_PRICING_FILE`` (a GPU price table CSV, e.g. mounted from a ConfigMap) and
``PONDER_STANDALONE=1`` to run without kopf peering (one replica, no peering CRDs).
With peering, each replica takes a random priority: the highest acts, the others wait
and take over when it stops. Every handler receives the ``context.OperatorContext`` built
here as kopf's ``memo``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
from pathlib import Path

import kopf

from ponder_operator.context import OperatorContext
from ponder_operator.policy.cost import PriceTable
from ponder_operator.settings import OperatorSettings


def main() -> int:
    logging.basicConfig(
        level=os.environ.get("PONDER_LOG_LEVEL", "INFO"),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    settings = OperatorSettings.from_env()
    from ponder_operator import handlers  # noqa: F401  (registers the handlers)

    pricing = os.environ.get("PONDER_PRICING_FILE")
    context = OperatorContext(
        settings=settings,
        prices=PriceTable.from_csv(Path(pricing)) if pricing else None,
    )
    standalone = os.environ.get("PONDER_STANDALONE", "") == "1"
    asyncio.run(kopf.operator(
        clusterwide=settings.namespace is None,
        namespaces=[settings.namespace] if settings.namespace else (),
        standalone=standalone,
        peering_name=None if standalone else settings.peering_name,
        priority=random.randint(1, 1_000_000),
        liveness_endpoint=f"http://{settings.health_host}:{settings.health_port}/healthz",
        memo=context,
    ))
    return 0

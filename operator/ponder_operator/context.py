"""The operator's shared wiring, typed: kopf's operator-level ``memo``.

``main`` builds an ``OperatorContext`` from the settings and the price table and hands it
to ``kopf.operator(memo=...)``; the startup handler (``handlers.configure``) calls
``connect`` to add what needs the cluster. kopf passes it to every handler as ``memo``,
each resource getting a shallow copy, so the clients, the executor and the
``reconciled`` record below are one set of objects shared by all of them.

Neighbours: ``handlers`` and ``autoscale`` read it; ``adapters`` provide what it holds.
"""

from __future__ import annotations

import concurrent.futures
import logging
from dataclasses import dataclass, field

from ponder_operator.adapters import prometheus as prom
from ponder_operator.adapters.kube import Kube, load_api_client
from ponder_operator.metrics import OperatorMetrics, start_metrics_server
from ponder_operator.policy.cost import PriceTable
from ponder_operator.render import RenderOptions
from ponder_operator.settings import OperatorSettings

log = logging.getLogger(__name__)
TICK_WORKERS = 32
"""The autoscaling loops' own threads: a thousand services must not queue behind the asyncio
default executor's handful of workers (a tick is mostly waiting on the API server)."""


@dataclass
class OperatorContext:
    """What every handler shares. The fields without a default are set by ``connect``."""

    settings: OperatorSettings
    prices: PriceTable | None = None
    reconciled: dict[str, int] = field(default_factory=dict)
    """uid -> the generation this process has applied."""
    signals: prom.SignalCache | None = None
    """The shared Prometheus batch; None when no Prometheus is configured."""
    kube: Kube = field(init=False)
    tick_executor: concurrent.futures.ThreadPoolExecutor = field(init=False)
    metrics: OperatorMetrics = field(init=False)
    options: RenderOptions = field(init=False)

    def connect(self) -> None:
        """Create the clients, the loops' executor and the metrics server."""
        settings = self.settings
        self.kube = Kube(load_api_client())
        self.tick_executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=TICK_WORKERS, thread_name_prefix="autoscale")
        if settings.prometheus_url:
            client = prom.connect(settings.prometheus_url, settings.prometheus_timeout_seconds)
            self.signals = prom.SignalCache(
                lambda: prom.fetch_batch(client), max_age_seconds=settings.metrics_max_age_seconds)
        self.metrics = OperatorMetrics()
        try:
            start_metrics_server(settings.metrics_host, settings.metrics_port, self.metrics)
        except OSError as exc:  # e.g. a second operator on one machine: serve without metrics
            log.warning("operator metrics not served on %s:%d: %s", settings.metrics_host,
                        settings.metrics_port, exc)
        self.options = RenderOptions(
            router_image=settings.router_image,
            service_monitor=self.kube.has_kind("monitoring.coreos.com/v1", "ServiceMonitor"),
        )

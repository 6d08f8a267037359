"""The ``ponder-router`` console script: settings from the environment, then uvicorn.

Environment: ``PONDER_ROUTER_CONFIG`` (the config file, required; reloaded on change),
``PONDER_ROUTER_HOST`` (default ``127.0.0.1``: expose it deliberately, e.g. ``0.0.0.0``
in a pod), ``PONDER_ROUTER_PORT`` (default 8080), ``PONDER_ROUTER_LOG_LEVEL`` (info) and
``PONDER_ROUTER_CONFIG_POLL_SECONDS`` (2). Endpoint discovery uses the in-cluster
service account, or ``KUBECONFIG`` outside a cluster.

Idle keep-alive connections stay open ``KEEP_ALIVE_SECONDS`` (uvicorn's default is 5 s):
a server must keep an idle connection longer than its clients do, or a client reusing a
connection just as the server closes it gets a reset instead of an answer. httpx (and so
the ``openai`` client) keeps idle connections 5 s, aiohttp 15 s, nginx upstreams 60 s;
``bench/soak.py`` saw one such reset in ~5,000 requests with the 5 s default.
"""

from __future__ import annotations

import logging
import sys

import uvicorn

from .app import create_app
from .settings import ConfigError, ProcessSettings, load_config

logger = logging.getLogger("ponder_router")

KEEP_ALIVE_SECONDS = 75
"""Longer than the idle timeout of the usual HTTP clients and proxies (see above)."""


def main() -> int:
    """Run the router until SIGTERM/SIGINT; 2 for a bad environment or config."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        settings = ProcessSettings.from_env()
        config = load_config(settings.config_path)
    except ConfigError as exc:
        logger.error("%s", exc)
        return 2
    logging.getLogger().setLevel(settings.log_level.upper())
    app = create_app(config, config_path=settings.config_path,
                     config_poll_seconds=settings.config_poll_seconds)  # fmt: skip
    logger.info("router for %s listening on %s:%d", config.service, settings.host, settings.port)
    uvicorn.run(app, host=settings.host, port=settings.port, log_level=settings.log_level,
                access_log=False, timeout_keep_alive=KEEP_ALIVE_SECONDS,
                timeout_graceful_shutdown=30)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())

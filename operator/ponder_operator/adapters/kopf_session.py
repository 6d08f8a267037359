"""kopf's own API connections, bounded: the watches, its patches, events and peering.

kopf opens its aiohttp session with no connection limit, so every concurrent call gets
its own TLS connection. Starting against 1,000 existing ReasoningServices, kopf patches
them all at once (finalizers, progress annotations): thousands of connections, each with
its OpenSSL buffers, which took the operator from 120 MB to 480 MB within 20 s. This
login handler logs in as kopf would (through the kubernetes client's configuration:
in-cluster service account or KUBECONFIG) and hands kopf a session whose connector keeps
at most ``KOPF_CONNECTIONS``; further calls wait for a free connection.
"""

from __future__ import annotations

import logging
from typing import Any

import aiohttp
import kopf

KOPF_CONNECTIONS = 48
"""Enough for the handful of long-lived watches plus a burst of patches and events."""


def bounded_session(
    info: kopf.ConnectionInfo, limit: int = KOPF_CONNECTIONS
) -> kopf.AiohttpSession:
    """A kopf login result: ``info``'s server and credentials over at most ``limit``
    connections."""
    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=limit, ssl=info.as_ssl_context()),
        headers=info.as_http_headers(),
        auth=info.as_aiohttp_basic_auth(),
        proxy=info.proxy_url,
        trust_env=info.trust_env,
    )
    return kopf.AiohttpSession(
        aiohttp_session=session, server=info.server, priority=info.priority,
        default_namespace=info.default_namespace, expiration=info.expiration,
    )


async def login(
    *, logger: logging.Logger | logging.LoggerAdapter[Any], **kwargs: Any
) -> kopf.AiohttpSession | None:
    """kopf's login through the kubernetes client, with a bounded connection pool (async:
    the session belongs to kopf's event loop)."""
    info = kopf.login_via_client(logger=logger, **kwargs)
    return None if info is None else bounded_session(info)

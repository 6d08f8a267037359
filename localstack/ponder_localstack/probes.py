"""A container's probes as the kubelet runs them: period, threshold, delay and timeout.

Test and demo infrastructure, used by ``pods``. ``ProbeState`` keeps one probe's counters
and says when it is due; ``probe_ok`` performs one ``httpGet`` or ``tcpSocket`` check
against the pod's address, resolving a named port against the container's ports.
"""

from __future__ import annotations

import socket
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


def resolve_port(port: int | str, container: Mapping[str, Any]) -> int:
    """A probe's port: a number, or the name of one of the container's ports."""
    if isinstance(port, int) or str(port).isdigit():
        return int(port)
    for declared in container.get("ports") or ():
        if declared.get("name") == port:
            return int(declared["containerPort"])
    raise ValueError(f"probe port {port!r} is not a port of container {container['name']}")


def probe_url(probe: Mapping[str, Any], container: Mapping[str, Any], ip: str) -> str:
    http = probe["httpGet"]
    scheme = str(http.get("scheme") or "HTTP").lower()
    host = http.get("host") or ip
    return f"{scheme}://{host}:{resolve_port(http['port'], container)}{http.get('path') or '/'}"


def probe_ok(probe: Mapping[str, Any], container: Mapping[str, Any], ip: str) -> bool:
    """One check: 2xx/3xx for httpGet, a connection for tcpSocket (exec: not supported,
    counted as a failure so that a pod relying on it is never Ready by accident)."""
    timeout_seconds = float(probe.get("timeoutSeconds") or 1)
    if probe.get("httpGet"):
        try:
            with urllib.request.urlopen(probe_url(probe, container, ip),
                                        timeout=timeout_seconds) as reply:
                return 200 <= int(reply.status) < 400
        except (urllib.error.URLError, OSError, ValueError):
            return False
    if probe.get("tcpSocket"):
        port = resolve_port(probe["tcpSocket"]["port"], container)
        try:
            with socket.create_connection((ip, port), timeout=timeout_seconds):
                return True
        except OSError:
            return False
    return False


@dataclass
class ProbeState:
    """One probe's schedule and counters, from the container's start."""

    probe: Mapping[str, Any]
    started_at: float
    next_at: float = 0.0
    failures: int = 0
    successes: int = 0

    def __post_init__(self) -> None:
        self.next_at = self.started_at + float(self.probe.get("initialDelaySeconds") or 0)

    @property
    def period_seconds(self) -> float:
        return float(self.probe.get("periodSeconds") or 10)

    @property
    def failure_threshold(self) -> int:
        return int(self.probe.get("failureThreshold") or 3)

    @property
    def success_threshold(self) -> int:
        return int(self.probe.get("successThreshold") or 1)

    def due(self, now: float) -> bool:
        return now >= self.next_at

    def record(self, ok: bool, now: float) -> None:
        self.next_at = now + self.period_seconds
        if ok:
            self.successes, self.failures = self.successes + 1, 0
        else:
            self.successes, self.failures = 0, self.failures + 1

    @property
    def passed(self) -> bool:
        return self.successes >= self.success_threshold

    @property
    def failed(self) -> bool:
        return self.failures >= self.failure_threshold

"""The unit tier's guard, and the ``virtual_time`` fixture for tests of deadlines.

A unit test starts no external tool and reaches no other host. Tests that need helm,
promtool, Chromium, Triton, Prometheus or a cluster carry one of the ``INTEGRATION_MARKERS``
and live in tests/integration. Here a test so marked is a collection error, and a test
that starts one of ``TOOLS`` or connects a socket beyond loopback fails, naming what it
tried (the attempt itself raises ``PermissionError``).

``virtual_time`` runs a test's event loop on a virtual clock (``virtual_time.VirtualTime``).
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import socket
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from virtual_time import VirtualTime

UNIT_DIR = Path(__file__).resolve().parent
INTEGRATION_MARKERS = frozenset({"cluster", "triton", "prometheus", "helm", "promtool",
                                 "chromium"})  # fmt: skip
TOOLS = frozenset({"helm", "promtool", "prometheus", "chromium", "tritonserver", "kubectl",
                   "kube-apiserver", "kube-controller-manager", "kube-scheduler", "etcd",
                   "kwok"})  # fmt: skip


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    misplaced = [item.nodeid for item in items
                 if item.path.is_relative_to(UNIT_DIR)
                 and INTEGRATION_MARKERS & {mark.name for mark in item.iter_markers()}]
    if misplaced:
        raise pytest.UsageError("tests marked as needing a real component belong in "
                                f"tests/integration: {', '.join(misplaced)}")


def _program(args: Any) -> str:
    first = args if isinstance(args, str | bytes | os.PathLike) else next(iter(args), "")
    words = os.fsdecode(first).split()
    return Path(words[0]).name if words else ""


def _is_local(address: Any) -> bool:
    if not isinstance(address, tuple):
        return True  # a Unix socket's path
    host = str(address[0])
    if host == "localhost":
        return True
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False  # a name that would need DNS
    return ip.is_loopback or ip.is_unspecified


@pytest.fixture(autouse=True)
def _no_external_tools_or_hosts(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    attempts: list[str] = []
    real_popen = subprocess.Popen

    class GuardedPopen(real_popen):  # type: ignore[type-arg, valid-type, misc]
        def __init__(self, args: Any, *rest: Any, **options: Any) -> None:
            if _program(args) in TOOLS:
                attempts.append(f"started {_program(args)}")
                raise PermissionError(f"a unit test may not start {_program(args)}")
            super().__init__(args, *rest, **options)

    def guarded(connect: Any) -> Any:
        def call(sock: socket.socket, address: Any) -> Any:
            if not _is_local(address):
                attempts.append(f"connected to {address!r}")
                raise PermissionError(f"a unit test may not connect to {address!r}")
            return connect(sock, address)
        return call

    monkeypatch.setattr(subprocess, "Popen", GuardedPopen)
    monkeypatch.setattr(socket.socket, "connect", guarded(socket.socket.connect))
    monkeypatch.setattr(socket.socket, "connect_ex", guarded(socket.socket.connect_ex))
    yield
    if attempts:
        pytest.fail("a unit test " + "; ".join(attempts) + ": move it to tests/integration "
                    "and mark it", pytrace=False)


@pytest_asyncio.fixture(loop_scope="function")
async def virtual_time() -> AsyncIterator[VirtualTime]:
    with VirtualTime(asyncio.get_running_loop()) as clock:
        yield clock

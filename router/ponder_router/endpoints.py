"""The set of Triton replicas a router sends samples to, and how one is picked.

Role: between ``executor`` (which asks for an endpoint per sample) and ``triton`` (one
``SampleBackend`` per replica). ``EndpointPool`` holds the current replicas, picks the one
with the least outstanding work (expected tokens of the samples running there, ties
round-robin; a request's samples stay on its home replica until it is saturated:
``affinity``), marks a replica that failed as down for a few seconds (it is then picked
only if nothing else is up), and lets requests wait for a first replica when there is
none (scale from zero). Replicas come from a static list or from ``PodWatcher``, which
watches Pods through the Kubernetes API — label selector, ``status.podIP``, the Ready
condition — as the Gateway API inference extension's endpoint picker does; Services and
EndpointSlices are never used. A failed watch keeps the last known replicas: an
unreachable API server never empties the pool.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .affinity import ReplicaLoad, choose_replica
from .errors import UpstreamError
from .settings import DiscoveryConfig
from .triton import SampleBackend

logger = logging.getLogger(__name__)

BackendFactory = Callable[[str], SampleBackend]


class NoEndpointError(UpstreamError):
    """No Triton replica appeared before the request's deadline (the pool may be at zero)."""

    status = 503
    error_type = "service_unavailable"
    reason = "no-endpoint"
    counts_as_rejection = True

    def __init__(self, message: str, *, retry_after_seconds: float) -> None:
        super().__init__(message)
        self.retry_after_seconds = retry_after_seconds


@dataclass(eq=False)
class Endpoint:
    """One replica and the work the router has running on it."""

    address: str
    backend: SampleBackend
    outstanding_tokens: float = 0.0
    running: int = 0
    down_until: float = 0.0
    retired: bool = False

    def start(self, expected_tokens: float) -> None:
        self.running += 1
        self.outstanding_tokens += expected_tokens

    def finish(self, expected_tokens: float) -> None:
        self.running -= 1
        self.outstanding_tokens = max(self.outstanding_tokens - expected_tokens, 0.0)


@dataclass
class EndpointPool:
    """The replicas; ``update`` replaces the set, ``pick`` chooses one per sample."""

    backend_factory: BackendFactory
    down_seconds: float = 5.0
    clock: Callable[[], float] = time.monotonic
    _endpoints: dict[str, Endpoint] = field(default_factory=dict)
    _turn: int = 0
    _changed: asyncio.Event = field(default_factory=asyncio.Event)
    _closing: set[asyncio.Task[None]] = field(default_factory=set)

    def __len__(self) -> int:
        return len(self._endpoints)

    @property
    def addresses(self) -> list[str]:
        return sorted(self._endpoints)

    def update(self, addresses: Iterable[str]) -> None:
        """Make the pool hold exactly ``addresses``; replicas that left close when idle."""
        wanted = list(dict.fromkeys(addresses))
        for address in list(self._endpoints):
            if address not in wanted:
                endpoint = self._endpoints.pop(address)
                endpoint.retired = True
                if endpoint.running == 0:
                    self._close_later(endpoint)
        for address in wanted:
            if address not in self._endpoints:
                self._endpoints[address] = Endpoint(address, self.backend_factory(address))
        if self._endpoints:
            self._changed.set()
        else:
            self._changed.clear()
        logger.info("triton endpoints: %d", len(self._endpoints),
                    extra={"endpoints": self.addresses})  # fmt: skip

    def pick(self, exclude: frozenset[str] = frozenset(), *, home: str | None = None,
             max_running: int | None = None) -> Endpoint | None:  # fmt: skip
        """The replica with the least outstanding work; down ones only if no other is up.
        With ``home``, that replica while it is up and runs fewer than ``max_running``
        (``affinity.choose_replica``)."""
        candidates = [e for a, e in self._endpoints.items() if a not in exclude]
        if not candidates:
            return None
        now = self.clock()
        loads = [ReplicaLoad(e.address, e.running, e.outstanding_tokens, e.down_until <= now)
                 for e in candidates]  # fmt: skip
        turn = self._turn + 1
        chosen = choose_replica(loads, home=home, max_running=max_running, turn=turn)
        if chosen != home:  # ties take turns among the picks that were free to choose
            self._turn = turn
        return self._endpoints[chosen] if chosen is not None else None

    def usable(self, address: str) -> bool:
        """Whether ``address`` is in the pool and not marked down."""
        endpoint = self._endpoints.get(address)
        return endpoint is not None and endpoint.down_until <= self.clock()

    def mark_down(self, endpoint: Endpoint) -> None:
        endpoint.down_until = self.clock() + self.down_seconds
        logger.warning("triton endpoint marked down for %.0f s", self.down_seconds,
                       extra={"endpoint": endpoint.address})  # fmt: skip

    def release(self, endpoint: Endpoint, expected_tokens: float) -> None:
        """A sample on ``endpoint`` ended; a retired replica closes once idle."""
        endpoint.finish(expected_tokens)
        if endpoint.retired and endpoint.running == 0:
            self._close_later(endpoint)

    async def wait_for_endpoint(self, timeout_seconds: float) -> bool:
        """Hold until the pool has a replica or the timeout passes; whether it has one."""
        if self._endpoints:
            return True
        try:
            async with asyncio.timeout(max(timeout_seconds, 0.0)):
                while not self._endpoints:
                    await self._changed.wait()
        except TimeoutError:
            return False
        return True

    def _close_later(self, endpoint: Endpoint) -> None:
        task = asyncio.get_running_loop().create_task(endpoint.backend.close())
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def close(self) -> None:
        endpoints = list(self._endpoints.values())
        self._endpoints.clear()
        await asyncio.gather(*(e.backend.close() for e in endpoints), return_exceptions=True)
        await asyncio.gather(*self._closing, return_exceptions=True)


def ready_address(pod: Any, grpc_port: int) -> str | None:
    """``podIP:port`` of a pod that is Ready and not terminating, else ``None``."""
    status, metadata = pod.status, pod.metadata
    if metadata is None or metadata.deletion_timestamp is not None or status is None:
        return None
    if not status.pod_ip:
        return None
    ready = any(c.type == "Ready" and c.status == "True" for c in status.conditions or ())
    if not ready:
        return None
    host = f"[{status.pod_ip}]" if ":" in status.pod_ip else status.pod_ip
    return f"{host}:{grpc_port}"


class PodWatcher:
    """Watches the Triton pods of a ``DiscoveryConfig`` on a thread; reports Ready addresses.

    ``on_change`` receives the sorted address list on the event loop each time it changes.
    """

    def __init__(
        self,
        discovery: DiscoveryConfig,
        on_change: Callable[[list[str]], None],
        *,
        kubeconfig: Path | None = None,
        watch_timeout_seconds: int = 10,
        retry_seconds: float = 2.0,
    ) -> None:
        self.discovery = discovery
        self._on_change = on_change
        self._kubeconfig = kubeconfig
        self._watch_timeout_seconds = watch_timeout_seconds
        self._retry_seconds = retry_seconds
        self._stop = threading.Event()
        self._pods: dict[str, str] = {}
        self._published: list[str] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._run, name="ponder-pod-watch", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _api(self) -> Any:
        from kubernetes import client, config  # imported here: only discovery needs it

        configuration = client.Configuration()
        try:
            config.load_incluster_config(client_configuration=configuration)
        except config.ConfigException:
            path = str(self._kubeconfig) if self._kubeconfig else None
            config.load_kube_config(config_file=path, client_configuration=configuration)
        return client.CoreV1Api(client.ApiClient(configuration))

    def _publish(self) -> None:
        addresses = sorted(set(self._pods.values()))
        if addresses != self._published and self._loop is not None:
            self._published = addresses
            self._loop.call_soon_threadsafe(self._on_change, addresses)

    def _record(self, pod: Any) -> None:
        address = ready_address(pod, self.discovery.grpc_port)
        if address is None:
            self._pods.pop(pod.metadata.name, None)
        else:
            self._pods[pod.metadata.name] = address

    def _run(self) -> None:
        from kubernetes import watch
        from kubernetes.client.exceptions import ApiException

        ns, selector = self.discovery.namespace, self.discovery.label_selector
        api = None
        while not self._stop.is_set():
            try:
                api = api or self._api()
                listed = api.list_namespaced_pod(ns, label_selector=selector)
                self._pods.clear()
                for pod in listed.items:
                    self._record(pod)
                self._publish()
                version = listed.metadata.resource_version
                while not self._stop.is_set():
                    stream = watch.Watch().stream(
                        api.list_namespaced_pod, ns, label_selector=selector,
                        resource_version=version, timeout_seconds=self._watch_timeout_seconds,
                    )  # fmt: skip
                    for event in stream:
                        if event["type"] == "ERROR":
                            raise ApiException(status=event["raw_object"].get("code", 500))
                        pod = event["object"]
                        if event["type"] == "DELETED":
                            self._pods.pop(pod.metadata.name, None)
                        else:
                            self._record(pod)
                        version = pod.metadata.resource_version or version
                        self._publish()
                        if self._stop.is_set():
                            return
            except ApiException as exc:
                if exc.status != 410:  # 410 Gone: the version expired, list again at once
                    logger.warning("pod watch failed (HTTP %s); keeping %d endpoints",
                                   exc.status, len(self._pods))  # fmt: skip
                    self._stop.wait(self._retry_seconds)
            except Exception as exc:  # the watch thread's last-resort boundary: never die
                logger.warning("pod watch failed (%s); keeping %d endpoints",
                               type(exc).__name__, len(self._pods))  # fmt: skip
                api = None
                self._stop.wait(self._retry_seconds)

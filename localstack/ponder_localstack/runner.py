"""The local cluster's kubelet: run its Triton and router pods as the pods say.

Test and demo infrastructure, not part of the product. KWOK pods run no containers, so on
its own the local cluster would scale pods that serve nothing. The runner closes the loop:
KWOK is told to leave pods labelled ``ponder.dev/component`` in (triton, router) alone
(``Cluster.runner_selector``), and for each such pod the scheduler placed, the runner

- gives it its own loopback address (``127.64.B.N``, the stand-in for the pod's network
  namespace; the API server accepts loopback addresses in pod status, only Endpoints and
  EndpointSlices refuse them). Each runner takes a random block ``B`` and skips an
  address whose ports something already listens on, so that two local stacks on one
  machine do not serve each other's pods;
- runs it as its rendered pod says (``pods``): its volumes, its init containers in order,
  then its container in Linux user and mount namespaces (``sandbox``) with the pod's args,
  environment, user, read-only root, ``/dev/shm`` and memory limit, the image's command
  standing in by a local binary (``images``: the CPU ``tritonserver``, this checkout's
  router); its probes as rendered; on deletion its ``preStop`` hook, SIGTERM, and SIGKILL
  after the grace period, then the pod removed (the kubelet's part);
- reports the pod's status: ``Running`` with that ``podIP``, ``Ready`` from the readiness
  probe, an init container's failure as ``Init:Error`` with its log tail, restarts.

It also keeps a Prometheus file-discovery targets file of the Ready pods it serves. So
adding a replica really adds serving capacity, Prometheus scrapes what the cluster runs,
and a rendering mistake (a read-only HOME, a wrong probe path, a failing model check) shows
as a pod that never becomes Ready here, not on a user's GPU cluster.
"""

from __future__ import annotations

import contextlib
import json
import logging
import random
import socket
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kubernetes import client, config

from ponder_localstack.cluster import Cluster
from ponder_localstack.pods import PodWorker

log = logging.getLogger(__name__)

COMPONENT_LABEL = "ponder.dev/component"
SERVICE_LABEL = "ponder.dev/service"
RUN_COMPONENTS = ("triton", "router")
IP_PREFIX = "127.64."
POD_PORTS = (8000, 8001, 8002, 8080)  # Triton's and the router's


@dataclass
class PodRunner:
    """Watches the runner's pods and keeps one ``PodWorker`` per pod."""

    cluster: Cluster
    state_dir: Path
    poll_seconds: float = 0.5
    running: dict[str, PodWorker] = field(default_factory=dict)  # by pod uid
    triton_ready_seconds: list[float] = field(default_factory=list)
    """Each Triton pod's time from its creation to its first Ready, in the order they got
    there: scheduling, the runner noticing it and Triton loading the model (the creation
    timestamp has whole seconds, so each is up to a second long)."""
    _timed: set[str] = field(default_factory=set)  # pod uids in triton_ready_seconds
    _next_ip: int = 1
    _ip_block: int = field(default_factory=lambda: random.randint(1, 254))
    _reported: dict[str, str] = field(default_factory=dict)  # by pod uid: the last status
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _api: Any = None

    def start(self) -> PodRunner:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self._write_targets([])
        self._api = client.CoreV1Api(config.new_client_from_config(str(self.cluster.kubeconfig)))
        self._thread = threading.Thread(target=self._loop, name="pod-runner", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        with self._lock:
            workers = list(self.running.values())
        for worker in workers:
            worker.delete(0.0)
        for worker in workers:
            worker.stop()
        self.running.clear()

    def ready_ips(self, component: str) -> list[str]:
        with self._lock:
            workers = list(self.running.values())
        return sorted(w.ip for w in workers if w.component == component and w.ready)

    def worker(self, namespace: str, name: str) -> PodWorker | None:
        """The worker of the pod ``namespace/name``, if it runs here."""
        with self._lock:
            return next((w for w in self.running.values()
                         if w.name == f"{namespace}/{name}"), None)

    # -- the loop ---------------------------------------------------------------------------

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self._sync()
            except Exception:  # last-resort boundary: the runner must outlive an API hiccup
                log.exception("pod runner sync failed")
            self._stop.wait(self.poll_seconds)

    def _sync(self) -> None:
        selector = f"{COMPONENT_LABEL} in ({','.join(RUN_COMPONENTS)})"
        pods = self._api.list_pod_for_all_namespaces(label_selector=selector).items
        seen: set[str] = set()
        for pod in pods:
            uid = pod.metadata.uid
            seen.add(uid)
            with self._lock:
                worker = self.running.get(uid)
            if pod.metadata.deletion_timestamp is not None:
                if worker is None:
                    self._delete_now(pod.metadata.namespace, pod.metadata.name)
                else:
                    worker.delete(float(pod.metadata.deletion_grace_period_seconds
                                        or pod.spec.termination_grace_period_seconds or 30))
                continue
            if not pod.spec.node_name:
                continue  # not scheduled (Pending for lack of GPUs): nothing to run
            if worker is None:
                worker = self._launch(pod)
            else:
                with contextlib.suppress(Exception):  # a vanished ConfigMap: next time
                    worker.volumes.refresh_if_due()
            self._report(pod, worker)
            if worker.component == "triton" and worker.ready and uid not in self._timed:
                self._timed.add(uid)
                created = pod.metadata.creation_timestamp
                self.triton_ready_seconds.append((datetime.now(UTC) - created).total_seconds())
        with self._lock:
            gone = [w for uid, w in self.running.items() if uid not in seen]
        for worker in gone:  # removed without a grace period
            worker.delete(0.0)
        self._write_targets(pods)

    def _launch(self, pod: Any) -> PodWorker:
        ip = self._allocate_ip()
        body = self._api.api_client.sanitize_for_serialization(pod)
        worker = PodWorker(
            pod=body, ip=ip, api=self._api, kubeconfig=self.cluster.kubeconfig,
            pod_dir=self.state_dir / f"{pod.metadata.namespace}-{pod.metadata.name}",
            on_gone=self._gone, component=pod.metadata.labels[COMPONENT_LABEL])
        with self._lock:
            self.running[pod.metadata.uid] = worker
        worker.start()
        log.info("pod %s runs on %s", worker.name, ip)
        return worker

    def _allocate_ip(self) -> str:
        """The next address of this runner's block on which no pod port is taken."""
        while True:
            block, host = divmod(self._next_ip - 1, 254)
            self._next_ip += 1
            ip = f"{IP_PREFIX}{(self._ip_block + block - 1) % 254 + 1}.{host + 1}"
            if all(_port_free(ip, port) for port in POD_PORTS):
                return ip
            log.info("skipping %s: another process serves on it", ip)

    def _gone(self, worker: PodWorker) -> None:
        """A worker has ended its processes: forget it and, if the pod was being deleted
        rather than the runner stopped, remove it from the API server."""
        uid = worker.pod["metadata"]["uid"]
        with self._lock:
            self.running.pop(uid, None)
            self._reported.pop(uid, None)
        if not self._stop.is_set():
            meta = worker.pod["metadata"]
            self._delete_now(meta["namespace"], meta["name"])

    def _delete_now(self, namespace: str, name: str) -> None:
        with contextlib.suppress(client.ApiException):
            self._api.delete_namespaced_pod(name, namespace, grace_period_seconds=0)

    def _report(self, pod: Any, worker: PodWorker) -> None:
        status = pod_status(worker)
        text = json.dumps(status, sort_keys=True)
        if self._reported.get(pod.metadata.uid) == text:
            return
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        for condition in status["conditions"]:
            condition["lastTransitionTime"] = now
        with contextlib.suppress(client.ApiException):  # deleted meanwhile
            self._api.patch_namespaced_pod_status(pod.metadata.name, pod.metadata.namespace,
                                                  {"status": status})
            self._reported[pod.metadata.uid] = text

    @property
    def targets_file(self) -> Path:
        return self.state_dir / "scrape-targets.json"

    def _write_targets(self, pods: Sequence[Any]) -> None:
        """Prometheus file-discovery targets: the Ready pods that ask to be scraped."""
        groups = []
        for pod in pods:
            with self._lock:
                run = self.running.get(pod.metadata.uid)
            annotations = pod.metadata.annotations or {}
            if run is None or not run.ready or annotations.get("prometheus.io/scrape") != "true":
                continue
            groups.append({
                "targets": [f"{run.ip}:{annotations.get('prometheus.io/port', '80')}"],
                "labels": {"namespace": pod.metadata.namespace, "pod": pod.metadata.name,
                           "ponder_service": pod.metadata.labels.get(SERVICE_LABEL, ""),
                           "reasoningservice": pod.metadata.labels.get(SERVICE_LABEL, "")},
            })
        tmp = self.targets_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(groups))
        tmp.replace(self.targets_file)


def _port_free(ip: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((ip, port))
        except OSError:
            return False
    return True


def pod_status(worker: PodWorker) -> dict[str, Any]:
    """The pod's status as the kubelet reports it (without transition times)."""
    ready = "True" if worker.ready else "False"
    initialized: dict[str, Any] = {"type": "Initialized", "status": "True"}
    if not worker.initialized and worker.init_states:
        initialized = {"type": "Initialized", "status": "False",
                       "reason": "ContainersNotInitialized"}
    status: dict[str, Any] = {
        "phase": "Running" if worker.initialized or not worker.init_states else "Pending",
        "hostIP": "127.0.0.1", "podIP": worker.ip, "podIPs": [{"ip": worker.ip}],
        "conditions": [
            {"type": "PodScheduled", "status": "True"}, initialized,
            {"type": "ContainersReady", "status": ready},
            {"type": "Ready", "status": ready},
        ],
        "containerStatuses": [s.to_json() for s in worker.states],
    }
    if worker.init_states:
        status["initContainerStatuses"] = [s.to_json() for s in worker.init_states]
    return status


def wait_for_ips(runner: PodRunner, component: str, count: int, timeout_seconds: float) -> None:
    deadline = time.monotonic() + timeout_seconds
    while len(runner.ready_ips(component)) < count:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{count} ready {component} pods not running within "
                               f"{timeout_seconds:.0f} s")
        time.sleep(0.2)

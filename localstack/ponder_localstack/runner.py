"""Run the local cluster's Triton and router pods as real local processes.

Test and demo infrastructure, not part of the product. KWOK pods run no containers, so on
its own the local cluster would scale pods that serve nothing. The runner closes the loop:
KWOK is told to leave pods labelled ``ponder.dev/component`` in (triton, router) alone
(``Cluster.runner_selector``), and for each such pod the scheduler placed, the runner

- gives it its own loopback address (``127.64.1.N``; the API server accepts loopback
  addresses in pod status, only Endpoints and EndpointSlices refuse them);
- starts the real server bound to that address: ``tritonserver`` with the stand-in model
  (and the stand-in reward model, ``ponder-sim-rm``, a best-of-n tier's verifier) on
  the pod's ports 8000/8001/8002, or ``ponder-router`` on 8080 with the configuration from
  the pod's ConfigMap (re-read when it changes) and the cluster's kubeconfig for discovery;
- reports the pod ``Running`` with that ``podIP`` at once, and ``Ready`` only when the
  process answers its health check (and not Ready when it dies); a router process that
  exits is started again, as the kubelet restarts a container;
- on deletion stops the process, then removes the pod (the kubelet's part).

It also keeps a Prometheus file-discovery targets file of the Ready pods it serves. So
adding a replica really adds serving capacity, Prometheus scrapes what the cluster runs,
and nothing is sent to an address that the runner does not serve.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kubernetes import client, config

from ponder_localstack.cluster import Cluster
from ponder_localstack.proc import Process, http_ok
from ponder_localstack.triton import (
    ModelOptions,
    SimModelOptions,
    SimRewardModelOptions,
    TritonServer,
)

log = logging.getLogger(__name__)

COMPONENT_LABEL = "ponder.dev/component"
SERVICE_LABEL = "ponder.dev/service"
RUN_COMPONENTS = ("triton", "router")
IP_PREFIX = "127.64.1."
ROUTER_PORT = 8080
TRITON_PORTS = (8000, 8001, 8002)


@dataclass
class _Running:
    component: str
    ip: str
    triton: TritonServer | None = None
    router: Process | None = None
    ready: bool = False
    reported_ready: bool | None = None
    starter: threading.Thread | None = None
    config_text: str = ""
    restarts: int = 0
    created_at: datetime | None = None  # the pod's creationTimestamp (whole seconds)
    ready_after_seconds: float | None = None  # creation to first Ready (Triton pods)


@dataclass
class PodRunner:
    """Watches the runner's pods and keeps one local process per pod."""

    cluster: Cluster
    state_dir: Path
    models: Sequence[ModelOptions] = (SimModelOptions(), SimRewardModelOptions())
    poll_seconds: float = 0.5
    running: dict[str, _Running] = field(default_factory=dict)  # by pod uid
    triton_ready_seconds: list[float] = field(default_factory=list)
    """Each Triton pod's time from its creation to its first Ready, in the order they got
    there: scheduling, the runner noticing it and Triton loading the model (the creation
    timestamp has whole seconds, so each is up to a second long)."""
    _next_ip: int = 1
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
        for run in self.running.values():
            self._stop_process(run)
        self.running.clear()

    def ready_ips(self, component: str) -> list[str]:
        return sorted(r.ip for r in self.running.values() if r.component == component and r.ready)

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
            if pod.metadata.deletion_timestamp is not None:
                self._remove(pod)
                continue
            if not pod.spec.node_name:
                continue  # not scheduled (Pending for lack of GPUs): nothing to run
            run = self.running.get(uid)
            if run is None:
                run = self._launch(pod)
            elif run.component == "router":
                self._refresh_router_config(pod, run)
            self._check(run)
            if (run.ready and run.triton is not None and run.ready_after_seconds is None
                    and run.created_at is not None):
                run.ready_after_seconds = (datetime.now(UTC) - run.created_at).total_seconds()
                self.triton_ready_seconds.append(run.ready_after_seconds)
            if run.reported_ready != run.ready:
                self._report(pod, run)
        for uid in set(self.running) - seen:
            self._stop_process(self.running.pop(uid))
        self._write_targets(pods)

    @property
    def targets_file(self) -> Path:
        return self.state_dir / "scrape-targets.json"

    def _write_targets(self, pods: Sequence[Any]) -> None:
        """Prometheus file-discovery targets: the Ready pods that ask to be scraped."""
        groups = []
        for pod in pods:
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

    def _launch(self, pod: Any) -> _Running:
        ip = f"{IP_PREFIX}{self._next_ip}"
        self._next_ip += 1
        component = pod.metadata.labels[COMPONENT_LABEL]
        run = _Running(component=component, ip=ip,
                       created_at=pod.metadata.creation_timestamp)
        self.running[pod.metadata.uid] = run
        workdir = self.state_dir / f"{pod.metadata.namespace}-{pod.metadata.name}"
        if component == "triton":
            run.triton = TritonServer(workdir, models=self.models, host=ip,
                                      http_port=TRITON_PORTS[0], grpc_port=TRITON_PORTS[1],
                                      metrics_port=TRITON_PORTS[2])
            run.starter = threading.Thread(target=self._start_triton, args=(run,), daemon=True)
            run.starter.start()
        else:
            workdir.mkdir(parents=True, exist_ok=True)
            self._refresh_router_config(pod, run, workdir)
            run.router = Process(
                f"router-{pod.metadata.name}", [sys.executable, "-m", "ponder_router"],
                workdir / "router.log",
                env={"PONDER_ROUTER_CONFIG": str(workdir / "router.json"),
                     "PONDER_ROUTER_HOST": ip, "PONDER_ROUTER_PORT": str(ROUTER_PORT),
                     "PONDER_ROUTER_CONFIG_POLL_SECONDS": "1",
                     **self.cluster.env()},
            ).start()
        self._report(pod, run)
        log.info("pod %s/%s runs %s on %s", pod.metadata.namespace, pod.metadata.name,
                 component, ip)
        return run

    def _start_triton(self, run: _Running) -> None:
        assert run.triton is not None
        with contextlib.suppress(Exception):  # a failed start shows as a pod never Ready
            run.triton.start()

    def _refresh_router_config(self, pod: Any, run: _Running, workdir: Path | None = None) -> None:
        name = next(v.config_map.name for v in pod.spec.volumes or () if v.config_map)
        cm = self._api.read_namespaced_config_map(name, pod.metadata.namespace)
        text = (cm.data or {}).get("router.json", "")
        if text != run.config_text:
            path = (workdir or self.state_dir / f"{pod.metadata.namespace}-{pod.metadata.name}")
            (path / "router.json").write_text(_pod_local_state(text, path / "state"))
            run.config_text = text

    def _check(self, run: _Running) -> None:
        if run.triton is not None:
            run.ready = bool(run.triton.process and run.triton.process.alive
                             and run.triton.startup_seconds is not None
                             and http_ok(f"{run.triton.http_url}/v2/health/ready", 1.0))
        elif run.router is not None:
            if not run.router.alive:  # restartPolicy Always: the kubelet starts it again
                log.info("router %s exited; restarting it", run.ip)
                run.router.start()
                run.restarts += 1
            run.ready = run.router.alive and http_ok(
                f"http://{run.ip}:{ROUTER_PORT}/healthz", 1.0)

    def _report(self, pod: Any, run: _Running) -> None:
        now = datetime.now(UTC).isoformat()
        state = "True" if run.ready else "False"
        status = {
            "phase": "Running", "hostIP": "127.0.0.1", "podIP": run.ip,
            "podIPs": [{"ip": run.ip}], "startTime": now,
            "conditions": [
                {"type": "PodScheduled", "status": "True"},
                {"type": "Initialized", "status": "True"},
                {"type": "ContainersReady", "status": state, "lastTransitionTime": now},
                {"type": "Ready", "status": state, "lastTransitionTime": now},
            ],
            "containerStatuses": [{
                "name": c.name, "image": c.image, "imageID": "", "ready": run.ready,
                "restartCount": run.restarts, "started": True,
                "state": {"running": {"startedAt": now}},
            } for c in pod.spec.containers],
        }
        self._api.patch_namespaced_pod_status(pod.metadata.name, pod.metadata.namespace,
                                              {"status": status})
        run.reported_ready = run.ready

    def _remove(self, pod: Any) -> None:
        run = self.running.pop(pod.metadata.uid, None)
        if run is not None:
            self._stop_process(run)
        with contextlib.suppress(client.ApiException):
            self._api.delete_namespaced_pod(pod.metadata.name, pod.metadata.namespace,
                                            grace_period_seconds=0)

    @staticmethod
    def _stop_process(run: _Running) -> None:
        if run.starter is not None:
            run.starter.join(timeout=60)
        if run.triton is not None:
            run.triton.stop(timeout_seconds=10)
        if run.router is not None:
            run.router.stop()


def wait_for_ips(runner: PodRunner, component: str, count: int, timeout_seconds: float) -> None:
    deadline = time.monotonic() + timeout_seconds
    while len(runner.ready_ips(component)) < count:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{count} ready {component} pods not running within "
                               f"{timeout_seconds:.0f} s")
        time.sleep(0.2)


def _pod_local_state(config_text: str, state_dir: Path) -> str:
    """The router configuration with its state file in this pod's own folder, as the
    pod's ``state`` emptyDir would hold it: a router process here never writes the host's
    path, and no pod sees another's (or an earlier run's) state."""
    try:
        config = json.loads(config_text)
    except ValueError:
        return config_text  # the router refuses it and says why
    prior = config.get("prior") if isinstance(config, dict) else None
    if isinstance(prior, dict) and prior.get("statePath"):
        state_dir.mkdir(parents=True, exist_ok=True)
        prior["statePath"] = str(state_dir / Path(str(prior["statePath"])).name)
    return json.dumps(config)


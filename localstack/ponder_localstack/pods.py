"""One pod's life on the local kubelet: volumes, init containers, container, probes, drain.

Test and demo infrastructure, driven by ``runner`` (which watches the API server and
reports what a ``PodWorker`` says). Each pod has its own thread, so a pod that drains
for its whole grace period holds up no other. In order, as the kubelet does:

1. its volumes (``volumes``);
2. init containers one at a time, each to completion; one that fails is run again with
   a growing back-off and the pod stays not Initialized (``Init:Error``, its log tail as
   the message);
3. the container, in its sandbox (``sandbox``, ``sandbox_init``), in a memory cgroup of
   its ``limits.memory`` where the machine lets the runner make one; started again when
   it exits or its liveness (or start-up) probe fails, counting ``restartCount``;
4. its probes as rendered (``probes``): start-up first, then readiness and liveness;
5. on deletion: the ``preStop`` exec hook inside the container's namespaces, SIGTERM,
   SIGKILL when the grace period (``deletionGracePeriodSeconds``) runs out, then the
   pod is deleted for good.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ponder_localstack.images import KUBECONFIG_MOUNT, image_for
from ponder_localstack.probes import ProbeState, probe_ok
from ponder_localstack.proc import Process, log_tail
from ponder_localstack.sandbox import (
    ContainerPlan,
    Image,
    PodContext,
    PodSpecError,
    plan_container,
    quantity_bytes,
)
from ponder_localstack.volumes import KUBECONFIG_VOLUME, PodVolumes

log = logging.getLogger(__name__)

TICK_SECONDS = 0.25
BACKOFF_SECONDS = (0.0, 10.0, 20.0, 40.0, 80.0, 160.0, 300.0)
_PACKAGE_ROOT = str(Path(__file__).resolve().parents[1])
_cgroup_warned = False


def memory_cgroup(name: str, limit_bytes: int) -> str:
    """The ``cgroup.procs`` of a new v1 memory cgroup under the runner's own, limited to
    ``limit_bytes``; "" (and a log line, once) where the machine does not allow it."""
    global _cgroup_warned
    try:
        line = next(x for x in Path("/proc/self/cgroup").read_text().splitlines()
                    if x.split(":")[1] == "memory")
        base = Path("/sys/fs/cgroup/memory") / line.split(":", 2)[2].lstrip("/")
        group = base / "ponder-pods" / name
        group.mkdir(parents=True, exist_ok=True)
        (group / "memory.limit_in_bytes").write_text(str(limit_bytes))
        return str(group / "cgroup.procs")
    except (OSError, StopIteration, IndexError) as exc:
        if not _cgroup_warned:
            log.warning("memory limits not enforced: no writable v1 memory cgroup (%s)", exc)
            _cgroup_warned = True
        return ""


def remove_cgroup(procs: str) -> None:
    if procs:
        with contextlib.suppress(OSError):
            Path(procs).parent.rmdir()


@dataclass
class ContainerState:
    """What the pod's status says about one container."""

    name: str
    image: str
    state: dict[str, Any] = field(default_factory=lambda: {"waiting": {
        "reason": "PodInitializing"}})
    last_state: dict[str, Any] = field(default_factory=dict)
    restarts: int = 0
    ready: bool = False
    started: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "image": self.image, "imageID": "", "ready": self.ready,
                "restartCount": self.restarts, "started": self.started,
                "state": self.state, "lastState": self.last_state}


@dataclass
class PodWorker:
    """One pod's processes and the status the runner reports for it."""

    pod: dict[str, Any]  # camelCase, as the API server serves it
    ip: str
    pod_dir: Path
    api: Any
    kubeconfig: Path
    on_gone: Callable[[PodWorker], None]
    component: str = ""
    ready: bool = False
    initialized: bool = False
    process: Process | None = None
    plan: ContainerPlan | None = None
    init_states: list[ContainerState] = field(default_factory=list)
    states: list[ContainerState] = field(default_factory=list)
    terminated_signals: list[str] = field(default_factory=list)
    """How each container process ended (``SIGTERM``, ``SIGKILL``, ``exit N``), in order."""
    _delete_grace_seconds: float | None = None
    _stopping: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _cgroups: list[str] = field(default_factory=list)
    volumes: PodVolumes = field(init=False)

    def __post_init__(self) -> None:
        self.volumes = PodVolumes(self.pod, self.pod_dir, self.api, self.kubeconfig,
                                  with_kubeconfig=self._is_router())
        spec = self.pod["spec"]
        self.init_states = [ContainerState(c["name"], c.get("image", ""))
                            for c in spec.get("initContainers") or ()]
        self.states = [ContainerState(c["name"], c.get("image", ""))
                       for c in spec["containers"]]

    @property
    def name(self) -> str:
        return f"{self.pod['metadata']['namespace']}/{self.pod['metadata']['name']}"

    @property
    def restarts(self) -> int:
        return self.states[0].restarts

    @property
    def router(self) -> Process | None:
        """The router container's process (fault-injection tests kill it)."""
        return self.process if self.component == "router" else None

    # -- life -----------------------------------------------------------------------------

    def start(self) -> PodWorker:
        self._thread = threading.Thread(target=self._run, name=f"pod-{self.name}", daemon=True)
        self._thread.start()
        return self

    def delete(self, grace_seconds: float) -> None:
        """The pod has a deletionTimestamp: drain it, then remove it (once)."""
        if self._delete_grace_seconds is None:
            self._delete_grace_seconds = grace_seconds
            self._stopping.set()

    def stop(self) -> None:
        """The runner stops: end the processes at once, remove nothing from the API."""
        self._delete_grace_seconds = 0.0
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def _run(self) -> None:
        try:
            self.volumes.prepare()
            if self._run_init_containers():
                self._run_container()
        except PodSpecError as exc:
            log.warning("pod %s cannot run: %s", self.name, exc)
            self.states[0].state = {"waiting": {"reason": "CreateContainerConfigError",
                                                "message": str(exc)}}
            self._stopping.wait()
        except Exception as exc:  # last-resort boundary: one pod's failure is its status
            log.exception("pod %s failed", self.name)
            self.states[0].state = {"waiting": {"reason": "RunContainerError",
                                                "message": repr(exc)}}
            self._stopping.wait()
        finally:
            self._terminate()

    def _is_router(self) -> bool:
        return self.component == "router"

    # -- containers -------------------------------------------------------------------------

    def _plan(self, container: dict[str, Any], image: Image) -> ContainerPlan:
        container = dict(container)
        limits = (container.get("resources") or {}).get("limits") or {}
        procs = ""
        if limits.get("memory"):
            procs = memory_cgroup(f"{self.pod['metadata']['uid']}-{container['name']}",
                                  quantity_bytes(limits["memory"]))
            if procs:
                self._cgroups.append(procs)
        pod = self.pod
        if self._is_router():  # the pod's identity on the API server (see ``images``)
            pod = {**pod, "spec": {**pod["spec"], "volumes": [
                *(pod["spec"].get("volumes") or ()),
                {"name": KUBECONFIG_VOLUME, "hostPath": {
                    "path": str(self.pod_dir / "kubeconfig")}}]}}
            container["volumeMounts"] = [*(container.get("volumeMounts") or ()), {
                "name": KUBECONFIG_VOLUME, "mountPath": KUBECONFIG_MOUNT, "readOnly": True}]
        ctx = PodContext(pod_ip=self.ip, pod_dir=self.pod_dir, volume_dirs=self.volumes.dirs(),
                         lookup=self.volumes.lookup_value, cgroup_procs=procs)
        return plan_container(pod, container, image, ctx)

    def _spawn(self, container: dict[str, Any], plan: ContainerPlan) -> Process:
        folder = self.pod_dir / "containers" / container["name"]
        folder.mkdir(parents=True, exist_ok=True)
        Path(plan.root).mkdir(parents=True, exist_ok=True)
        spec_path = folder / "plan.json"
        spec_path.write_text(json.dumps(plan.to_json()))
        return Process(f"{self.name}/{container['name']}",
                       [sys.executable, "-m", "ponder_localstack.sandbox_init", str(spec_path)],
                       folder / "log", env={"PYTHONPATH": _PACKAGE_ROOT}).start()

    def _run_init_containers(self) -> bool:
        for container, state in zip(self.pod["spec"].get("initContainers") or (),
                                    self.init_states, strict=True):
            attempt = 0
            while True:
                state.state = {"running": {"startedAt": _now()}}
                process = self._spawn(container, self._plan(container, image_for(
                    container.get("image", ""))))
                self.process = process
                while process.alive and not self._stopping.is_set():
                    time.sleep(TICK_SECONDS)
                if self._stopping.is_set():
                    return False
                code = process.popen.returncode if process.popen else -1
                ended = {"exitCode": code, "reason": "Completed" if code == 0 else "Error",
                         "message": log_tail(process.log_path, 20), "finishedAt": _now()}
                state.state = {"terminated": ended}
                if code == 0:
                    break
                state.last_state = {"terminated": ended}
                state.restarts += 1
                attempt += 1
                log.info("init container %s of %s failed (exit %s)", container["name"],
                         self.name, code)
                if self._stopping.wait(BACKOFF_SECONDS[min(attempt, len(BACKOFF_SECONDS) - 1)]):
                    return False
        self.initialized = True
        return True

    def _run_container(self) -> None:
        container = self.pod["spec"]["containers"][0]
        image = image_for(container.get("image", ""))
        state = self.states[0]
        self.plan = self._plan(container, image)
        attempt = 0
        while not self._stopping.is_set():
            started = time.monotonic()
            self.process = self._spawn(container, self.plan)
            state.state = {"running": {"startedAt": _now()}}
            reason = self._watch(container, self.process, state, started)
            if self._stopping.is_set():
                return
            self.ready = state.ready = state.started = False
            self._end(self.process, 0.0 if reason == "exited" else _grace(self.pod))
            code = self.process.popen.returncode if self.process.popen else -1
            state.last_state = {"terminated": {"exitCode": code, "reason": reason,
                                               "finishedAt": _now()}}
            state.restarts += 1
            attempt = 0 if time.monotonic() - started > 600 else attempt + 1
            log.info("container %s of %s restarts (%s)", container["name"], self.name, reason)
            state.state = {"waiting": {"reason": "CrashLoopBackOff" if attempt > 1 else reason}}
            if self._stopping.wait(BACKOFF_SECONDS[min(attempt - 1, len(BACKOFF_SECONDS) - 1)]):
                return

    def _watch(self, container: Mapping[str, Any], process: Process, state: ContainerState,
               started: float) -> str:
        """Probe until the process exits or a probe says restart; return why it ended."""
        probes = {kind: ProbeState(container[kind], started) for kind in
                  ("startupProbe", "readinessProbe", "livenessProbe") if container.get(kind)}
        state.started = "startupProbe" not in probes
        while not self._stopping.is_set():
            if not process.alive:
                return "exited"
            now = time.monotonic()
            for kind, probe in probes.items():
                if (kind == "startupProbe") == state.started or not probe.due(now):
                    continue
                probe.record(probe_ok(probe.probe, container, self.ip), now)
                if kind == "startupProbe" and probe.passed:
                    state.started = True
                    for other in probes.values():
                        other.next_at = max(other.next_at, now)
                elif kind != "readinessProbe" and probe.failed:
                    return "LivenessProbeFailed" if kind == "livenessProbe" else \
                        "StartupProbeFailed"
            readiness = probes.get("readinessProbe")
            state.ready = state.started and (readiness is None or readiness.passed)
            self.ready = state.ready
            time.sleep(TICK_SECONDS)
        return "deleted"

    def _end(self, process: Process, grace_seconds: float) -> None:
        """SIGTERM the container, SIGKILL it once ``grace_seconds`` have passed."""
        if process.popen is None or process.popen.poll() is not None:
            self._record_end(process)
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.popen.pid, signal.SIGTERM)
        try:
            process.popen.wait(timeout=max(grace_seconds, 0.0))
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.popen.pid, signal.SIGKILL)
            process.popen.wait(timeout=30)
        self._record_end(process)

    def _record_end(self, process: Process) -> None:
        code = process.popen.returncode if process.popen else None
        if code is not None:
            self.terminated_signals.append(
                signal.Signals(-code).name if code < 0 else f"exit {code}")

    def exec_argv(self, command: list[str]) -> list[str]:
        """The host argv that runs ``command`` inside the running container (its user,
        namespaces, root and environment), as ``kubectl exec`` does."""
        container = self.pod["spec"]["containers"][0]
        process = self.process
        if self.plan is None or process is None or process.popen is None or not process.alive:
            raise PodSpecError(f"the container of {self.name} is not running")
        _wait_for_exec(process.popen.pid)
        image = image_for(container.get("image", ""))
        argv = [*image.commands.get(command[0], (command[0],)), *command[1:]]
        spec = {**self.plan.to_json(), "argv": argv, "joinPid": process.popen.pid}
        folder = self.pod_dir / "containers" / container["name"]
        path = folder / f"exec-{time.monotonic_ns()}.json"
        path.write_text(json.dumps(spec))
        return [sys.executable, "-m", "ponder_localstack.sandbox_init", str(path)]

    def exec(self, command: list[str],
             timeout_seconds: float = 30) -> subprocess.CompletedProcess[str]:
        """Run ``command`` in the container; its exit status and output."""
        return subprocess.run(self.exec_argv(command), capture_output=True, text=True,
                              timeout=timeout_seconds, env={"PYTHONPATH": _PACKAGE_ROOT},
                              check=False)

    def _pre_stop(self, grace_seconds: float) -> float:
        """Run the preStop exec hook in the container's namespaces; seconds it took."""
        container = self.pod["spec"]["containers"][0]
        hook = ((container.get("lifecycle") or {}).get("preStop") or {}).get("exec")
        if not hook:
            return 0.0
        started = time.monotonic()
        try:
            hook_process = Process(f"{self.name}/preStop", self.exec_argv(list(hook["command"])),
                                   self.pod_dir / "prestop.log",
                                   env={"PYTHONPATH": _PACKAGE_ROOT}).start()
        except PodSpecError:
            return 0.0
        assert hook_process.popen is not None
        try:
            hook_process.popen.wait(timeout=grace_seconds)
        except subprocess.TimeoutExpired:
            hook_process.kill()
        return time.monotonic() - started

    def _terminate(self) -> None:
        grace = self._delete_grace_seconds or 0.0
        self.ready = False
        process = self.process
        if process is not None and process.alive:
            spent = self._pre_stop(grace) if grace > 0 else 0.0
            # the kubelet gives a hook that used up the grace period 2 s more
            self._end(process, max(grace - spent, 2.0 if grace > 0 else 0.0))
        for procs in self._cgroups:
            remove_cgroup(procs)
        self.on_gone(self)


def _wait_for_exec(pid: int, timeout_seconds: float = 10.0) -> None:
    """Wait until ``sandbox_init`` (pid) has exec'd the container's command, so that its
    namespaces and root are the container's."""
    deadline = time.monotonic() + timeout_seconds
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            if b"sandbox_init" not in Path(f"/proc/{pid}/cmdline").read_bytes():
                return
        time.sleep(0.05)
    raise PodSpecError(f"process {pid} never started its container")


def _grace(pod: Mapping[str, Any]) -> float:
    return float(pod["spec"].get("terminationGracePeriodSeconds") or 30)


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())

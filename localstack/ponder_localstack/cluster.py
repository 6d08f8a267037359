"""A real Kubernetes control plane on loopback, with KWOK simulating GPU nodes.

Starts, in order and each with a health check: etcd, kube-apiserver (RBAC on, client-cert
auth, ``--endpoint-reconciler-type=none`` because Endpoints reject loopback addresses),
kube-controller-manager, kube-scheduler and KWOK. GPU nodes are ordinary Node objects that
KWOK manages: ``nvidia.com/gpu`` capacity, an ``nvidia.com/gpu.product`` label and the
``nvidia.com/gpu=present:NoSchedule`` taint that GPU node pools carry; the API server's
``ExtendedResourceToleration`` admission plugin adds the matching toleration to pods that
request GPUs (``start_extra_apiserver`` serves the same etcd without it, as AKS and
self-managed clusters often run). KWOK hands out pod IPs from a loopback range, so an
address that leaks into a client can only ever reach this machine.
"""

from __future__ import annotations

import json
import logging
import os
import ssl
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ponder_localstack import pki as pki_mod
from ponder_localstack.paths import bin_dir, go_tool
from ponder_localstack.proc import LOOPBACK, Process, free_port, http_ok

log = logging.getLogger(__name__)

KWOK_NODE_ANNOTATION = "kwok.x-k8s.io/node"
GPU_RESOURCE = "nvidia.com/gpu"
GPU_PRODUCT_LABEL = "nvidia.com/gpu.product"
DEFAULT_GPU_PRODUCT = "NVIDIA-H100-80GB-HBM3"
POD_CIDR = "127.64.0.1/16"
SERVICE_CIDR = "10.96.0.0/16"
_KWOK_STAGES = ("node/fast", "node/heartbeat-with-lease", "pod/fast")


class ToolError(RuntimeError):
    """kubectl or helm failed; the message carries its stderr."""


@dataclass(frozen=True)
class NodeSpec:
    """A fake node: GPUs (0 for a CPU node), product label, CPU, memory and local disk."""

    name: str
    gpus: int = 8
    gpu_product: str = DEFAULT_GPU_PRODUCT
    cpu: str = "96"
    memory: str = "1Ti"
    ephemeral_storage: str = "2Ti"
    pods: int = 110


def node_manifest(node: NodeSpec) -> dict[str, object]:
    capacity: dict[str, str] = {"cpu": node.cpu, "memory": node.memory, "pods": str(node.pods),
                                "ephemeral-storage": node.ephemeral_storage}
    labels = {"type": "kwok", "kubernetes.io/hostname": node.name, "kubernetes.io/os": "linux"}
    taints: list[dict[str, str]] = []
    if node.gpus:
        capacity[GPU_RESOURCE] = str(node.gpus)
        labels[GPU_PRODUCT_LABEL] = node.gpu_product
        labels["nvidia.com/gpu.count"] = str(node.gpus)
        taints.append({"key": GPU_RESOURCE, "value": "present", "effect": "NoSchedule"})
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": node.name,
            "annotations": {KWOK_NODE_ANNOTATION: "fake", "node.alpha.kubernetes.io/ttl": "0"},
            "labels": labels,
        },
        "spec": {"taints": taints},
        "status": {"capacity": capacity, "allocatable": capacity},
    }


@dataclass
class Cluster:
    """The control plane's processes, their state directory and an admin kubeconfig."""

    state_dir: Path
    controller_qps: int = 50  # client QPS of controller-manager and scheduler
    # How long a fake node may miss its lease renewal before it and its pods turn NotReady.
    node_monitor_grace: str = "5m"
    # Pods whose label has one of these values are left to the local runner, not KWOK.
    runner_selector: tuple[str, tuple[str, ...]] | None = None
    processes: list[Process] = field(default_factory=list)
    startup_seconds: dict[str, float] = field(default_factory=dict)
    apiserver_port: int = 0
    _apiserver_args: tuple[pki_mod.Pki, str] | None = field(default=None, repr=False)

    @property
    def kubeconfig(self) -> Path:
        return self.state_dir / "kubeconfig"

    @property
    def logs_dir(self) -> Path:
        return self.state_dir / "logs"

    @property
    def server(self) -> str:
        return f"https://{LOOPBACK}:{self.apiserver_port}"

    def env(self) -> dict[str, str]:
        """Environment for kubectl, helm and clients: KUBECONFIG and the tools on PATH."""
        return {
            "KUBECONFIG": str(self.kubeconfig),
            "PATH": f"{bin_dir()}{os.pathsep}{os.environ.get('PATH', '')}",
            "HELM_CACHE_HOME": str(self.state_dir / "helm" / "cache"),
            "HELM_CONFIG_HOME": str(self.state_dir / "helm" / "config"),
            "HELM_DATA_HOME": str(self.state_dir / "helm" / "data"),
        }

    # -- start / stop ---------------------------------------------------------------------

    def start(self, nodes: Sequence[NodeSpec] = ()) -> Cluster:
        """Start every component in order; on any failure stop what was started."""
        try:
            pki = pki_mod.generate(self.state_dir / "pki")
            etcd_url = self._start_etcd()
            self._apiserver_args = (pki, etcd_url)
            self._start_apiserver(pki, etcd_url)
            self._write_kubeconfig(pki)
            self._start_controller_manager(pki)
            self._start_scheduler()
            self._start_kwok()
            self._wait_for_default_namespace()
            if nodes:
                self.add_nodes(nodes)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for process in reversed(self.processes):
            process.stop()
        self.processes.clear()

    def restart_apiserver(self, down_seconds: float = 0.0) -> None:
        """Stop kube-apiserver, wait ``down_seconds``, start it again on the same port.

        Fault-injection tests use it: clients' watches break and must resume; etcd, and
        so every object, stays.
        """
        if self._apiserver_args is None:
            raise RuntimeError("the cluster was not started")
        old = next(p for p in self.processes if p.name == "kube-apiserver")
        old.stop()
        self.processes.remove(old)
        time.sleep(down_seconds)
        self._start_apiserver(*self._apiserver_args, port=self.apiserver_port)

    def _spawn(self, name: str, argv: Sequence[str]) -> Process:
        process = Process(name, argv, self.logs_dir / f"{name}.log").start()
        self.processes.append(process)
        return process

    def _timed_wait(self, process: Process, check: object, timeout_seconds: float) -> None:
        self.startup_seconds[process.name] = process.wait_until(
            check, timeout_seconds  # type: ignore[arg-type]
        )
        log.info("%s healthy in %.1f s", process.name, self.startup_seconds[process.name])

    def _start_etcd(self) -> str:
        client, peer = free_port(), free_port()
        url, peer_url = f"http://{LOOPBACK}:{client}", f"http://{LOOPBACK}:{peer}"
        etcd = self._spawn("etcd", [
            str(go_tool("etcd")),
            "--name=default",
            f"--data-dir={self.state_dir / 'etcd'}",
            f"--listen-client-urls={url}", f"--advertise-client-urls={url}",
            f"--listen-peer-urls={peer_url}", f"--initial-advertise-peer-urls={peer_url}",
            f"--initial-cluster=default={peer_url}",
            "--unsafe-no-fsync", "--log-level=warn",
        ])
        self._timed_wait(etcd, lambda: http_ok(f"{url}/health"), 60)
        return url

    def _start_apiserver(self, pki: pki_mod.Pki, etcd_url: str, port: int | None = None) -> None:
        self.apiserver_port = port or free_port()
        self._spawn_apiserver("kube-apiserver", pki, etcd_url, self.apiserver_port,
                              admission_plugins=("ExtendedResourceToleration",))

    def start_extra_apiserver(self, name: str, admission_plugins: Sequence[str]) -> Path:
        """Another kube-apiserver on the same etcd, enabling only ``admission_plugins`` beyond
        the defaults; returns a kubeconfig for it. It stops with the cluster."""
        if self._apiserver_args is None:
            raise RuntimeError("the cluster was not started")
        pki, etcd_url = self._apiserver_args
        port = free_port()
        self._spawn_apiserver(name, pki, etcd_url, port, admission_plugins=admission_plugins)
        kubeconfig = self.state_dir / f"kubeconfig-{name}"
        self._write_kubeconfig(pki, kubeconfig, f"https://{LOOPBACK}:{port}")
        return kubeconfig

    def _spawn_apiserver(
        self, name: str, pki: pki_mod.Pki, etcd_url: str, port: int,
        admission_plugins: Sequence[str],
    ) -> None:
        apiserver = self._spawn(name, [
            str(go_tool("kube-apiserver")),
            f"--etcd-servers={etcd_url}",
            f"--bind-address={LOOPBACK}", f"--advertise-address={LOOPBACK}",
            f"--secure-port={port}",
            "--endpoint-reconciler-type=none",
            f"--cert-dir={self.state_dir / 'apiserver-certs'}",
            f"--tls-cert-file={pki.serving_cert}", f"--tls-private-key-file={pki.serving_key}",
            f"--client-ca-file={pki.ca_cert}",
            f"--service-account-key-file={pki.sa_public_key}",
            f"--service-account-signing-key-file={pki.sa_private_key}",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            "--authorization-mode=RBAC",
            *([f"--enable-admission-plugins={','.join(admission_plugins)}"]
              if admission_plugins else []),
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--allow-privileged=true", "--profiling=false",
        ])
        context = ssl.create_default_context(cafile=str(pki.ca_cert))
        context.load_cert_chain(str(pki.admin_cert), str(pki.admin_key))
        self._timed_wait(
            apiserver, lambda: http_ok(f"https://{LOOPBACK}:{port}/readyz", context=context), 120
        )

    def _write_kubeconfig(
        self, pki: pki_mod.Pki, path: Path | None = None, server: str | None = None
    ) -> None:
        path = path or self.kubeconfig
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "ponder-local", "cluster": {
                "server": server or self.server, "certificate-authority": str(pki.ca_cert)}}],
            "users": [{"name": "admin", "user": {
                "client-certificate": str(pki.admin_cert), "client-key": str(pki.admin_key)}}],
            "contexts": [{"name": "ponder-local", "context": {
                "cluster": "ponder-local", "user": "admin"}}],
            "current-context": "ponder-local",
        }
        path.write_text(yaml.safe_dump(config))
        path.chmod(0o600)

    def _control_plane_flags(self) -> list[str]:
        kc = str(self.kubeconfig)
        return [
            f"--kubeconfig={kc}", f"--authentication-kubeconfig={kc}",
            f"--authorization-kubeconfig={kc}",
            f"--bind-address={LOOPBACK}", "--leader-elect=false",
            f"--kube-api-qps={self.controller_qps}",
            f"--kube-api-burst={2 * self.controller_qps}",
        ]

    def _start_controller_manager(self, pki: pki_mod.Pki) -> None:
        port = free_port()
        kcm = self._spawn("kube-controller-manager", [
            str(go_tool("kube-controller-manager")), *self._control_plane_flags(),
            f"--secure-port={port}",
            f"--service-account-private-key-file={pki.sa_private_key}",
            f"--root-ca-file={pki.ca_cert}",
            "--use-service-account-credentials=true",
            # Endpoints and EndpointSlices reject the loopback pod IPs: nothing would sync.
            "--controllers=*,-endpoints-controller,-endpointslice-controller,"
            "-endpointslice-mirroring-controller",
            # KWOK renews the fake nodes' leases; on a loaded two-core machine a renewal can be
            # late, and a node marked NotReady would flip every pod on it to NotReady.
            f"--node-monitor-grace-period={self.node_monitor_grace}",
            f"--cluster-signing-cert-file={pki.ca_cert}",
            f"--cluster-signing-key-file={pki.ca_key}",
        ])
        insecure = ssl._create_unverified_context()  # self-signed serving cert, loopback only
        self._timed_wait(kcm, lambda: http_ok(f"https://{LOOPBACK}:{port}/healthz",
                                              context=insecure), 60)

    def _start_scheduler(self) -> None:
        port = free_port()
        scheduler = self._spawn("kube-scheduler", [
            str(go_tool("kube-scheduler")), *self._control_plane_flags(),
            f"--secure-port={port}",
        ])
        insecure = ssl._create_unverified_context()  # self-signed serving cert, loopback only
        self._timed_wait(scheduler, lambda: http_ok(f"https://{LOOPBACK}:{port}/healthz",
                                                    context=insecure), 60)

    def _start_kwok(self) -> None:
        stages_dir = bin_dir() / "kwok-stages"
        stages: list[dict[str, Any]] = []
        for stage_dir in _KWOK_STAGES:
            for path in sorted((stages_dir / stage_dir).glob("*.yaml")):
                if path.name != "kustomization.yaml":
                    stages.append(yaml.safe_load(path.read_text()))
        if self.runner_selector is not None:
            label, values = self.runner_selector
            for stage in stages:
                if stage["spec"]["resourceRef"]["kind"] == "Pod":
                    stage["spec"]["selector"]["matchExpressions"].append(
                        {"key": f'.metadata.labels["{label}"]', "operator": "NotIn",
                         "values": list(values)})
        config = self.state_dir / "kwok-stages.yaml"
        config.write_text(yaml.safe_dump_all(stages))
        kwok = self._spawn("kwok", [
            str(go_tool("kwok")),
            f"--kubeconfig={self.kubeconfig}",
            "--manage-all-nodes=false",
            f"--manage-nodes-with-annotation-selector={KWOK_NODE_ANNOTATION}=fake",
            f"--cidr={POD_CIDR}", f"--node-ip={LOOPBACK}",
            f"--config={config}",
        ])
        # KWOK has no health endpoint of its own; it is healthy once it manages a node.
        probe = NodeSpec(name="kwok-probe", gpus=0)
        self.kubectl_apply([node_manifest(probe)])
        self._timed_wait(kwok, lambda: self._node_ready(probe.name), 60)
        self.kubectl("delete", "node", probe.name, "--wait=false")

    def _wait_for_default_namespace(self) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            out = self.kubectl("get", "serviceaccount", "default", "-n", "default",
                               "--ignore-not-found", "-o", "name", check=False)
            if out.strip():
                return
            time.sleep(0.2)
        raise TimeoutError("the default ServiceAccount never appeared (controller-manager?)")

    # -- nodes ----------------------------------------------------------------------------

    def add_nodes(self, nodes: Sequence[NodeSpec], timeout_seconds: float = 60) -> None:
        """Create fake nodes and wait until KWOK reports each Ready."""
        self.kubectl_apply([node_manifest(n) for n in nodes])
        deadline = time.monotonic() + timeout_seconds
        pending = [n.name for n in nodes]
        while pending and time.monotonic() < deadline:
            pending = [n for n in pending if not self._node_ready(n)]
            if pending:
                time.sleep(0.2)
        if pending:
            raise TimeoutError(f"nodes not Ready after {timeout_seconds} s: {pending}")

    def _node_ready(self, name: str) -> bool:
        out = self.kubectl("get", "node", name, "-o", "json", check=False)
        if not out:
            return False
        conditions = json.loads(out).get("status", {}).get("conditions", [])
        return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)

    # -- tools ----------------------------------------------------------------------------

    def run_tool(
        self, tool: str, *args: str, input_text: str | None = None, check: bool = True,
        extra_env: Mapping[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, **self.env(), **(extra_env or {})}
        result = subprocess.run(
            [str(go_tool(tool)), *args], input=input_text, capture_output=True, text=True,
            env=env, timeout=300, check=False,
        )
        if check and result.returncode != 0:
            raise ToolError(f"{tool} {' '.join(args)} exited {result.returncode}: "
                            f"{result.stderr.strip()}")
        return result

    def kubectl(self, *args: str, input_text: str | None = None, check: bool = True) -> str:
        result = self.run_tool("kubectl", *args, input_text=input_text, check=check)
        return result.stdout if result.returncode == 0 else ""

    def kubectl_apply(self, objects: Sequence[Mapping[str, object]]) -> str:
        return self.kubectl("apply", "-f", "-", input_text=yaml.safe_dump_all(objects))

    def service_account_kubeconfig(
        self, name: str, namespace: str, path: Path, duration: str = "1h"
    ) -> Path:
        """A kubeconfig that authenticates as a ServiceAccount (a bound token)."""
        token = self.kubectl("create", "token", name, "-n", namespace,
                             "--duration", duration).strip()
        admin = yaml.safe_load(self.kubeconfig.read_text())
        path.write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config",
            "clusters": [{"name": "local", "cluster": admin["clusters"][0]["cluster"]}],
            "users": [{"name": name, "user": {"token": token}}],
            "contexts": [{"name": name, "context": {"cluster": "local", "user": name}}],
            "current-context": name,
        }))
        path.chmod(0o600)
        return path

    def helm(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.run_tool("helm", *args, check=check)

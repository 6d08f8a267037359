"""The local kubelet runs a rendered Triton pod as the pod says, so a rendering mistake shows.

A cluster of its own whose Triton-labelled pods the ``PodRunner`` runs (KWOK leaves them
alone). The Triton pod is what the operator renders for ``examples/demo.yaml``, its model
repository the stand-in's ConfigMap laid out by ``items``. What the tests look at is what
the container's process sees (``PodWorker.exec``, as ``kubectl exec``) and what the pod's
status says: its user, a read-only root with a writable HOME and /tmp, ``/dev/shm`` at
its ``sizeLimit`` (64 MiB when nothing mounts there), its args and environment, its
memory cgroup, SIGTERM then SIGKILL after the grace period, and pods that a bad rendering
leaves not Ready (a failing ``check-model`` init container, a failing liveness probe).
Issue 20's rows, each reproduced on the rendering it names: the python backend's
shared-memory pool at the model's concurrency (row 1), a read-only HOME (row 2), the
model check (row 3), the memory limit (row 5), a GCS key as a file (row 7) and a liveness
probe that follows the model's readiness (row 10).
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from components import LOG_FILES, require
from ponder_localstack.cluster import Cluster, NodeSpec
from ponder_localstack.images import triton_image
from ponder_localstack.pods import PodWorker
from ponder_localstack.runner import PodRunner
from ponder_localstack.sandbox import DEFAULT_SHM_BYTES
from ponder_localstack.triton import SimModelOptions, repository_configmap
from ponder_operator.api.spec import parse_spec
from ponder_operator.render import (
    GCS_CREDENTIALS_KEY,
    TRITON_HTTP_PORT,
    Owner,
    quantity_bytes,
    render_triton_deployment,
    triton_memory,
)

pytestmark = [pytest.mark.cluster, pytest.mark.triton]

REPO = Path(__file__).resolve().parents[2]
DEMO = yaml.safe_load((REPO / "examples" / "demo.yaml").read_text())
NAMESPACE = "default"
OWNER = Owner(name="math", namespace=NAMESPACE, uid="0000-2222")
SPEC = parse_spec(DEMO["spec"])
TRITON_IMAGE = SPEC.model.image


@pytest.fixture(scope="module")
def kubelet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Cluster, PodRunner]]:
    state = tmp_path_factory.mktemp("kubelet")
    cluster = Cluster(state / "cluster",
                      runner_selector=("ponder.dev/component", ("triton", "router")))
    LOG_FILES.extend(cluster.logs_dir / f"{n}.log" for n in ("kube-apiserver", "kwok"))
    require(lambda: cluster.start(nodes=(NodeSpec("gpu-h100-0", gpus=4),)))
    runner = PodRunner(cluster, state / "pods", poll_seconds=0.25).start()
    configmap, _ = repository_configmap("sim-llm", [SimModelOptions()])
    cluster.kubectl("apply", "-n", NAMESPACE, "-f", "-", input_text=yaml.safe_dump(configmap))
    try:
        yield cluster, runner
    finally:
        runner.stop()
        cluster.stop()


def create(cluster: Cluster, pod: dict[str, Any]) -> None:
    cluster.kubectl("create", "-n", NAMESPACE, "-f", "-", input_text=json.dumps(pod))


def eventually(check: Callable[[], Any], timeout_seconds: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_seconds
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.25)
    raise AssertionError(f"not within {timeout_seconds:.0f} s: {what}")


def status(cluster: Cluster, name: str) -> dict[str, Any]:
    out = cluster.kubectl("get", "pod", name, "-n", NAMESPACE, "-o", "json")
    found: dict[str, Any] = json.loads(out).get("status", {})
    return found


def is_ready(cluster: Cluster, name: str) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True"
               for c in status(cluster, name).get("conditions", []))


def triton_pod(name: str) -> dict[str, Any]:
    """A pod from the Triton Deployment the operator renders for examples/demo.yaml."""
    template = render_triton_deployment(OWNER, SPEC)["spec"]["template"]
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {**copy.deepcopy(template["metadata"]), "name": name},
            "spec": copy.deepcopy(template["spec"])}


def bare_pod(name: str, command: list[str], **spec: Any) -> dict[str, Any]:
    """A pod the runner runs (Triton-labelled) whose container runs ``command``."""
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "labels": {"ponder.dev/component": "triton"}},
            "spec": {"containers": [{"name": "main", "image": TRITON_IMAGE,
                                     "command": command,
                                     "securityContext": {"runAsUser": 1000}}],
                     "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists"}], **spec}}


def running_worker(runner: PodRunner, name: str, timeout_seconds: float = 60) -> PodWorker:
    def started() -> PodWorker | None:
        worker = runner.worker(NAMESPACE, name)
        return worker if worker is not None and worker.plan is not None \
            and worker.process is not None and worker.process.alive else None
    found: PodWorker = eventually(started, timeout_seconds, f"pod {name} running")
    return found


def shell(worker: PodWorker, script: str) -> tuple[int, str]:
    done = worker.exec(["/bin/sh", "-c", script])
    return done.returncode, done.stdout + done.stderr


@pytest.fixture(scope="module")
def triton(kubelet: tuple[Cluster, PodRunner]) -> PodWorker:
    """The rendered Triton pod, Ready."""
    cluster, runner = kubelet
    create(cluster, triton_pod("triton-0"))
    eventually(lambda: is_ready(cluster, "triton-0"), 180, "the rendered Triton pod Ready")
    return running_worker(runner, "triton-0")


def test_the_rendered_triton_pod_becomes_ready_after_its_model_check(
    kubelet: tuple[Cluster, PodRunner], triton: PodWorker
) -> None:
    cluster, _ = kubelet
    (init,) = status(cluster, "triton-0")["initContainerStatuses"]
    assert init["name"] == "check-model"
    assert init["state"]["terminated"]["exitCode"] == 0
    assert "configuration fits 1 GPU(s)" in init["state"]["terminated"]["message"]
    assert triton.ready


def test_the_triton_container_runs_as_its_user_under_a_read_only_root(
    triton: PodWorker
) -> None:
    code, out = shell(triton, "id -u; id -g; grep NoNewPrivs /proc/self/status")
    assert (code, out.split()) == (0, ["1000", "1000", "NoNewPrivs:", "1"])
    code, out = shell(triton, "touch /written-to-root")
    assert code != 0
    assert "Read-only file system" in out
    code, out = shell(triton, 'touch "$HOME/.cache-probe" /tmp/probe && echo "$HOME"')
    assert (code, out.strip()) == (0, "/home/triton")


def test_dev_shm_has_the_rendered_size_limit(triton: PodWorker) -> None:
    code, out = shell(triton, "df -B1 --output=size /dev/shm | tail -1")
    assert code == 0
    assert int(out) == quantity_bytes(SPEC.resources.shared_memory_per_replica)


def test_the_python_backend_holds_the_models_concurrent_requests_past_64_mib_of_shm(
    triton: PodWorker
) -> None:
    """Issue 20, row 1: Triton's python backend (which the vLLM backend is) copies every
    request's inputs into its shared-memory pool under /dev/shm and keeps them until the
    request ends. At the model's concurrency, inputs of 12 MiB each pass the 64 MiB a pod
    gets without a /dev/shm volume: there the pool cannot grow and requests fail. The bytes
    ride in a stop string, not the prompt, only because the stand-in scans MATH-500 for
    every prompt (seconds at this size); the pool holds every input alike."""
    concurrency = SimModelOptions().max_concurrency
    input_bytes = 12 * 1024**2
    assert concurrency * input_bytes > DEFAULT_SHM_BYTES
    body = {"text_input": "What is 1 + 1?", "exclude_input_in_output": True,
            "sampling_parameters": json.dumps({
                "max_tokens": 50, "ponder_token_latency_ms": 40,
                "stop": ["x" * input_bytes]})}
    url = (f"http://{triton.ip}:{TRITON_HTTP_PORT}"
           f"/v2/models/{SPEC.model.served_triton_model_name}/generate")
    with ThreadPoolExecutor(concurrency) as pool:
        answers = list(pool.map(lambda _: httpx.post(url, json=body, timeout=60),
                                range(concurrency)))
    assert [a.text for a in answers if a.status_code != 200] == []
    assert all(a.json()["text_output"] for a in answers)


def test_the_process_has_the_rendered_args_and_exactly_the_rendered_env(
    triton: PodWorker
) -> None:
    container = triton_pod("x")["spec"]["containers"][0]
    assert triton.process is not None
    assert triton.process.popen is not None
    proc = Path(f"/proc/{triton.process.popen.pid}")
    argv = proc.joinpath("cmdline").read_text().split("\0")[:-1]
    assert container["args"][0] == "tritonserver"
    assert argv == [*triton_image().commands["tritonserver"], *container["args"][1:],
                    *(f"--{kind}-address={triton.ip}" for kind in ("http", "grpc", "metrics"))]
    environ = dict(line.split("=", 1)
                   for line in proc.joinpath("environ").read_text().split("\0") if line)
    rendered_env = {e["name"]: e["value"] for e in container["env"]}
    assert set(environ) == {*rendered_env, "PATH"}  # PATH: the image's
    assert {k: environ[k] for k in rendered_env} == rendered_env


def test_the_memory_limit_is_the_rendered_one_where_the_machine_allows(
    triton: PodWorker
) -> None:
    assert triton.process is not None
    assert triton.process.popen is not None
    line = next(x for x in Path(f"/proc/{triton.process.popen.pid}/cgroup").read_text()
                .splitlines() if x.split(":")[1] == "memory")
    if not Path("/sys/fs/cgroup/memory").is_dir():
        pytest.skip("no cgroup v1 memory controller on this machine")
    group = Path("/sys/fs/cgroup/memory") / line.split(":", 2)[2].lstrip("/")
    assert "ponder-pods" in str(group)
    limit = int(group.joinpath("memory.limit_in_bytes").read_text())
    assert limit == quantity_bytes(triton_memory(SPEC))


def test_a_pod_that_mounts_nothing_on_dev_shm_gets_the_runtimes_64_mib(
    kubelet: tuple[Cluster, PodRunner]
) -> None:
    cluster, runner = kubelet
    create(cluster, bare_pod("no-shm", ["sleep", "3600"]))
    worker = running_worker(runner, "no-shm")
    code, out = shell(worker, "df -B1 --output=size /dev/shm | tail -1")
    assert (code, int(out)) == (0, DEFAULT_SHM_BYTES)
    cluster.kubectl("delete", "pod", "no-shm", "-n", NAMESPACE, "--wait=false")


def test_the_stand_in_writes_its_engine_cache_under_the_rendered_home(
    triton: PodWorker
) -> None:
    cache = triton.pod_dir / "volumes" / "home" / ".cache" / "vllm" / "ponder-sim-llm"
    assert json.loads((cache / "engine.json").read_text()) == {"model": "ponder-sim-llm"}


def test_a_triton_pod_without_a_writable_home_never_becomes_ready(
    kubelet: tuple[Cluster, PodRunner]
) -> None:
    """What vLLM, torch and Hugging Face would hit at start-up (issue 20, row 2): the
    stand-in, like vLLM, writes its cache under HOME when it loads."""
    cluster, runner = kubelet
    pod = triton_pod("no-home")
    container = pod["spec"]["containers"][0]
    container["volumeMounts"] = [m for m in container["volumeMounts"] if m["name"] != "home"]
    pod["spec"]["volumes"] = [v for v in pod["spec"]["volumes"] if v["name"] != "home"]
    create(cluster, pod)
    worker = running_worker(runner, "no-home")
    code, out = shell(worker, 'mkdir -p "$HOME/.cache"')
    assert code != 0
    assert "Read-only file system" in out
    log_path = worker.process.log_path if worker.process else Path()
    eventually(lambda: "Read-only file system" in log_path.read_text(), 60,
               "the model's load failing on the read-only HOME")
    assert not is_ready(cluster, "no-home")
    assert not worker.ready
    cluster.kubectl("delete", "pod", "no-home", "-n", NAMESPACE, "--wait=false")


def test_a_pod_whose_model_is_unloaded_is_restarted_by_its_liveness_probe(
    kubelet: tuple[Cluster, PodRunner]
) -> None:
    """Issue 20, row 10: the vLLM backend's health check unloads a model whose engine died;
    Triton's own /v2/health/live still answers 200 then, so only a liveness probe on the
    model's readiness restarts the pod. The rendered probe, polled every second here (its
    path and port as rendered), so that the restart comes within seconds."""
    cluster, runner = kubelet
    pod = triton_pod("unloaded")
    pod["spec"]["containers"][0]["livenessProbe"].update(periodSeconds=1, failureThreshold=2)
    create(cluster, pod)
    eventually(lambda: is_ready(cluster, "unloaded"), 120, "the Triton pod Ready")
    worker = running_worker(runner, "unloaded")
    model = SPEC.model.served_triton_model_name
    httpx.post(f"http://{worker.ip}:{TRITON_HTTP_PORT}/v2/repository/models/{model}/unload",
               timeout=30).raise_for_status()

    def restarted() -> bool:
        statuses = status(cluster, "unloaded").get("containerStatuses") or [{}]
        return int(statuses[0].get("restartCount", 0)) >= 1
    eventually(restarted, 30, "the container restarted after failed liveness probes")
    (container,) = status(cluster, "unloaded")["containerStatuses"]
    assert container["lastState"]["terminated"]["reason"] == "LivenessProbeFailed"
    cluster.kubectl("delete", "pod", "unloaded", "-n", NAMESPACE, "--wait=false")


def test_a_gcs_key_reaches_the_triton_container_as_the_file_its_variable_names(
    kubelet: tuple[Cluster, PodRunner]
) -> None:
    """Issue 20, row 7: Triton's GCS client reads GOOGLE_APPLICATION_CREDENTIALS as a path.
    No bucket is reachable from here, so the rendered container runs ``sleep`` in place of
    ``tritonserver``; what it is given (environment, volumes, user) is as rendered."""
    cluster, runner = kubelet
    key = json.dumps({"type": "service_account", "client_email": "triton@example.com"})
    cluster.kubectl("create", "secret", "generic", "gcs-key", "-n", NAMESPACE,
                    f"--from-literal={GCS_CREDENTIALS_KEY}={key}")
    spec = parse_spec({**DEMO["spec"], "model": {**DEMO["spec"]["model"], "repository": {
        "uri": {"uri": "gs://bucket/models", "credentialsSecret": "gcs-key"}}}})
    template = render_triton_deployment(OWNER, spec)["spec"]["template"]
    container = template["spec"]["containers"][0]
    container["args"] = ["sleep", "3600"]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        container.pop(probe)
    create(cluster, {"apiVersion": "v1", "kind": "Pod",
                     "metadata": {**template["metadata"], "name": "gcs"},
                     "spec": template["spec"]})
    worker = running_worker(runner, "gcs")
    code, out = shell(worker, f'cat "${GCS_CREDENTIALS_KEY}"')
    assert (code, out) == (0, key)
    cluster.kubectl("delete", "pod", "gcs", "-n", NAMESPACE, "--wait=false")


def test_a_model_check_that_fails_leaves_the_pod_initialising_and_not_ready(
    kubelet: tuple[Cluster, PodRunner]
) -> None:
    """A vLLM model with tensor_parallel_size 2 on a one-GPU pod (issue 20, row 3)."""
    cluster, _ = kubelet
    cluster.kubectl("apply", "-n", NAMESPACE, "-f", "-", input_text=yaml.safe_dump({
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "tp2"},
        "data": {"config": 'backend: "vllm"\ninstance_group [ { count: 1, kind: KIND_MODEL } ]\n',
                 "engine": json.dumps({"model": "m", "tensor_parallel_size": 2})}}))
    spec = parse_spec({**DEMO["spec"], "model": {
        "name": "m", "backend": "vllm", "repository": {"configMap": {"name": "tp2", "items": [
            {"key": "config", "path": "m/config.pbtxt"},
            {"key": "engine", "path": "m/1/model.json"}]}}}})
    template = render_triton_deployment(OWNER, spec)["spec"]["template"]
    create(cluster, {"apiVersion": "v1", "kind": "Pod",
                     "metadata": {**template["metadata"], "name": "tp-mismatch"},
                     "spec": template["spec"]})

    def failed() -> dict[str, Any] | None:
        statuses = status(cluster, "tp-mismatch").get("initContainerStatuses") or [{}]
        return statuses[0].get("lastState", {}).get("terminated")
    terminated = eventually(failed, 60, "the check-model init container failing")
    assert terminated["reason"] == "Error"
    assert "tensor_parallel_size (2)" in terminated["message"]
    pod_status = status(cluster, "tp-mismatch")
    assert pod_status["phase"] == "Pending"
    assert {c["type"]: c["status"] for c in pod_status["conditions"]}["Ready"] == "False"
    cluster.kubectl("delete", "pod", "tp-mismatch", "-n", NAMESPACE, "--wait=false")


def test_a_failing_liveness_probe_restarts_the_container(
    kubelet: tuple[Cluster, PodRunner]
) -> None:
    cluster, _ = kubelet
    pod = bare_pod("unlive", ["sleep", "3600"])
    pod["spec"]["containers"][0]["livenessProbe"] = {
        "httpGet": {"path": "/healthz", "port": 8000}, "periodSeconds": 1,
        "failureThreshold": 2}
    pod["spec"]["terminationGracePeriodSeconds"] = 1
    create(cluster, pod)

    def restarted() -> bool:
        statuses = status(cluster, "unlive").get("containerStatuses") or [{}]
        return int(statuses[0].get("restartCount", 0)) >= 1
    eventually(restarted, 60, "the container restarted after failed liveness probes")
    (container,) = status(cluster, "unlive")["containerStatuses"]
    assert container["lastState"]["terminated"]["reason"] == "LivenessProbeFailed"
    cluster.kubectl("delete", "pod", "unlive", "-n", NAMESPACE, "--wait=false")


def test_deletion_runs_the_pre_stop_hook_then_sigterm_then_sigkill_after_the_grace_period(
    kubelet: tuple[Cluster, PodRunner]
) -> None:
    cluster, runner = kubelet
    ignore_term = ("import os, signal, time\n"
                   "def term(*_):\n"
                   "    print('SIGTERM after hook:', os.path.exists('/data/hook'), flush=True)\n"
                   "signal.signal(signal.SIGTERM, term)\n"
                   "print('started', flush=True)\ntime.sleep(3600)\n")
    pod = bare_pod("stubborn", ["python3", "-c", ignore_term],
                   terminationGracePeriodSeconds=3,
                   volumes=[{"name": "data", "emptyDir": {}}])
    pod["spec"]["containers"][0]["volumeMounts"] = [{"name": "data", "mountPath": "/data"}]
    pod["spec"]["containers"][0]["lifecycle"] = {
        "preStop": {"exec": {"command": ["/bin/sh", "-c", "id -u > /data/hook"]}}}
    create(cluster, pod)
    worker = running_worker(runner, "stubborn")
    log_path = worker.process.log_path if worker.process else Path()
    eventually(lambda: "started" in log_path.read_text(), 30, "the container started")
    started = time.monotonic()
    cluster.kubectl("delete", "pod", "stubborn", "-n", NAMESPACE, "--wait=false")
    eventually(lambda: runner.worker(NAMESPACE, "stubborn") is None, 30, "the pod drained")
    assert time.monotonic() - started >= 3
    assert "SIGTERM after hook: True" in log_path.read_text()
    assert worker.terminated_signals == ["SIGKILL"]
    hook_output = worker.pod_dir / "volumes" / "data" / "hook"
    assert hook_output.read_text().strip() == "1000"  # in the container, as its user
    eventually(lambda: "stubborn" not in cluster.kubectl("get", "pods", "-n", NAMESPACE,
                                                         "-o", "name"), 30, "the pod removed")

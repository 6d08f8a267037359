"""The local kubelet's plan for a container follows the rendered pod (``sandbox``).

Pure: a fake host tree stands in for ``/``; the pods are what the operator renders.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import pytest
import yaml

from ponder_localstack.probes import ProbeState, probe_url
from ponder_localstack.runner import PodRunner
from ponder_localstack.sandbox import (
    DEFAULT_SHM_BYTES,
    Image,
    Mount,
    PodContext,
    PodSpecError,
    container_argv,
    container_env,
    expand,
    host_binds,
    plan_container,
    resolve_target,
)
from ponder_localstack.triton import SimModelOptions, repository_configmap
from ponder_operator.api.spec import parse_spec
from ponder_operator.render import (
    Owner,
    RenderOptions,
    quantity_bytes,
    render_router_deployment,
    render_triton_deployment,
)

REPO = Path(__file__).resolve().parents[2]
DEMO = yaml.safe_load((REPO / "examples" / "demo.yaml").read_text())
SPEC = parse_spec(DEMO["spec"])
OWNER = Owner(name="math", namespace="default", uid="u")
HOST = {"/": [("bin", "-> usr/bin"), ("etc", "dir"), ("home", "dir"), ("proc", "dir"),
              ("run", "dir"), ("tmp", "dir"), ("usr", "dir"), ("var", "dir"), ("srv", "dir")],
        "/home": [("someone", "dir")],
        "/etc": [("hosts", "file"), ("ssl", "dir")],
        "/var": [("lib", "dir"), ("log", "dir"), ("run", "-> /run")],
        "/var/lib": [("apt", "dir")]}
IMAGE = Image(env={"PATH": "/image/bin"},
              commands={"tritonserver": ("/local/tritonserver", "--backend-directory=/b"),
                        "python3": ("/local/python3",), "ponder-router": ("/py", "-m", "r")},
              network={"tritonserver": lambda ip: [f"--http-address={ip}"]})


def list_dir(directory: str) -> list[tuple[str, str]]:
    return HOST.get(directory, [])


def pod_of(deployment: dict[str, Any]) -> dict[str, Any]:
    template = deployment["spec"]["template"]
    return json.loads(json.dumps({"metadata": {"name": "p-0", "namespace": "default",
                                               **template["metadata"]},
                                  "spec": template["spec"]}))


TRITON = pod_of(render_triton_deployment(OWNER, SPEC))
ROUTER = pod_of(render_router_deployment(OWNER, SPEC, RenderOptions()))
CTX = PodContext(pod_ip="127.64.1.7", pod_dir=Path("/state/p-0"),
                 volume_dirs={"models": Path("/state/p-0/volumes/models"),
                              "config": Path("/state/p-0/volumes/config")})


def plan(pod: dict[str, Any], container: dict[str, Any]) -> Any:
    return plan_container(pod, container, IMAGE, CTX, list_dir=list_dir)


def test_the_triton_container_runs_the_rendered_args_on_the_pods_address() -> None:
    container = TRITON["spec"]["containers"][0]
    got = plan(TRITON, container)
    assert got.argv == ("/local/tritonserver", "--backend-directory=/b",
                        *container["args"][1:], "--http-address=127.64.1.7")


def test_the_triton_container_runs_as_the_pods_user_with_a_read_only_root() -> None:
    got = plan(TRITON, TRITON["spec"]["containers"][0])
    assert (got.uid, got.gid, got.read_only_root) == (1000, 1000, True)


def test_the_environment_is_the_images_path_and_exactly_the_rendered_env() -> None:
    container = TRITON["spec"]["containers"][0]
    got = plan(TRITON, container)
    assert got.env == {"PATH": "/image/bin", **{e["name"]: e["value"] for e in container["env"]}}


@pytest.mark.parametrize(("target", "expected"), [
    ("/dev/shm", Mount("tmpfs", "/dev/shm", "", False,
                       quantity_bytes(SPEC.resources.shared_memory_per_replica))),
    ("/home/triton", Mount("bind", "/home/triton", "/state/p-0/volumes/home")),
    ("/tmp", Mount("bind", "/tmp", "/state/p-0/volumes/tmp")),
    ("/models", Mount("bind", "/models", "/state/p-0/volumes/models", read_only=True)),
])
def test_each_rendered_volume_mount_is_in_the_plan(target: str, expected: Mount) -> None:
    assert plan(TRITON, TRITON["spec"]["containers"][0]).mount_at(target) == expected


def test_a_container_with_no_shm_volume_gets_the_runtimes_64_mib() -> None:
    got = plan(ROUTER, ROUTER["spec"]["containers"][0])
    assert got.mount_at("/dev/shm") == Mount("tmpfs", "/dev/shm", "", False, DEFAULT_SHM_BYTES)


def test_the_router_reads_its_config_read_only_and_writes_its_state_volume() -> None:
    got = plan(ROUTER, ROUTER["spec"]["containers"][0])
    assert got.argv == ("/py", "-m", "r")
    assert got.uid == 65532
    assert got.mount_at("/etc/ponder") == Mount("bind", "/etc/ponder",
                                                "/state/p-0/volumes/config", read_only=True)
    assert got.mount_at("/var/lib/ponder") == Mount("bind", "/var/lib/ponder",
                                                    "/state/p-0/volumes/state")


def test_host_directories_are_bound_read_only_and_rebuilt_where_a_volume_goes() -> None:
    mounts = host_binds(["/home/triton", "/var/lib/ponder", "/tmp"], list_dir=list_dir)
    assert mounts == [
        Mount("symlink", "/bin", "usr/bin"),
        Mount("bind", "/etc", "/etc", read_only=True),
        Mount("dir", "/home"), Mount("bind", "/home/someone", "/home/someone", read_only=True),
        Mount("bind", "/run", "/run", read_only=True),
        Mount("bind", "/usr", "/usr", read_only=True),
        Mount("dir", "/var"), Mount("dir", "/var/lib"),
        Mount("bind", "/var/lib/apt", "/var/lib/apt", read_only=True),
        Mount("bind", "/var/log", "/var/log", read_only=True),
        Mount("symlink", "/var/run", "/run"),
        Mount("bind", "/srv", "/srv", read_only=True),
    ]


def test_the_init_container_checks_the_model_with_the_images_python() -> None:
    (init,) = TRITON["spec"]["initContainers"]
    got = plan(TRITON, init)
    assert got.argv[0] == "/local/python3"
    assert got.argv[-3:] == ("ponder-sim-llm", "python", "1")
    assert got.mount_at("/models") is not None


def test_field_references_and_dependent_variables_are_resolved() -> None:
    container = {"name": "c", "env": [
        {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
        {"name": "URL", "value": "http://$(IP):80/$(POD)/$$(IP)/$(UNKNOWN)"}]}
    env = container_env(TRITON, container, CTX)
    assert env == {"POD": "p-0", "IP": "127.64.1.7",
                   "URL": "http://127.64.1.7:80/p-0/$(IP)/$(UNKNOWN)"}
    assert expand("$(URL)", env) == env["URL"]


def test_a_command_the_image_does_not_have_is_refused() -> None:
    with pytest.raises(PodSpecError, match="has no command 'vllm'"):
        container_argv({"name": "c", "image": "i", "args": ["vllm", "serve"]}, IMAGE, {}, "ip")


def test_a_volume_kind_the_local_kubelet_cannot_provide_is_refused() -> None:
    pod = {"metadata": {"name": "p"}, "spec": {"volumes": [
        {"name": "v", "nfs": {"server": "s", "path": "/"}}]}}
    container = {"name": "c", "command": ["python3"],
                 "volumeMounts": [{"name": "v", "mountPath": "/v"}]}
    with pytest.raises(PodSpecError, match="volume v \\(nfs\\) is not supported"):
        plan(pod, container)


def test_a_named_probe_port_is_resolved_against_the_containers_ports() -> None:
    container = TRITON["spec"]["containers"][0]
    url = probe_url(container["readinessProbe"], container, "127.64.1.7")
    assert url == "http://127.64.1.7:8000/v2/models/ponder-sim-llm/ready"


def test_a_probe_fails_only_after_its_threshold_and_waits_its_period() -> None:
    probe = ProbeState({"periodSeconds": 5, "failureThreshold": 2,
                        "initialDelaySeconds": 3}, started_at=100.0)
    assert not probe.due(102.0)
    probe.record(False, 103.0)
    assert not probe.failed
    assert not probe.due(107.0)
    probe.record(False, 108.0)
    assert probe.failed
    probe.record(True, 113.0)
    assert (probe.passed, probe.failed) == (True, False)


def test_the_demo_example_lays_out_the_repository_configmap_the_demo_creates() -> None:
    _, items = repository_configmap("sim-llm", [SimModelOptions()])
    assert DEMO["spec"]["model"]["repository"]["configMap"]["items"] == items
    volume = next(v for v in TRITON["spec"]["volumes"] if v["name"] == "models")
    assert volume["configMap"] == {"name": "sim-llm", "items": items}


def test_a_mount_point_under_a_symbolic_link_is_placed_where_the_link_leads() -> None:
    """/var/run links to /run in most images: the ServiceAccount token goes to /run."""
    assert resolve_target("/var/run/secrets/kubernetes.io/serviceaccount", list_dir) == \
        "/run/secrets/kubernetes.io/serviceaccount"
    assert resolve_target("/bin/tool", list_dir) == "/usr/bin/tool"
    assert resolve_target("/home/triton", list_dir) == "/home/triton"


def test_the_runner_skips_a_pod_address_that_another_process_serves_on() -> None:
    runner = PodRunner(cluster=None, state_dir=Path("/nonexistent"),  # type: ignore[arg-type]
                       _ip_block=200)
    with socket.socket() as other_stack:
        other_stack.bind(("127.64.200.1", 8001))
        other_stack.listen()
        assert runner._allocate_ip() == "127.64.200.2"
    assert runner._allocate_ip() == "127.64.200.3"


def test_run_as_non_root_refuses_a_container_that_would_run_as_root() -> None:
    pod = {"metadata": {"name": "p"}, "spec": {"securityContext": {"runAsNonRoot": True}}}
    with pytest.raises(PodSpecError, match="runAsNonRoot"):
        plan(pod, {"name": "c", "command": ["python3"]})


def test_a_container_that_forbids_privilege_escalation_gets_no_new_privs() -> None:
    assert plan(TRITON, TRITON["spec"]["containers"][0]).no_new_privileges
    assert not plan({"metadata": {}, "spec": {}}, {"name": "c", "command": ["python3"]}
                    ).no_new_privileges

"""The Triton pods as a GPU cluster must run them: shm, writable caches, model checks,
start-up budget, memory, GPU toleration, storage credentials, download space, drain, a
dead engine, rollouts and disruption budgets, and what else a pod may be given.

Each test names the row of issue 20 it covers; every one fails on the rendering before it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ponder_operator.api.spec import parse_spec
from ponder_operator.errors import SpecError
from ponder_operator.render import (
    GPU_RESOURCE,
    Owner,
    format_bytes,
    quantity_bytes,
    render_triton_deployment,
    render_triton_pdb,
)

OWNER = Owner(name="math", namespace="ml", uid="0000-1111")
EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "examples").glob("*.yaml"))
PVC = {"pvc": {"claimName": "models"}}


def pod_for(model: dict[str, Any] | None = None, **sections: Any) -> dict[str, Any]:
    """The Triton pod template rendered for a spec with these model fields and sections."""
    spec = parse_spec({"model": {"name": "m", "repository": PVC, **(model or {})},
                       **sections})
    template: dict[str, Any] = render_triton_deployment(OWNER, spec)["spec"]["template"]
    return template["spec"]


def triton(pod: dict[str, Any]) -> dict[str, Any]:
    return next(c for c in pod["containers"] if c["name"] == "triton")


def env(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container.get("env", ()) if "value" in e}


def volume(pod: dict[str, Any], name: str) -> dict[str, Any]:
    return next(v for v in pod["volumes"] if v["name"] == name)


def mount_of(container: dict[str, Any], path: str) -> dict[str, Any]:
    """The volume mount that holds ``path`` (the longest matching mountPath)."""
    holding = [m for m in container["volumeMounts"]
               if path == m["mountPath"] or path.startswith(m["mountPath"] + "/")]
    return max(holding, key=lambda m: len(m["mountPath"]))


# -- row 1: /dev/shm --------------------------------------------------------------------


@pytest.mark.parametrize(("resources", "size"), [
    pytest.param({}, "2Gi", id="one-gpu-default"),
    pytest.param({"gpusPerReplica": 8}, "16Gi", id="eight-gpus-default"),
    pytest.param({"gpusPerReplica": 4, "sharedMemory": "10Gi"}, "10Gi", id="stated"),
])
def test_dev_shm_is_a_memory_backed_volume_of_the_stated_size_or_2gi_per_gpu(
    resources: dict[str, Any], size: str
) -> None:
    pod = pod_for(resources=resources)
    shm = mount_of(triton(pod), "/dev/shm")
    assert shm["mountPath"] == "/dev/shm"
    assert volume(pod, shm["name"])["emptyDir"] == {"medium": "Memory", "sizeLimit": size}


# -- rows 1 and 5: memory ---------------------------------------------------------------


@pytest.mark.parametrize(("resources", "memory"), [
    pytest.param({}, "18Gi", id="one-gpu-16Gi-and-2Gi-shm"),
    pytest.param({"gpusPerReplica": 4}, "72Gi", id="four-gpus-64Gi-and-8Gi-shm"),
    pytest.param({"gpusPerReplica": 8}, "144Gi", id="eight-gpus-128Gi-and-16Gi-shm"),
    pytest.param({"memory": "64Gi"}, "66Gi", id="stated-memory-plus-default-shm"),
    pytest.param({"memory": "64Gi", "sharedMemory": "512Mi"}, "66048Mi",
                 id="stated-memory-plus-stated-shm"),
])
def test_the_memory_request_and_limit_grow_with_gpus_and_hold_the_shared_memory(
    resources: dict[str, Any], memory: str
) -> None:
    requests_and_limits = triton(pod_for(resources=resources))["resources"]
    assert requests_and_limits["requests"]["memory"] == memory
    assert requests_and_limits["limits"]["memory"] == memory


@pytest.mark.parametrize(("quantity", "count"), [
    ("16Gi", 16 * 1024**3), ("512Mi", 512 * 1024**2), ("1G", 10**9), ("1500M", 15 * 10**8),
    ("1024", 1024), ("1.5Gi", 3 * 512 * 1024**2), ("2000m", 2),
])
def test_quantities_are_read_in_bytes_and_written_in_the_largest_unit(
    quantity: str, count: int
) -> None:
    assert quantity_bytes(quantity) == count
    assert quantity_bytes(format_bytes(count)) == count


# -- row 2: writable home and caches ----------------------------------------------------


@pytest.mark.parametrize("variable", [
    "HOME", "XDG_CACHE_HOME", "HF_HOME", "TRITON_CACHE_DIR", "VLLM_CACHE_ROOT"])
def test_home_and_every_cache_lie_on_a_writable_empty_dir_under_a_read_only_root(
    variable: str
) -> None:
    pod = pod_for()
    container = triton(pod)
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    mount = mount_of(container, env(container)[variable])
    assert not mount.get("readOnly", False)
    assert "emptyDir" in volume(pod, mount["name"])
    assert "medium" not in volume(pod, mount["name"])["emptyDir"]  # disk, not the pod's RAM


# -- row 3: model configuration ---------------------------------------------------------


@pytest.mark.parametrize(("model", "resources", "arguments"), [
    pytest.param({}, {}, ["/models", "m", "vllm", "1"], id="pvc-vllm-one-gpu"),
    pytest.param({"repository": {"pvc": {"claimName": "c", "subPath": "triton"}},
                  "tritonModelName": "qwen"}, {"gpusPerReplica": 4},
                 ["/models/triton", "qwen", "vllm", "4"], id="pvc-subpath-four-gpus"),
    pytest.param({"repository": {"configMap": {"name": "sim"}}, "backend": "python"}, {},
                 ["/models", "m", "python", "1"], id="configmap-python"),
])
def test_an_init_container_checks_the_model_configuration_against_the_gpus(
    model: dict[str, Any], resources: dict[str, Any], arguments: list[str]
) -> None:
    pod = pod_for(model, resources=resources)
    (check,) = pod["initContainers"]
    assert check["image"] == triton(pod)["image"]
    assert check["command"][:2] == ["python3", "-c"]
    assert check["command"][3:] == arguments
    assert mount_of(check, arguments[0])["readOnly"] is True


def test_a_uri_repository_has_no_model_check_because_triton_downloads_it_itself() -> None:
    pod = pod_for({"repository": {"uri": {"uri": "s3://bucket/models"}}})
    assert "initContainers" not in pod


# -- row 4: start-up budget -------------------------------------------------------------


@pytest.mark.parametrize(("model", "budget_seconds"), [
    pytest.param({}, 1800, id="default-fits-a-70b-model-on-a-cold-node"),
    pytest.param({"startupTimeoutSeconds": 3600}, 3600, id="stated"),
    pytest.param({"startupTimeoutSeconds": 95}, 95, id="not-a-multiple-of-the-period"),
])
def test_the_startup_probe_allows_the_start_up_budget_and_no_more_than_one_period_beyond(
    model: dict[str, Any], budget_seconds: int
) -> None:
    probe = triton(pod_for(model))["startupProbe"]
    allowed_seconds = probe["periodSeconds"] * probe["failureThreshold"]
    assert budget_seconds <= allowed_seconds < budget_seconds + probe["periodSeconds"]


# -- row 6: GPU toleration --------------------------------------------------------------


@pytest.mark.parametrize("resources", [
    pytest.param({}, id="no-tolerations-stated"),
    pytest.param({"tolerations": [{"key": "dedicated", "operator": "Equal",
                                   "value": "inference", "effect": "NoSchedule"}]},
                 id="beside-stated-tolerations"),
])
def test_every_triton_pod_tolerates_the_gpu_taint_without_the_admission_plugin(
    resources: dict[str, Any]
) -> None:
    tolerations = pod_for(resources=resources)["tolerations"]
    assert {"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"} in tolerations
    assert len(tolerations) == 1 + len(resources.get("tolerations", ()))


# -- row 7: credentials and workload identity -------------------------------------------


def test_a_gcs_key_is_mounted_as_a_file_and_the_variable_names_that_file() -> None:
    pod = pod_for({"repository": {"uri": {"uri": "gs://bucket/models",
                                          "credentialsSecret": "gcs-key"}}})
    container = triton(pod)
    path = env(container)["GOOGLE_APPLICATION_CREDENTIALS"]
    mount = mount_of(container, path)
    assert mount["readOnly"] is True
    secret = volume(pod, mount["name"])["secret"]
    assert secret["secretName"] == "gcs-key"
    assert secret["items"] == [{"key": "GOOGLE_APPLICATION_CREDENTIALS",
                                "path": path.removeprefix(mount["mountPath"] + "/")}]


def test_s3_credentials_stay_environment_variables() -> None:
    container = triton(pod_for({"repository": {"uri": {"uri": "s3://bucket/models",
                                                       "credentialsSecret": "aws-keys"}}}))
    assert container["envFrom"] == [{"secretRef": {"name": "aws-keys"}}]
    assert "GOOGLE_APPLICATION_CREDENTIALS" not in env(container)


@pytest.mark.parametrize(("model", "account"), [
    pytest.param({"serviceAccountName": "model-reader"}, "model-reader", id="stated"),
    pytest.param({}, None, id="unset-keeps-the-namespace-default"),
])
def test_the_triton_pods_run_as_the_service_account_named_for_workload_identity(
    model: dict[str, Any], account: str | None
) -> None:
    pod = pod_for(model)
    assert pod.get("serviceAccountName") == account
    assert pod["automountServiceAccountToken"] is False


# -- row 8: uri repositories ------------------------------------------------------------


@pytest.mark.parametrize(("uri", "variable"), [
    ("s3://bucket/models", "TRITON_AWS_MOUNT_DIRECTORY"),
    ("gs://bucket/models", "TRITON_GCS_MOUNT_DIRECTORY"),
    ("as://account/container/models", "TRITON_AZURE_MOUNT_DIRECTORY"),
])
def test_a_uri_repository_is_copied_into_a_bounded_volume_and_requested_as_disk(
    uri: str, variable: str
) -> None:
    pod = pod_for({"repository": {"uri": {"uri": uri, "storageSize": "200Gi"}}})
    container = triton(pod)
    mount = mount_of(container, env(container)[variable])
    assert volume(pod, mount["name"])["emptyDir"] == {"sizeLimit": "200Gi"}
    for kind in ("requests", "limits"):  # the download and 16Gi for caches and logs
        assert container["resources"][kind]["ephemeral-storage"] == "216Gi"


# -- row 9: drain -----------------------------------------------------------------------


@pytest.mark.parametrize("timeout_seconds", [600, 900, 3600])
def test_a_terminating_pod_lets_its_longest_request_finish_before_it_is_killed(
    timeout_seconds: int
) -> None:
    pod = pod_for(router={"admission": {"requestTimeoutSeconds": timeout_seconds}})
    container = triton(pod)
    assert f"--exit-timeout-secs={timeout_seconds}" in container["args"]
    pause_seconds = int(container["lifecycle"]["preStop"]["exec"]["command"][-1])
    assert pause_seconds > 0  # the router drops the terminating pod before SIGTERM
    assert pod["terminationGracePeriodSeconds"] > pause_seconds + timeout_seconds


def test_the_users_tritonserver_arguments_come_after_the_operators() -> None:
    args = triton(pod_for({"args": ["--exit-timeout-secs=5"]}))["args"]
    assert args[-1] == "--exit-timeout-secs=5"  # tritonserver keeps an option's last value


# -- row 10: a dead engine --------------------------------------------------------------


@pytest.mark.parametrize(("model", "path"), [
    pytest.param({}, "/v2/models/m/ready", id="model-name"),
    pytest.param({"tritonModelName": "qwen"}, "/v2/models/qwen/ready", id="triton-model-name"),
])
@pytest.mark.parametrize("probe", ["livenessProbe", "readinessProbe", "startupProbe"])
def test_every_probe_follows_the_served_models_readiness_not_the_servers_load_state(
    model: dict[str, Any], path: str, probe: str
) -> None:
    assert triton(pod_for(model))[probe]["httpGet"] == {"path": path, "port": "http"}


def test_triton_lets_the_vllm_health_check_unload_a_dead_engines_model() -> None:
    args = triton(pod_for())["args"]
    # the backend's ENABLE_VLLM_HEALTH_CHECK unloads the model only in explicit mode;
    # every model in the repository still loads at start
    assert "--model-control-mode=explicit" in args
    assert "--load-model=*" in args


# -- row 12: rollouts, drains and cost labels -------------------------------------------


def test_a_rollout_starts_a_new_pod_before_it_stops_an_old_one_by_default() -> None:
    spec = parse_spec({"model": {"name": "m", "repository": PVC}})
    strategy = render_triton_deployment(OWNER, spec)["spec"]["strategy"]
    assert strategy["rollingUpdate"] == {"maxSurge": 1, "maxUnavailable": 0}


def test_a_cluster_without_a_spare_gpu_can_roll_out_one_replica_down_instead() -> None:
    spec = parse_spec({"model": {"name": "m", "repository": PVC},
                       "triton": {"rollout": {"maxSurge": 0, "maxUnavailable": 1}}})
    strategy = render_triton_deployment(OWNER, spec)["spec"]["strategy"]
    assert strategy["rollingUpdate"] == {"maxSurge": 0, "maxUnavailable": 1}


def test_a_rollout_that_could_neither_add_nor_remove_a_pod_is_refused() -> None:
    with pytest.raises(SpecError, match="must not both be 0"):
        parse_spec({"model": {"name": "m", "repository": PVC},
                    "triton": {"rollout": {"maxSurge": 0, "maxUnavailable": 0}}})


def disruptions_allowed(pdb: dict[str, Any], healthy: int, pods: int) -> int:
    """The disruption controller's arithmetic for an integer budget."""
    budget = pdb["spec"]
    desired = budget["minAvailable"] if "minAvailable" in budget else (
        pods - budget["maxUnavailable"])
    return max(healthy - desired, 0)


@pytest.mark.parametrize(("pods", "kept_serving"), [(1, 0), (2, 1), (3, 2), (8, 7)])
def test_a_drain_never_blocks_on_the_only_replica_and_keeps_the_others_serving(
    pods: int, kept_serving: int
) -> None:
    spec = parse_spec({"model": {"name": "m", "repository": PVC}})
    pdb = render_triton_pdb(OWNER, spec)
    allowed = disruptions_allowed(pdb, healthy=pods, pods=pods)
    assert allowed >= 1  # the drain proceeds, one pod at a time
    assert pods - allowed == kept_serving


def test_a_pod_that_is_not_ready_never_holds_up_a_drain() -> None:
    # a replica still loading its model (or crash-looping) serves nothing: evicting it
    # must not wait for the others to be healthy
    spec = parse_spec({"model": {"name": "m", "repository": PVC}})
    assert render_triton_pdb(OWNER, spec)["spec"]["unhealthyPodEvictionPolicy"] == "AlwaysAllow"


def test_editing_the_cost_labels_does_not_change_the_triton_pod_template() -> None:
    def rendered(team: str) -> dict[str, Any]:
        return render_triton_deployment(OWNER, parse_spec({
            "model": {"name": "m", "repository": PVC}, "cost": {"labels": {"team": team}}}))

    before, after = rendered("search"), rendered("ranking")
    assert before["spec"]["template"] == after["spec"]["template"]
    assert after["metadata"]["labels"]["team"] == "ranking"  # the Deployment carries them


# -- row 13: what else a pod needs ------------------------------------------------------


def test_extra_env_is_added_after_the_operators_own_variables() -> None:
    container = triton(pod_for(triton={"env": [
        {"name": "VLLM_LOGGING_LEVEL", "value": "DEBUG"},
        {"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "hf", "key": "token"}}},
    ]}))
    assert container["env"][-2:] == [
        {"name": "VLLM_LOGGING_LEVEL", "value": "DEBUG"},
        {"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "hf", "key": "token"}}}]
    assert env(container)["HOME"] == "/home/triton"


def test_extra_volumes_are_added_and_mounted_where_the_spec_says() -> None:
    pod = pod_for(triton={
        "volumes": [{"name": "hf-cache", "persistentVolumeClaim": {"claimName": "hf"}}],
        "volumeMounts": [{"name": "hf-cache", "mountPath": "/home/triton/.cache/huggingface"}],
    })
    assert volume(pod, "hf-cache") == {"name": "hf-cache",
                                       "persistentVolumeClaim": {"claimName": "hf"}}
    assert mount_of(triton(pod), "/home/triton/.cache/huggingface/hub")["name"] == "hf-cache"


def test_pull_secrets_runtime_class_and_affinity_reach_the_pod() -> None:
    affinity = {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
        {"weight": 1, "preference": {"matchExpressions": [
            {"key": "zone", "operator": "In", "values": ["a"]}]}}]}}
    pod = pod_for(triton={"imagePullSecrets": ["ngc"], "runtimeClassName": "nvidia",
                          "affinity": affinity})
    assert pod["imagePullSecrets"] == [{"name": "ngc"}]
    assert pod["runtimeClassName"] == "nvidia"
    assert pod["affinity"] == affinity


def test_a_topology_spread_without_a_selector_counts_this_services_triton_pods() -> None:
    spread = {"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone",
              "whenUnsatisfiable": "ScheduleAnyway"}
    (rendered,) = pod_for(triton={"topologySpreadConstraints": [spread]})[
        "topologySpreadConstraints"]
    assert rendered == {**spread, "labelSelector": {"matchLabels": {
        "ponder.dev/service": "math", "ponder.dev/component": "triton"}}}


@pytest.mark.parametrize(("triton_section", "message"), [
    pytest.param({"env": [{"name": "HOME", "value": "/root"}]}, "must not override",
                 id="env-overrides-home"),
    pytest.param({"env": [{"name": "X"}]}, "exactly one of value and valueFrom",
                 id="env-without-a-value"),
    pytest.param({"env": [{"name": "1X=", "value": "v"}]}, "pattern", id="env-bad-name"),
    pytest.param({"env": [{"name": "X", "value": "a"}, {"name": "X", "value": "b"}]},
                 "unique", id="env-twice"),
    pytest.param({"volumes": [{"name": "shm", "emptyDir": {}}]}, "operator's own",
                 id="volume-named-like-ponders"),
    pytest.param({"volumes": [{"name": "a", "emptyDir": {}}, {"name": "a", "emptyDir": {}}]},
                 "unique", id="volume-twice"),
    pytest.param({"volumes": [{"name": "a"}]}, "exactly one source", id="volume-no-source"),
    pytest.param({"volumeMounts": [{"name": "a", "mountPath": "/a"}]}, "name a volume",
                 id="mount-of-no-volume"),
    pytest.param({"volumes": [{"name": "a", "emptyDir": {}}],
                  "volumeMounts": [{"name": "a", "mountPath": "/dev/shm"}]},
                 "operator's own", id="mount-over-ponders"),
])
def test_extra_env_and_volumes_that_would_break_the_operators_pod_are_refused(
    triton_section: dict[str, Any], message: str
) -> None:
    with pytest.raises(SpecError, match=message) as caught:
        parse_spec({"model": {"name": "m", "repository": PVC}, "triton": triton_section})
    assert caught.value.field_path.startswith("spec.triton")

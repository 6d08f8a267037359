"""Render a ReasoningService's children from its spec: pure functions, no I/O.

Children (all owned by the ReasoningService, so deletion cascades):

- ``<name>-triton``        Deployment of Triton GPU pods (replicas left to the autoscaler)
- ``<name>-triton``        headless Service (metrics scraping, DNS; the router discovers
                           endpoints by watching the pods, never through this Service)
- ``<name>-triton``        PodDisruptionBudget
- ``<name>-router``        ConfigMap with the router's configuration (``router.json``)
- ``<name>-router``        ServiceAccount, Role and RoleBinding (the router watches pods)
- ``<name>-router``        Deployment and Service of the router
- ``<name>-triton``        ServiceMonitor, only when the cluster serves that kind

Every pod runs non-root with a read-only root filesystem, no privilege escalation and all
capabilities dropped. Cost-allocation labels from the spec go on every object and every
router pod, but not on the Triton pod template, where an edit would replace every GPU pod.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ponder_operator.api import API_VERSION, KIND
from ponder_operator.api.spec import ReasoningServiceSpec, UriSource

GPU_RESOURCE = "nvidia.com/gpu"
GPU_PRODUCT_LABEL = "nvidia.com/gpu.product"
SERVICE_LABEL = "ponder.dev/service"
COMPONENT_LABEL = "ponder.dev/component"
MANAGED_BY = "ponder-operator"
TRITON_HTTP_PORT, TRITON_GRPC_PORT, TRITON_METRICS_PORT = 8000, 8001, 8002
ROUTER_PORT = 8080
ROUTER_CONFIG_KEY = "router.json"
ROUTER_CONFIG_DIR = "/etc/ponder"
ROUTER_STATE_DIR = "/var/lib/ponder"
"""The router's writable state (the prompt prior): an emptyDir, so it survives a container
restart in its pod, not the pod's replacement (each replica learns its own traffic)."""
MODEL_MOUNT = "/models"
NONROOT_UID = 65532
TRITON_UID = 1000  # the tritonserver image's own non-root user
HOME_DIR = "/home/triton"  # an emptyDir: HOME and the caches, under a read-only root
DOWNLOAD_DIR = "/var/lib/triton/repository"  # where Triton copies a uri repository
SCRATCH_STORAGE_BYTES = 16 * 1024**3  # ephemeral storage beside the download (caches, logs)
_MOUNT_DIRECTORY_ENV = {"s3": "TRITON_AWS_MOUNT_DIRECTORY", "gs": "TRITON_GCS_MOUNT_DIRECTORY",
                        "as": "TRITON_AZURE_MOUNT_DIRECTORY"}
GCS_CREDENTIALS_KEY = "GOOGLE_APPLICATION_CREDENTIALS"
GCS_CREDENTIALS_DIR = "/var/run/secrets/ponder/gcs"
GCS_CREDENTIALS_FILE = "key.json"
GPU_TOLERATION = {"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}
STARTUP_PERIOD_SECONDS = 10
PRESTOP_SECONDS = 10  # the router's pod watch drops a terminating pod well within this
UNLOAD_SECONDS = 30  # after the last request: unloading the model, freeing the GPUs
MODEL_CHECK_SOURCE = (Path(__file__).parent / "model_check.py").read_text()


@dataclass(frozen=True)
class Owner:
    """The ReasoningService that owns the children."""

    name: str
    namespace: str
    uid: str


@dataclass(frozen=True)
class RenderOptions:
    """Operator-wide settings that shape the children."""

    router_image: str = "ghcr.io/ponder-dev/ponder:0.1.0"
    service_monitor: bool = False


def triton_name(owner: Owner) -> str:
    return f"{owner.name}-triton"


def router_name(owner: Owner) -> str:
    return f"{owner.name}-router"


def selector_labels(owner: Owner, component: str) -> dict[str, str]:
    return {SERVICE_LABEL: owner.name, COMPONENT_LABEL: component}


def triton_selector(owner: Owner) -> str:
    """The Triton pods' label selector, as a string (status.selector, router discovery)."""
    return ",".join(f"{k}={v}" for k, v in sorted(selector_labels(owner, "triton").items()))


def _labels(
    owner: Owner, component: str, spec: ReasoningServiceSpec, *, cost: bool = True
) -> dict[str, str]:
    """An object's labels; ``cost=False`` leaves out ``spec.cost.labels`` (the Triton pod
    template: a label edit there would replace every GPU pod)."""
    labels = {
        "app.kubernetes.io/name": f"ponder-{component}",
        "app.kubernetes.io/instance": owner.name,
        "app.kubernetes.io/managed-by": MANAGED_BY,
        "app.kubernetes.io/part-of": "ponder",
        **selector_labels(owner, component),
    }
    if not cost:
        return labels
    cost_labels = spec.cost.labels.model_dump(exclude_none=True)
    labels.update({k: str(v) for k, v in cost_labels.items()})
    return labels


def _metadata(owner: Owner, name: str, labels: Mapping[str, str]) -> dict[str, Any]:
    return {
        "name": name,
        "namespace": owner.namespace,
        "labels": dict(labels),
        "ownerReferences": [{
            "apiVersion": API_VERSION, "kind": KIND, "name": owner.name, "uid": owner.uid,
            "controller": True, "blockOwnerDeletion": True,
        }],
    }


def _container_security() -> dict[str, Any]:
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }


def _pod_security(uid: int) -> dict[str, Any]:
    return {
        "runAsNonRoot": True, "runAsUser": uid, "runAsGroup": uid, "fsGroup": uid,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def quantity_bytes(quantity: str) -> int:
    """Bytes in a Kubernetes memory or storage quantity (16Gi, 500M, 1024)."""
    number = quantity.rstrip("mkKMGTPEi")
    suffix = quantity[len(number):]
    return int(float(number) * _QUANTITY_SUFFIX_BYTES[suffix])


def format_bytes(count: int) -> str:
    """A quantity for ``count`` bytes, in the largest binary unit that divides it."""
    for suffix in ("Ei", "Pi", "Ti", "Gi", "Mi", "Ki"):
        unit = _QUANTITY_SUFFIX_BYTES[suffix]
        if count % unit == 0:
            return f"{count // unit}{suffix}"
    return str(count)


_QUANTITY_SUFFIX_BYTES = {
    "": 1, "m": 10**-3,
    **{p: 1000 ** (n + 1) for n, p in enumerate("kMGTPE")},
    **{f"{p}i": 1024 ** (n + 1) for n, p in enumerate("KMGTPE")},
}


def triton_memory(spec: ReasoningServiceSpec) -> str:
    """The Triton container's memory request and limit: its processes plus /dev/shm.

    A memory-backed emptyDir's pages are charged to the pod's memory cgroup, so the shm
    must fit inside the limit beside what Triton and vLLM allocate themselves.
    """
    resources = spec.resources
    return format_bytes(quantity_bytes(resources.memory_per_replica)
                        + quantity_bytes(resources.shared_memory_per_replica))


def drain_seconds(spec: ReasoningServiceSpec) -> tuple[int, int]:
    """Triton's ``--exit-timeout-secs`` and the pod's termination grace period.

    Triton refuses new requests on SIGTERM and waits for those in flight up to its exit
    timeout; the longest request the router lets run is the admission request timeout, so
    that is the exit timeout. The grace period adds the preStop pause (the router sees
    the pod terminating and stops sending to it first) and time to unload the model.
    """
    exit_timeout = math.ceil(spec.router.admission.request_timeout_seconds)
    return exit_timeout, PRESTOP_SECONDS + exit_timeout + UNLOAD_SECONDS


def _model_volume(spec: ReasoningServiceSpec) -> tuple[list[dict[str, Any]], str]:
    """The model repository's volumes and the ``--model-repository`` value."""
    repo = spec.model.repository
    if repo.pvc is not None:
        claim: dict[str, Any] = {"claimName": repo.pvc.claim_name, "readOnly": True}
        path = MODEL_MOUNT + (f"/{repo.pvc.sub_path}" if repo.pvc.sub_path else "")
        return [{"name": "models", "persistentVolumeClaim": claim}], path
    if repo.config_map is not None:
        source: dict[str, Any] = {"name": repo.config_map.name}
        if repo.config_map.items:
            source["items"] = [i.model_dump() for i in repo.config_map.items]
        return [{"name": "models", "configMap": source}], MODEL_MOUNT
    assert repo.uri is not None  # the spec guarantees exactly one source
    return [], repo.uri.uri


def _home_env() -> list[dict[str, Any]]:
    """HOME and every cache vLLM, torch, triton-lang and Hugging Face write, on the home
    emptyDir: the root filesystem is read-only and the image's user has no home."""
    return [{"name": name, "value": value} for name, value in (
        ("HOME", HOME_DIR),
        ("XDG_CACHE_HOME", f"{HOME_DIR}/.cache"),
        ("HF_HOME", f"{HOME_DIR}/.cache/huggingface"),
        ("TRITON_CACHE_DIR", f"{HOME_DIR}/.triton/cache"),
        ("VLLM_CACHE_ROOT", f"{HOME_DIR}/.cache/vllm"),
    )]


def _uri_repository(
    uri: UriSource, container: dict[str, Any], volumes: list[dict[str, Any]]
) -> None:
    """A remote repository: a bounded download folder and the credentials Triton reads."""
    container["env"].append({"name": _MOUNT_DIRECTORY_ENV[uri.uri[:2]],
                             "value": DOWNLOAD_DIR})
    container["volumeMounts"].append({"name": "repository", "mountPath": DOWNLOAD_DIR})
    volumes.append({"name": "repository", "emptyDir": {"sizeLimit": uri.storage_size}})
    storage = format_bytes(quantity_bytes(uri.storage_size) + SCRATCH_STORAGE_BYTES)
    for kind in ("requests", "limits"):
        container["resources"][kind]["ephemeral-storage"] = storage
    if not uri.credentials_secret:
        return
    container["envFrom"] = [{"secretRef": {"name": uri.credentials_secret}}]
    if uri.uri.startswith("gs://"):  # Triton's GCS client wants a file path, not the key
        volumes.append({"name": "gcs-credentials", "secret": {
            "secretName": uri.credentials_secret,
            "items": [{"key": GCS_CREDENTIALS_KEY, "path": GCS_CREDENTIALS_FILE}]}})
        container["volumeMounts"].append({"name": "gcs-credentials", "readOnly": True,
                                          "mountPath": GCS_CREDENTIALS_DIR})
        container["env"].append({"name": GCS_CREDENTIALS_KEY,
                                 "value": f"{GCS_CREDENTIALS_DIR}/{GCS_CREDENTIALS_FILE}"})


def _model_check(spec: ReasoningServiceSpec, repository: str) -> dict[str, Any]:
    """An init container that checks the model's configuration before Triton loads it.

    It runs ``model_check`` (standard library only) with the Triton image's own python,
    where the repository is mounted: a tensor-parallel size that differs from the GPUs
    the pod gets fails here with a message, not in NCCL minutes later.
    """
    return {
        "name": "check-model",
        "image": spec.model.image,
        "command": ["python3", "-c", MODEL_CHECK_SOURCE, repository,
                    spec.model.served_triton_model_name, spec.model.backend,
                    str(spec.resources.gpus_per_replica)],
        "env": [{"name": "PYTHONDONTWRITEBYTECODE", "value": "1"}],
        "resources": {"requests": {"cpu": "100m", "memory": "128Mi"},
                      "limits": {"memory": "128Mi"}},
        "volumeMounts": [{"name": "models", "mountPath": MODEL_MOUNT, "readOnly": True}],
        "securityContext": _container_security(),
    }


def _probes(spec: ReasoningServiceSpec) -> dict[str, Any]:
    """Start-up, readiness and liveness, all on the served model's own readiness.

    ``/v2/health/ready`` and ``/live`` report the server and its loaded models' load
    state: a vLLM engine that died stays "loaded". The vLLM backend's health check
    (``ENABLE_VLLM_HEALTH_CHECK`` in ``config.pbtxt``, with ``--model-control-mode=explicit``)
    unloads such a model, after which ``/v2/models/<model>/ready`` fails while the server
    still reports ready; so readiness takes the pod out of the routers' pools and liveness
    restarts it once the start-up probe has passed.
    """
    model_ready = {"httpGet": {"path": f"/v2/models/{spec.model.served_triton_model_name}/ready",
                               "port": "http"}}
    return {
        "startupProbe": {**model_ready, "periodSeconds": STARTUP_PERIOD_SECONDS,
                         "failureThreshold": -(-spec.model.startup_timeout_seconds
                                               // STARTUP_PERIOD_SECONDS)},
        "readinessProbe": {**model_ready, "periodSeconds": 5, "failureThreshold": 3},
        "livenessProbe": {**model_ready, "periodSeconds": 10, "failureThreshold": 6},
    }


def _placement(owner: Owner, spec: ReasoningServiceSpec) -> dict[str, Any]:
    """The pod fields ``spec.triton`` passes through: pull secrets, runtime, affinity and
    topology spread (a constraint without a selector counts this service's Triton pods)."""
    triton = spec.triton
    fields: dict[str, Any] = {}
    if triton.image_pull_secrets:
        fields["imagePullSecrets"] = [{"name": n} for n in triton.image_pull_secrets]
    if triton.runtime_class_name:
        fields["runtimeClassName"] = triton.runtime_class_name
    if triton.affinity is not None:
        fields["affinity"] = triton.affinity
    if triton.topology_spread_constraints:
        selector = {"matchLabels": selector_labels(owner, "triton")}
        fields["topologySpreadConstraints"] = [{"labelSelector": selector, **constraint}
                                               for constraint in triton.topology_spread_constraints]
    return fields


def render_triton_deployment(
    owner: Owner, spec: ReasoningServiceSpec
) -> dict[str, Any]:
    """Triton pods; ``spec.replicas`` is deliberately absent (the autoscaler owns it)."""
    labels = _labels(owner, "triton", spec)
    volumes, repository = _model_volume(spec)
    mounts: list[dict[str, Any]] = [
        {"name": "tmp", "mountPath": "/tmp"},
        {"name": "home", "mountPath": HOME_DIR},
        {"name": "shm", "mountPath": "/dev/shm"},
    ]
    if volumes:
        mounts.append({"name": "models", "mountPath": MODEL_MOUNT, "readOnly": True})
    volumes += [
        {"name": "tmp", "emptyDir": {}},
        {"name": "home", "emptyDir": {}},
        {"name": "shm", "emptyDir": {"medium": "Memory",
                                     "sizeLimit": spec.resources.shared_memory_per_replica}},
    ]
    gpus = str(spec.resources.gpus_per_replica)
    memory = triton_memory(spec)
    exit_timeout, grace = drain_seconds(spec)
    container: dict[str, Any] = {
        "name": "triton",
        "image": spec.model.image,
        "args": [
            "tritonserver", f"--model-repository={repository}",
            f"--http-port={TRITON_HTTP_PORT}", f"--grpc-port={TRITON_GRPC_PORT}",
            f"--metrics-port={TRITON_METRICS_PORT}", f"--exit-timeout-secs={exit_timeout}",
            "--model-control-mode=explicit", "--load-model=*",
            *spec.model.args,
        ],
        "env": [*_home_env(), *(e.model_dump(by_alias=True, exclude_none=True)
                                for e in spec.triton.env)],
        "ports": [
            {"name": "http", "containerPort": TRITON_HTTP_PORT},
            {"name": "grpc", "containerPort": TRITON_GRPC_PORT},
            {"name": "metrics", "containerPort": TRITON_METRICS_PORT},
        ],
        "resources": {
            "requests": {"cpu": spec.resources.cpu, "memory": memory, GPU_RESOURCE: gpus},
            "limits": {"memory": memory, GPU_RESOURCE: gpus},
        },
        **_probes(spec),
        "lifecycle": {"preStop": {"exec": {"command": ["sleep", str(PRESTOP_SECONDS)]}}},
        "volumeMounts": mounts,
        "securityContext": _container_security(),
    }
    uri = spec.model.repository.uri
    if uri is not None:
        _uri_repository(uri, container, volumes)
    volumes += [v.model_dump() for v in spec.triton.volumes]
    mounts += [m.model_dump(by_alias=True, exclude_none=True)
               for m in spec.triton.volume_mounts]
    node_selector = dict(spec.resources.node_selector)
    if spec.resources.gpu_product:
        node_selector[GPU_PRODUCT_LABEL] = spec.resources.gpu_product
    pod_spec: dict[str, Any] = {
        "containers": [container],
        "volumes": volumes,
        "securityContext": _pod_security(TRITON_UID),
        "automountServiceAccountToken": False,
        "terminationGracePeriodSeconds": grace,
        "tolerations": [GPU_TOLERATION, *(
            t.model_dump(by_alias=True, exclude_none=True) for t in spec.resources.tolerations
        )],
    }
    if uri is None:
        pod_spec["initContainers"] = [_model_check(spec, repository)]
    if spec.model.service_account_name:
        pod_spec["serviceAccountName"] = spec.model.service_account_name
    if node_selector:
        pod_spec["nodeSelector"] = node_selector
    if spec.resources.priority_class_name:
        pod_spec["priorityClassName"] = spec.resources.priority_class_name
    pod_spec.update(_placement(owner, spec))
    template_meta = {
        "labels": _labels(owner, "triton", spec, cost=False),
        "annotations": {"prometheus.io/scrape": "true",
                        "prometheus.io/port": str(TRITON_METRICS_PORT),
                        "prometheus.io/path": "/metrics"},
    }
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": _metadata(owner, triton_name(owner), labels),
        "spec": {
            "selector": {"matchLabels": selector_labels(owner, "triton")},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {
                "maxSurge": spec.triton.rollout.max_surge,
                "maxUnavailable": spec.triton.rollout.max_unavailable}},
            "template": {"metadata": template_meta, "spec": pod_spec},
        },
    }


def render_triton_service(owner: Owner, spec: ReasoningServiceSpec) -> dict[str, Any]:
    return {
        "apiVersion": "v1", "kind": "Service",
        "metadata": _metadata(owner, triton_name(owner), _labels(owner, "triton", spec)),
        "spec": {
            "clusterIP": "None",
            "selector": selector_labels(owner, "triton"),
            "ports": [{"name": n, "port": p, "targetPort": n} for n, p in (
                ("http", TRITON_HTTP_PORT), ("grpc", TRITON_GRPC_PORT),
                ("metrics", TRITON_METRICS_PORT))],
        },
    }


def render_triton_pdb(owner: Owner, spec: ReasoningServiceSpec) -> dict[str, Any]:
    return {
        "apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
        "metadata": _metadata(owner, triton_name(owner), _labels(owner, "triton", spec)),
        "spec": {"maxUnavailable": 1,
                 "unhealthyPodEvictionPolicy": "AlwaysAllow",
                 "selector": {"matchLabels": selector_labels(owner, "triton")}},
    }


def render_service_monitor(owner: Owner, spec: ReasoningServiceSpec) -> dict[str, Any]:
    return {
        "apiVersion": "monitoring.coreos.com/v1", "kind": "ServiceMonitor",
        "metadata": _metadata(owner, triton_name(owner), _labels(owner, "triton", spec)),
        "spec": {
            "selector": {"matchLabels": selector_labels(owner, "triton")},
            "endpoints": [{"port": "metrics", "interval": "5s", "relabelings": [
                {"sourceLabels": ["__meta_kubernetes_pod_label_ponder_dev_service"],
                 "targetLabel": "ponder_service"}]}],
        },
    }


def render_router_config(
    owner: Owner, spec: ReasoningServiceSpec, *, at_ceiling: bool = False,
    replicas: int = 0, escalation: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The router's configuration (camelCase JSON), as ``ponder_router.settings`` reads it.

    ``stopping``, ``forcing``, ``probes``, ``confidence``, ``prior`` (with its state path),
    ``demandLearning``,
    ``answers``, ``admission``, ``affinity`` and ``chat`` are the router's own models in
    the spec, dumped as they are; the tiers, effort mapping and load shrink are
    translated to ``BudgetPolicy``'s shape
    (``tests/unit/test_config_contract.py`` holds the two together).
    """
    budgets = spec.budgets
    shrink = budgets.shrink_under_load
    floors = {"agreement": shrink.min_lead, "samples": shrink.min_samples,
              "tokens": shrink.min_tokens}
    effort = {k: v for k, v in budgets.effective_effort().model_dump().items() if v is not None}
    return {
        "service": owner.name,
        "namespace": owner.namespace,
        "modelName": spec.model.name,
        "tritonModel": spec.model.served_triton_model_name,
        "discovery": {"namespace": owner.namespace, "labelSelector": triton_selector(owner),
                      "grpcPort": TRITON_GRPC_PORT},
        "budgets": {
            "tiers": [{
                "name": t.name, "maxDifficulty": t.max_difficulty, "maxTokens": t.max_tokens,
                "maxTokensAfterFirstWave": t.max_tokens_after_first_wave,
                "maxSamples": t.max_samples, "initialSamples": t.initial_samples,
                "strategy": str(t.strategy), "escalateTo": t.escalate_to,
                "verifierModel": t.verifier_model, "stopThreshold": t.stop_threshold,
                "stopMargin": t.stop_margin,
                "stopOnFirstWaveAgreement": t.stop_on_first_wave_agreement,
            } for t in budgets.tiers],
            "effortTiers": effort,
            "shrinkOrder": [{"resource": r, "floor": floors[r]}
                            for r in shrink.order if r in floors],
            "estimator": budgets.estimator.model_dump(by_alias=True)
            if budgets.estimator is not None else None,
        },
        "stopping": budgets.stopping.model_dump(mode="json", by_alias=True),
        "forcing": budgets.forcing.model_dump(mode="json", by_alias=True),
        "probes": budgets.probes.model_dump(mode="json", by_alias=True),
        "confidence": budgets.confidence.model_dump(mode="json", by_alias=True),
        "prior": {**budgets.prior.model_dump(mode="json", by_alias=True),
                  "statePath": f"{ROUTER_STATE_DIR}/prior.npz"},
        "demandLearning": budgets.demand_learning.model_dump(mode="json", by_alias=True),
        "answers": spec.answers.model_dump(mode="json", by_alias=True, exclude_none=True),
        "admission": spec.router.admission.model_dump(mode="json", by_alias=True),
        "affinity": spec.router.affinity.model_dump(mode="json", by_alias=True),
        "chat": spec.model.chat.model_dump(mode="json", by_alias=True, exclude_none=True),
        "apiKeysFile": f"{ROUTER_CONFIG_DIR}/keys/keys" if spec.router.api_keys_secret else None,
        "escalation": dict(escalation or {}),
        "capacity": {"atCeiling": at_ceiling, "replicas": replicas,
                     "tokensPerSecondPerReplica": spec.scaling.throughput_prior_tokens_per_second},
    }


def render_router_configmap(
    owner: Owner, spec: ReasoningServiceSpec, config: Mapping[str, Any]
) -> dict[str, Any]:
    return {
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": _metadata(owner, router_name(owner), _labels(owner, "router", spec)),
        "data": {ROUTER_CONFIG_KEY: json.dumps(config, indent=2, sort_keys=True)},
    }


def render_router_rbac(owner: Owner, spec: ReasoningServiceSpec) -> list[dict[str, Any]]:
    """The router may watch pods in its namespace (endpoint discovery), nothing more."""
    labels = _labels(owner, "router", spec)
    name = router_name(owner)
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount",
         "metadata": _metadata(owner, name, labels), "automountServiceAccountToken": True},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
         "metadata": _metadata(owner, name, labels),
         "rules": [{"apiGroups": [""], "resources": ["pods"],
                    "verbs": ["get", "list", "watch"]}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
         "metadata": _metadata(owner, name, labels),
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
         "subjects": [{"kind": "ServiceAccount", "name": name,
                       "namespace": owner.namespace}]},
    ]


def render_router_deployment(
    owner: Owner, spec: ReasoningServiceSpec, options: RenderOptions
) -> dict[str, Any]:
    """Router pods; they hot-reload the mounted ConfigMap, so a change restarts nothing."""
    labels = _labels(owner, "router", spec)
    volumes: list[dict[str, Any]] = [
        {"name": "config", "configMap": {"name": router_name(owner)}},
        {"name": "tmp", "emptyDir": {}},
        {"name": "state", "emptyDir": {"sizeLimit": "64Mi"}},
    ]
    mounts: list[dict[str, Any]] = [
        {"name": "config", "mountPath": ROUTER_CONFIG_DIR, "readOnly": True},
        {"name": "tmp", "mountPath": "/tmp"},
        {"name": "state", "mountPath": ROUTER_STATE_DIR},
    ]
    if spec.router.api_keys_secret:
        volumes.append({"name": "keys", "secret": {"secretName": spec.router.api_keys_secret}})
        mounts.append({"name": "keys", "mountPath": f"{ROUTER_CONFIG_DIR}/keys",
                       "readOnly": True})
    resources = spec.router.resources
    container = {
        "name": "router",
        "image": options.router_image,
        "command": ["ponder-router"],
        "env": [
            {"name": "PONDER_ROUTER_CONFIG", "value": f"{ROUTER_CONFIG_DIR}/{ROUTER_CONFIG_KEY}"},
            {"name": "PONDER_ROUTER_HOST", "value": "0.0.0.0"},  # in the pod, not on a host
            {"name": "PONDER_ROUTER_PORT", "value": str(ROUTER_PORT)},
        ],
        "ports": [{"name": "http", "containerPort": ROUTER_PORT}],
        "resources": {"requests": {"cpu": resources.cpu, "memory": resources.memory},
                      "limits": {"memory": resources.memory}},
        "readinessProbe": {"httpGet": {"path": "/readyz", "port": "http"}, "periodSeconds": 5},
        "livenessProbe": {"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 10},
        "volumeMounts": mounts,
        "securityContext": _container_security(),
    }
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": _metadata(owner, router_name(owner), labels),
        "spec": {
            "replicas": spec.router.replicas,
            "selector": {"matchLabels": selector_labels(owner, "router")},
            "template": {
                "metadata": {"labels": labels,
                             "annotations": {"prometheus.io/scrape": "true",
                                             "prometheus.io/port": str(ROUTER_PORT)}},
                "spec": {"serviceAccountName": router_name(owner), "containers": [container],
                         "volumes": volumes, "securityContext": _pod_security(NONROOT_UID)},
            },
        },
    }


def render_router_service(owner: Owner, spec: ReasoningServiceSpec) -> dict[str, Any]:
    return {
        "apiVersion": "v1", "kind": "Service",
        "metadata": _metadata(owner, router_name(owner), _labels(owner, "router", spec)),
        "spec": {"selector": selector_labels(owner, "router"),
                 "ports": [{"name": "http", "port": 80, "targetPort": "http"}]},
    }

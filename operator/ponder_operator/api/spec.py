"""The ReasoningService spec: what a user asks for, as frozen pydantic models.

These models are the single source of the API. ``ponder_operator.api.crd`` turns their JSON
schema into the CRD's OpenAPI schema, so every ``Field`` bound and description lands in the
API server, and every cross-field rule is written twice on purpose: once as a CEL rule the
API server enforces (``CelRule``) and once as a ``model_validator`` that raises the same
message offline, so ``kubectl apply`` and ``parse_spec`` refuse the same specs.

Field names are snake_case here and camelCase on the wire (``gpus_per_replica`` is sent as
``gpusPerReplica``); validate with ``ReasoningServiceSpec.model_validate(obj)`` and write
back with ``model_dump(by_alias=True, exclude_none=True)``. Defaults are shared frozen
instances, which is safe because nothing here can be mutated.

The sections the router reads are the router's own models where it has one:
``spec.budgets.stopping`` is ``ponder_router.aggregate.StopRule``, ``spec.answers`` is
``ponder_router.answers.AnswerFormat``, ``spec.router.admission`` is
``ponder_router.settings.AdmissionConfig`` and ``spec.model.chat`` is
``ponder_router.chat.ChatFormat`` (whose validator compiles the chat template) and
``spec.budgets.forcing`` is ``ponder_router.forcing.ForcingConfig`` and
``spec.budgets.probes`` is ``ponder_router.probes.ProbeConfig``, ``spec.budgets.confidence``
is ``ponder_router.confidence.ConfidenceConfig``, ``spec.budgets.prior`` is
``ponder_router.prior.PriorConfig``, ``spec.budgets.demandLearning`` is
``ponder_router.demand_learning.DemandLearningConfig`` and ``spec.router.affinity``
is ``ponder_router.affinity.AffinityConfig``, copied into
the router's config as they are. The budget tiers, effort mapping and load shrink keep
their CRD shape (CEL rules, strict scalars); their defaults come from the router's
``default_policy()`` and ``tests/unit/test_config_contract.py`` holds their names, bounds
and enum values to the router's ``BudgetPolicy``.

Neighbours: ``status`` (what the operator reports), ``crd`` (the generator), and the
operator's policy modules, which take these models as their frozen inputs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from itertools import pairwise
from typing import Annotated, Any, Literal, cast

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    Strict,
    ValidationError,
    model_validator,
)
from pydantic.alias_generators import to_camel

from ponder_operator.errors import SpecError
from ponder_router.affinity import AffinityConfig
from ponder_router.aggregate import StopRule
from ponder_router.answers import AnswerFormat
from ponder_router.budgets import AGREEMENT_FLOOR, ShrinkResource, default_policy
from ponder_router.chat import ChatFormat, ThinkingDelimiters
from ponder_router.confidence import ConfidenceConfig
from ponder_router.demand_learning import DemandLearningConfig
from ponder_router.difficulty import FEATURE_NAMES
from ponder_router.forcing import ForcingConfig
from ponder_router.prior import PriorConfig
from ponder_router.probes import ProbeConfig
from ponder_router.settings import AdmissionConfig

# Scalars are strict, as the API server is: "3" is not an integer, "yes" is not a boolean.
Int = Annotated[int, Strict()]
Float = Annotated[float, Strict()]
Bool = Annotated[bool, Strict()]
Str = Annotated[str, Strict()]

DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
LABEL_VALUE = r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$"
QUANTITY = r"^[0-9]+(\.[0-9]+)?(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$"
DEFAULT_TRITON_IMAGE = "nvcr.io/nvidia/tritonserver:24.10-vllm-python-py3"

Backend = Literal["vllm", "tensorrtllm", "python"]
Strategy = Literal["single", "vote", "best-of-n", "revise"]
Shrinkable = Literal["agreement", "samples", "tokens"]
Cloud = Literal["aws", "gcp", "azure", "lambda"]
Offering = Literal["on-demand", "spot"]


class RuleViolation(ValueError):
    """A cross-field rule failed; ``field_path`` is relative to the model that checks it."""

    def __init__(self, message: str, field_path: str | None) -> None:
        super().__init__(message)
        self.field_path = field_path


@dataclass(frozen=True)
class CelRule:
    """One cross-field rule: the CEL the API server runs and the message both sides print.

    ``field_path`` is a JSON path relative to the object carrying the rule (``.minReplicas``),
    reported by the API server and by ``parse_spec`` alike.
    """

    rule: str
    message: str
    field_path: str | None = None

    def as_schema(self) -> dict[str, JsonValue]:
        entry: dict[str, JsonValue] = {"rule": self.rule, "message": self.message}
        if self.field_path:
            entry["fieldPath"] = self.field_path
        return entry

    def violation(self, detail: str = "") -> RuleViolation:
        text = f"{self.message} ({detail})" if detail else self.message
        return RuleViolation(text, self.field_path)


def _cel(*rules: CelRule) -> ConfigDict:
    """Model config carrying CEL rules into the model's JSON schema (and so the CRD)."""
    validations: list[JsonValue] = [rule.as_schema() for rule in rules]
    return ConfigDict(json_schema_extra={"x-kubernetes-validations": validations})


class ApiModel(BaseModel):
    """Base of every API model: camelCase on the wire, unknown fields refused, immutable."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True
    )


def _name(description: str, *, pattern: str = DNS_SUBDOMAIN, max_length: int = 253) -> Any:
    """A required Kubernetes object name."""
    return Field(min_length=1, max_length=max_length, pattern=pattern, description=description)


def _optional_name(description: str) -> Any:
    """An optional Kubernetes object name (a Secret, a PriorityClass)."""
    return Field(default=None, min_length=1, max_length=253, pattern=DNS_SUBDOMAIN,
                 description=description)


def _quantity(default: str, description: str) -> Any:
    """A Kubernetes resource quantity such as 500m, 4 or 16Gi."""
    return Field(default=default, max_length=32, pattern=QUANTITY,
                 description=f"{description} A Kubernetes quantity (500m, 4, 16Gi).")


# -- model --------------------------------------------------------------------------------


class PvcSource(ApiModel):
    """A Triton model repository on a PersistentVolumeClaim, mounted read-only."""

    claim_name: Str = _name("Name of the PersistentVolumeClaim in the service's namespace.")
    sub_path: Str | None = Field(
        default=None, max_length=1024, pattern=r"^[^/]",
        description="Folder inside the volume that holds the repository; the root if unset.")


class UriSource(ApiModel):
    """A Triton model repository in object storage, read by Triton itself."""

    uri: Str = Field(
        max_length=2048, pattern=r"^(s3|gs|as)://\S+$",
        description="Repository location: s3://bucket/path, gs://bucket/path or "
                    "as://account/container/path.")
    credentials_secret: Str | None = _optional_name(
        "Secret whose keys become Triton's environment (AWS_ACCESS_KEY_ID, "
        "AZURE_STORAGE_ACCOUNT, ...). For gs:// its GOOGLE_APPLICATION_CREDENTIALS key holds "
        "the service account's JSON key: it is mounted as a file and the variable points "
        "to that file.")
    storage_size: Str = _quantity(
        "100Gi", "Local disk Triton copies the repository to (an emptyDir of this size, "
                 "requested as ephemeral storage); at least the model's weights.")


class KeyToPath(ApiModel):
    """One ConfigMap key and the file it becomes in the repository."""

    key: Str = Field(min_length=1, max_length=253, pattern=r"^[-._a-zA-Z0-9]+$",
                     description="Key in the ConfigMap.")
    path: Str = Field(min_length=1, max_length=1024, pattern=r"^[^/]",
                      description="Relative path of the file in the repository, e.g. "
                                  "my-model/1/model.py.")


class ConfigMapSource(ApiModel):
    """A small model repository (a python-backend model) shipped in a ConfigMap.

    ConfigMap keys cannot hold ``/``, so Triton's nested layout
    (``<model>/config.pbtxt``, ``<model>/1/model.py``) comes from ``items``: each key
    placed at its path, as a ConfigMap volume's ``items`` do.
    """

    name: Str = _name("Name of the ConfigMap in the service's namespace.")
    items: tuple[KeyToPath, ...] = Field(
        default=(), max_length=64,
        description="Where each key goes in the repository (<model>/config.pbtxt, "
                    "<model>/1/model.py, ...); unset, every key is a file at the "
                    "repository's root, which Triton cannot load.")


EXACTLY_ONE_SOURCE = CelRule(
    "(has(self.pvc) ? 1 : 0) + (has(self.uri) ? 1 : 0) + (has(self.configMap) ? 1 : 0) == 1",
    "repository must set exactly one of pvc, uri and configMap",
)


class ModelRepository(ApiModel):
    """Where Triton loads the model from: exactly one of pvc, uri and configMap."""

    model_config = _cel(EXACTLY_ONE_SOURCE)

    pvc: PvcSource | None = Field(default=None,
                                  description="Repository on a PersistentVolumeClaim.")
    uri: UriSource | None = Field(default=None,
                                  description="Repository in S3, GCS or Azure storage.")
    config_map: ConfigMapSource | None = Field(default=None,
                                               description="Repository in a ConfigMap.")

    @model_validator(mode="after")
    def _exactly_one_source(self) -> ModelRepository:
        chosen = [name for name, source in (("pvc", self.pvc), ("uri", self.uri),
                                            ("configMap", self.config_map))
                  if source is not None]
        if len(chosen) != 1:
            raise EXACTLY_ONE_SOURCE.violation(f"got {', '.join(chosen) or 'none'}")
        return self


BACKEND_THE_ROUTER_SPEAKS = CelRule(
    "self.backend != 'tensorrtllm'",
    "backend tensorrtllm is not supported yet: the router speaks the vLLM backend's inputs "
    "(text_input, sampling_parameters); use vllm, or python for a model with the same inputs",
    ".backend",
)


ChatSpec = ChatFormat
"""The model's chat template and thinking markers: the router's own model."""
ThinkingSpec = ThinkingDelimiters
"""The markers around a chain of thought (``spec.model.chat.thinking``)."""


class ModelSpec(ApiModel):
    """The model served and the Triton Inference Server that serves it.

    The repository holds the model's own Triton configuration; the operator renders none and
    checks it at start (``model_check``).
    The router speaks the inputs and outputs of Triton's vLLM backend (``text_input``,
    ``stream``, ``sampling_parameters`` → ``text_output``), so the model must take them: a
    vLLM-backend model, or a python-backend model with the same interface.
    """

    model_config = _cel(BACKEND_THE_ROUTER_SPEAKS)

    name: Str = Field(
        min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:/-]*$",
        description="Model name clients send in the OpenAI API's model field.")
    image: Str = Field(
        default=DEFAULT_TRITON_IMAGE, min_length=1, max_length=512, pattern=r"^\S+$",
        description="Triton Inference Server container image.")
    args: tuple[Annotated[Str, Field(max_length=1024)], ...] = Field(
        default=(), max_length=64, json_schema_extra={"x-kubernetes-list-type": "atomic"},
        description="Extra tritonserver arguments, after the ones the operator sets.")
    repository: ModelRepository = Field(description="Where Triton loads the model from.")
    backend: Backend = Field(
        default="vllm",
        description="Triton backend of the model: vllm, or python for a model with the vLLM "
                    "backend's inputs; the pod's model check holds the repository's "
                    "config.pbtxt to it. tensorrtllm is refused until the router speaks it.")
    triton_model_name: Str | None = Field(
        default=None, min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$",
        description="Model name inside the Triton repository; defaults to name.")
    startup_timeout_seconds: Int = Field(
        default=1800, ge=60, le=14400,
        description="Seconds Triton may take to load the model before the kubelet restarts "
                    "it: Triton opens its ports only once the model has loaded, and a 70B "
                    "model pulled onto a cold node takes tens of minutes.")
    service_account_name: Str | None = _optional_name(
        "ServiceAccount the Triton pods run as, for workload identity to a uri repository "
        "(GKE Workload Identity, EKS IRSA or Pod Identity, Azure Workload Identity); the "
        "namespace's default ServiceAccount if unset.")
    chat: ChatFormat = Field(
        default=ChatFormat(),
        description="The model's chat format (a preset or its Jinja chat template) and "
                    "thinking markers: how the router renders chat messages and separates "
                    "the chain of thought from the answer.")

    @model_validator(mode="after")
    def _backend_the_router_speaks(self) -> ModelSpec:
        if self.backend == "tensorrtllm":
            raise BACKEND_THE_ROUTER_SPEAKS.violation()
        return self

    @property
    def served_triton_model_name(self) -> str:
        """The model name the router asks Triton for."""
        return self.triton_model_name or self.name


# -- resources ----------------------------------------------------------------------------


EXISTS_HAS_NO_VALUE = CelRule(
    "!has(self.operator) || self.operator != 'Exists' || !has(self.value) || self.value == ''",
    "toleration value must be empty when operator is Exists",
    ".value",
)


class Toleration(ApiModel):
    """A Kubernetes toleration, copied onto every Triton pod."""

    model_config = _cel(EXISTS_HAS_NO_VALUE)

    key: Str | None = Field(
        default=None, max_length=253,
        description="Taint key; empty with operator Exists matches every taint.")
    operator: Literal["Exists", "Equal"] | None = Field(
        default=None, description="Exists or Equal; Kubernetes treats unset as Equal.")
    value: Str | None = Field(default=None, max_length=63,
                              description="Taint value, for operator Equal.")
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = Field(
        default=None, description="Taint effect to match; unset matches every effect.")
    toleration_seconds: Int | None = Field(
        default=None,
        description="For NoExecute: seconds the pod stays bound after the taint appears.")

    @model_validator(mode="after")
    def _exists_has_no_value(self) -> Toleration:
        if self.operator == "Exists" and self.value:
            raise EXISTS_HAS_NO_VALUE.violation(f"got {self.value!r}")
        return self


class ResourcesSpec(ApiModel):
    """What each Triton replica needs from a node."""

    gpus_per_replica: Int = Field(default=1, ge=1, le=8,
                                  description="nvidia.com/gpu devices per Triton replica.")
    gpu_product: Str | None = Field(
        default=None, min_length=1, max_length=63, pattern=LABEL_VALUE,
        description="GPU model, matched against the nodes' nvidia.com/gpu.product label "
                    "(for example NVIDIA-H100-80GB-HBM3); any GPU node if unset.")
    cpu: Str = _quantity("4", "CPU request per replica.")
    memory: Str | None = Field(
        default=None, max_length=32, pattern=QUANTITY,
        description="Memory for Triton's processes per replica; 16Gi per GPU if unset. The "
                    "pod's request and limit are this plus sharedMemory. A Kubernetes "
                    "quantity (500m, 4, 16Gi).")
    shared_memory: Str | None = Field(
        default=None, max_length=32, pattern=QUANTITY,
        description="Size of /dev/shm (a memory-backed emptyDir, counted in the memory "
                    "limit), which Triton's python and vLLM backends and NCCL use; 2Gi per "
                    "GPU if unset. A Kubernetes quantity (500m, 4, 16Gi).")
    tolerations: tuple[Toleration, ...] = Field(
        default=(), max_length=32, json_schema_extra={"x-kubernetes-list-type": "atomic"},
        description="Tolerations for the Triton pods, beside the nvidia.com/gpu NoSchedule "
                    "toleration every Triton pod gets.")
    priority_class_name: Str | None = _optional_name("PriorityClass of the Triton pods.")
    node_selector: dict[str, Annotated[Str, Field(max_length=63)]] = Field(
        default_factory=dict, max_length=32,
        description="Extra node labels the Triton pods require.")

    @property
    def memory_per_replica(self) -> str:
        """Memory for Triton's processes: the spec's, else 16Gi per GPU."""
        return self.memory or f"{16 * self.gpus_per_replica}Gi"

    @property
    def shared_memory_per_replica(self) -> str:
        """Size of /dev/shm: the spec's, else 2Gi per GPU."""
        return self.shared_memory or f"{2 * self.gpus_per_replica}Gi"


# -- scaling ------------------------------------------------------------------------------


class ScaleToZero(ApiModel):
    """Whether an idle pool may shrink to no replicas at all."""

    enabled: Bool = Field(
        default=False,
        description="Allow zero replicas after idleWindowSeconds without demand, even above "
                    "minReplicas; the next request waits for a cold start.")
    idle_window_seconds: Int = Field(
        default=600, ge=30, le=86400,
        description="Seconds without any demand before scaling to zero.")


MIN_LE_MAX_REPLICAS = CelRule(
    "self.minReplicas <= self.maxReplicas",
    "minReplicas must not exceed maxReplicas",
    ".minReplicas",
)


class ScalingSpec(ApiModel):
    """How the autoscaler sizes the Triton pool from queued, difficulty-weighted demand."""

    model_config = _cel(MIN_LE_MAX_REPLICAS)

    min_replicas: Int = Field(default=1, ge=0, le=1024,
                              description="Fewest Triton replicas (0 lets the pool empty).")
    max_replicas: Int = Field(default=4, ge=1, le=1024, description="Most Triton replicas.")
    max_gpus: Int | None = Field(
        default=None, ge=1, le=65536,
        description="GPU quota for the whole service: replicas * gpusPerReplica never "
                    "exceeds it.")
    scale_to_zero: ScaleToZero = Field(default=ScaleToZero(),
                                       description="Scale-to-zero on idleness.")
    target_drain_seconds: Int = Field(
        default=30, ge=1, le=3600,
        description="Seconds the pool should take to generate all queued and in-flight "
                    "demand tokens; fewer seconds, more replicas.")
    target_queue_per_replica: Int = Field(
        default=8, ge=1, le=10000,
        description="Triton pending requests per replica above which the pool grows.")
    throughput_prior_tokens_per_second: Float = Field(
        default=1500.0, gt=0, le=1e7,
        description="Tokens per second one replica generates (measure it with a load test; "
                    "nothing measures it at run time): the autoscaler sizes the pool as demand "
                    "tokens / (this x targetDrainSeconds), and the router compares demand "
                    "with replicas x this when it shrinks budgets under load.")
    scale_up_stabilization_seconds: Int = Field(
        default=0, ge=0, le=3600,
        description="Seconds a higher replica count must be wanted before scaling up.")
    scale_down_stabilization_seconds: Int = Field(
        default=120, ge=0, le=3600,
        description="Seconds a lower replica count must be wanted before scaling down.")
    scale_down_max_step: Int = Field(default=1, ge=1, le=1024,
                                     description="Most replicas removed in one scale-down.")
    scale_down_max_step_percent: Int = Field(
        default=0, ge=0, le=100,
        description="Most replicas removed in one scale-down as a percentage of the current "
                    "count, when that allows more than scaleDownMaxStep (0: off).")
    scale_down_period_seconds: Int = Field(
        default=60, ge=0, le=3600,
        description="Fewest seconds between two scale-downs.")
    target_samples_per_replica: Int | None = Field(
        default=None, ge=1, le=4096,
        description="Concurrent samples one replica should run (its continuous-batching "
                    "sweet spot); in-flight samples above this grow the pool. Unset: no "
                    "floor from running samples.")
    interval_seconds: Int = Field(default=5, ge=1, le=300,
                                  description="Seconds between autoscaler evaluations.")
    paused: Bool = Field(
        default=False,
        description="Stop autoscaling; the pool follows replicas (set by kubectl scale) or "
                    "keeps its size.")
    replicas: Int | None = Field(
        default=None, ge=0, le=1024,
        description="Manual replica count, written by kubectl scale through the scale "
                    "subresource; used only while paused, still capped by maxGpus.")

    @model_validator(mode="after")
    def _min_le_max(self) -> ScalingSpec:
        if self.min_replicas > self.max_replicas:
            raise MIN_LE_MAX_REPLICAS.violation(f"{self.min_replicas} > {self.max_replicas}")
        return self


# -- budgets ------------------------------------------------------------------------------


DEFAULT_POLICY = default_policy()
"""The router's documented default, and so what a ReasoningService without budgets gets."""

INITIAL_LE_MAX_SAMPLES = CelRule(
    "self.initialSamples <= self.maxSamples",
    "initialSamples must not exceed maxSamples",
    ".initialSamples",
)
FIRST_WAVE_AGREEMENT_NEEDS_VOTE = CelRule(
    "!has(self.stopOnFirstWaveAgreement) || !self.stopOnFirstWaveAgreement"
    " || (self.strategy == 'vote' && self.initialSamples >= 2)",
    "stopOnFirstWaveAgreement needs strategy vote and initialSamples >= 2",
    ".stopOnFirstWaveAgreement",
)
SINGLE_MEANS_ONE_SAMPLE = CelRule(
    "self.strategy != 'single' || self.maxSamples == 1",
    "strategy single draws one sample: maxSamples must be 1",
    ".maxSamples",
)
LATER_TOKENS_AT_LEAST_FIRST = CelRule(
    "!has(self.maxTokensAfterFirstWave) || self.maxTokensAfterFirstWave >= self.maxTokens",
    "maxTokensAfterFirstWave must not be below maxTokens",
    ".maxTokensAfterFirstWave",
)
BEST_OF_N_NEEDS_VERIFIER = CelRule(
    "self.strategy != 'best-of-n' || has(self.verifierModel)",
    "strategy best-of-n needs verifierModel",
    ".verifierModel",
)


class BudgetTier(ApiModel):
    """A difficulty band and the test-time compute a request in it may spend."""

    model_config = _cel(INITIAL_LE_MAX_SAMPLES, SINGLE_MEANS_ONE_SAMPLE,
                        BEST_OF_N_NEEDS_VERIFIER, FIRST_WAVE_AGREEMENT_NEEDS_VOTE,
                        LATER_TOKENS_AT_LEAST_FIRST)

    name: Str = _name("Tier name, unique in the service.", pattern=DNS_LABEL, max_length=63)
    max_difficulty: Float = Field(
        gt=0, le=1,
        description="Upper bound (inclusive) of the estimated difficulty, 0 to 1, this tier "
                    "serves; the band starts above the previous tier's bound.")
    max_tokens: Int = Field(ge=1, le=1_000_000,
                            description="Most tokens per sample of the first wave.")
    max_tokens_after_first_wave: Int | None = Field(
        default=None, ge=1, le=1_000_000,
        description="Most tokens per sample launched after the first wave: a request its "
                    "first wave did not settle may think longer (a first-wave sample cut "
                    "at maxTokens then abstains instead of being forced); maxTokens if "
                    "unset.")
    max_samples: Int = Field(default=1, ge=1, le=64, description="Most samples per request.")
    initial_samples: Int = Field(
        default=1, ge=1, le=64,
        description="Samples in the first wave; later waves run only while the stopping "
                    "rule is unmet.")
    strategy: Strategy = Field(
        default="single",
        description="single (one sample), vote (majority answer), best-of-n (verifier "
                    "picks) or revise (sequential self-revision).")
    verifier_model: Str | None = Field(
        default=None, min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$",
        description="Triton model, served by the same Triton pods, that scores this tier's "
                    "samples for best-of-n; the highest-scored sample is the answer.")
    escalate_to: Str | None = Field(
        default=None, min_length=1, max_length=63, pattern=DNS_LABEL,
        description="Another ReasoningService in this namespace (a larger model) that "
                    "serves this tier's requests instead.")
    stop_threshold: Float | None = Field(
        default=None, gt=0.5, lt=1,
        description="Probability this tier's beta or settled stopping rule needs (ponder "
                    "calibrate sets one per tier); stopping.threshold if unset.")
    stop_margin: Int | None = Field(
        default=None, ge=1, le=64,
        description="Votes the leading answer must be ahead by under the margin stopping "
                    "rule (ponder calibrate sets one per tier); stopping.margin if unset.")
    stop_on_first_wave_agreement: Bool = Field(
        default=False,
        description="A vote tier stops as soon as its whole first wave (initialSamples, at "
                    "least 2) agrees; any disagreement or abstention in it leaves the "
                    "request to the stopping rule, up to maxSamples: the tier's budget is "
                    "an envelope, not an allotment.")

    @model_validator(mode="after")
    def _rules(self) -> BudgetTier:
        if self.initial_samples > self.max_samples:
            raise INITIAL_LE_MAX_SAMPLES.violation(
                f"{self.initial_samples} > {self.max_samples}")
        if self.strategy == "single" and self.max_samples != 1:
            raise SINGLE_MEANS_ONE_SAMPLE.violation(f"got {self.max_samples}")
        if self.strategy == "best-of-n" and self.verifier_model is None:
            raise BEST_OF_N_NEEDS_VERIFIER.violation()
        later = self.max_tokens_after_first_wave
        if later is not None and later < self.max_tokens:
            raise LATER_TOKENS_AT_LEAST_FIRST.violation(f"{later} < {self.max_tokens}")
        if self.stop_on_first_wave_agreement and (
                self.strategy != "vote" or self.initial_samples < 2):
            raise FIRST_WAVE_AGREEMENT_NEEDS_VOTE.violation(
                f"strategy {self.strategy}, initialSamples {self.initial_samples}")
        return self


class EffortMapping(ApiModel):
    """The OpenAI reasoning_effort levels, each mapped to a tier name.

    A mapped level overrides the difficulty estimate; an unmapped one falls back to it.
    """

    low: Str | None = Field(default=None, max_length=63, description="Tier for effort low.")
    medium: Str | None = Field(default=None, max_length=63,
                               description="Tier for effort medium.")
    high: Str | None = Field(default=None, max_length=63, description="Tier for effort high.")


StoppingSpec = StopRule
"""When to stop drawing samples: the router's own model (``rule`` on the wire)."""
ForcingSpec = ForcingConfig
"""Answer at the cap (budget forcing): the router's own model."""
ProbeSpec = ProbeConfig
"""Stop when the answer has settled (probe exits): the router's own model."""


_DEFAULT_FLOORS = {step.resource.value: step.floor for step in DEFAULT_POLICY.shrink_order}
_DEFAULT_SHRINK_ORDER = cast("tuple[Shrinkable, ...]", tuple(_DEFAULT_FLOORS))


class ShrinkUnderLoad(ApiModel):
    """What the router may cut, in order, while the pool is saturated."""

    order: tuple[Shrinkable, ...] = Field(
        default=_DEFAULT_SHRINK_ORDER, max_length=3,
        json_schema_extra={"x-kubernetes-list-type": "set"},
        description="What shrinks, in order, under load: agreement (the stopping rule "
                    "needs a smaller lead, so requests that agree stop sooner; not in the "
                    "default), samples (fewer samples, contested requests truncated), "
                    "tokens (shorter samples); empty never shrinks.")
    min_lead: Int = Field(default=AGREEMENT_FLOOR, ge=1, le=64,
                          description="Votes the leading answer must still be ahead by "
                                      "when agreement shrinks.")
    min_samples: Int = Field(default=_DEFAULT_FLOORS[ShrinkResource.SAMPLES], ge=1, le=64,
                             description="Samples never cut below this.")
    min_tokens: Int = Field(default=_DEFAULT_FLOORS[ShrinkResource.TOKENS], ge=1,
                            le=1_000_000, description="Tokens per sample never cut below this.")

    @model_validator(mode="after")
    def _no_repeats(self) -> ShrinkUnderLoad:
        if len(set(self.order)) != len(self.order):
            raise RuleViolation("order must not repeat an entry", ".order")
        return self


MAX_WEIGHT = 1e4  # far beyond any fitted weight: the score saturates long before
KNOWN_FEATURES = CelRule(
    "self.coefficients.all(f, f in [" + ", ".join(f"'{f}'" for f in FEATURE_NAMES) + "])",
    "coefficients must name features the router extracts: " + ", ".join(FEATURE_NAMES),
    ".coefficients",
)


class EstimatorSpec(ApiModel):
    """Weights of the router's difficulty estimator, a logistic model over prompt features.

    The score is sigmoid(bias + sum of coefficients[f] * f) over the features the router
    extracts from the prompt; the tiers' maxDifficulty bounds cut that score, so they
    belong to these weights (ponder calibrate fits and writes both). Unset: the
    router's built-in weights.
    """

    model_config = _cel(KNOWN_FEATURES)

    bias: Float = Field(
        ge=-MAX_WEIGHT, le=MAX_WEIGHT,
        description="Intercept of the logistic model: the logit of the score of a prompt "
                    "whose features are all 0.")
    coefficients: dict[Str, Annotated[Float, Field(ge=-MAX_WEIGHT, le=MAX_WEIGHT)]] = Field(
        max_length=len(FEATURE_NAMES),
        description="Weight of each prompt feature, by name; a feature left out weighs 0. "
                    f"Features: {', '.join(FEATURE_NAMES)}.")

    @model_validator(mode="after")
    def _known_features(self) -> EstimatorSpec:
        unknown = sorted(set(self.coefficients) - set(FEATURE_NAMES))
        if unknown:
            raise KNOWN_FEATURES.violation(f"got {', '.join(unknown)}")
        return self


TIERS_ORDERED = CelRule(
    "self.tiers.map(t, t.maxDifficulty).isSorted() && "
    "self.tiers.all(a, self.tiers.exists_one(b, b.maxDifficulty == a.maxDifficulty))",
    "tiers must be listed by strictly increasing maxDifficulty",
    ".tiers",
)
LAST_TIER_COVERS_ALL = CelRule(
    "self.tiers.size() == 0 || self.tiers[self.tiers.size() - 1].maxDifficulty == 1.0",
    "the last tier's maxDifficulty must be 1 so every difficulty has a tier",
    ".tiers",
)
EFFORT_RULES = {
    level: CelRule(
        f"!has(self.effort) || !has(self.effort.{level}) || "
        f"self.tiers.exists(t, t.name == self.effort.{level})",
        f"effort.{level} must name a tier in tiers",
        f".effort.{level}",
    )
    for level in ("low", "medium", "high")
}
DEFAULT_TIERS = tuple(BudgetTier.model_validate(tier.model_dump(mode="json", exclude_none=True))
                      for tier in DEFAULT_POLICY.tiers)
DEFAULT_EFFORT = EffortMapping.model_validate(
    {effort.value: tier for effort, tier in DEFAULT_POLICY.effort_tiers.items()})


class BudgetsSpec(ApiModel):
    """Test-time compute per request: difficulty tiers, effort overrides, stopping, shedding."""

    model_config = _cel(TIERS_ORDERED, LAST_TIER_COVERS_ALL, *EFFORT_RULES.values())

    tiers: tuple[BudgetTier, ...] = Field(
        default=DEFAULT_TIERS, min_length=1, max_length=8,
        json_schema_extra={"x-kubernetes-list-type": "map",
                           "x-kubernetes-list-map-keys": ["name"]},
        description="Difficulty tiers, by increasing maxDifficulty; the last ends at 1.")
    effort: EffortMapping = Field(
        default=EffortMapping(),
        description="reasoning_effort to tier overrides; unset levels follow the estimate. "
                    "With the default tiers and no overrides, low, medium and high map to "
                    "easy, medium and hard, as the router's default policy does.")
    stopping: StopRule = Field(default=StopRule(),
                               description="Early stopping between sample waves.")
    forcing: ForcingConfig = Field(
        default=ForcingConfig(),
        description="Answer at the cap: a sample cut off at its tier's maxTokens is "
                    "continued with an answer cue and votes with that answer.")
    probes: ProbeConfig = Field(
        default=ProbeConfig(),
        description="Stop when the answer has settled: a streaming sample is probed with "
                    "the probe cue every intervalTokens and stops once agreement "
                    "consecutive probes give the same answer, which is its vote.")
    confidence: ConfidenceConfig = Field(
        default=ConfidenceConfig(),
        description="Per-sample confidence: confidence-weighted votes and stop rules, and "
                    "cancellation of samples whose running confidence is low.")
    prior: PriorConfig = Field(
        default=PriorConfig(),
        description="A prompt prior each router replica learns from its finished requests "
                    "(hashed n-grams, never the text), kept in the pod's state volume.")
    demand_learning: DemandLearningConfig = Field(
        default=DemandLearningConfig(),
        description="The demand model (token fill, extra samples) each router replica "
                    "learns from its finished requests; the autoscaler's demand and the "
                    "load shrink use it.")
    shrink_under_load: ShrinkUnderLoad = Field(default=ShrinkUnderLoad(),
                                               description="Budget shedding under load.")
    estimator: EstimatorSpec | None = Field(
        default=None,
        description="Difficulty estimator weights the tiers are cut on (from ponder "
                    "calibrate); the router's built-in weights if unset.")

    @model_validator(mode="after")
    def _rules(self) -> BudgetsSpec:
        names = [t.name for t in self.tiers]
        if len(set(names)) != len(names):
            raise RuleViolation("tier names must be unique", ".tiers")
        bounds = [t.max_difficulty for t in self.tiers]
        if any(a >= b for a, b in pairwise(bounds)):
            raise TIERS_ORDERED.violation(f"got {bounds}")
        if bounds[-1] != 1.0:
            raise LAST_TIER_COVERS_ALL.violation(f"got {bounds[-1]}")
        for level, rule in EFFORT_RULES.items():
            target = getattr(self.effort, level)
            if target is not None and target not in names:
                raise rule.violation(f"{target!r} is not one of {names}")
        return self

    def tier_for_difficulty(self, difficulty: float) -> BudgetTier:
        """The first tier whose band holds ``difficulty`` (clamped to 0..1)."""
        clamped = min(max(difficulty, 0.0), 1.0)
        return next(t for t in self.tiers if clamped <= t.max_difficulty)

    def effective_effort(self) -> EffortMapping:
        """The effort mapping the router gets: the overrides given, or, for the default
        tiers without any, the router's default mapping. Kept out of the CRD's default so
        a service that later lists its own tiers is not left mapping effort to tiers it no
        longer has (``kubectl apply`` keeps a defaulted field it never set)."""
        if self.effort == EffortMapping() and self.tiers == DEFAULT_TIERS:
            return DEFAULT_EFFORT
        return self.effort

    def tier_named(self, name: str) -> BudgetTier:
        """The tier called ``name``; ``KeyError`` if there is none."""
        for tier in self.tiers:
            if tier.name == name:
                return tier
        raise KeyError(name)


DEFAULT_BUDGETS = BudgetsSpec()
"""The router's ``default_policy()``, as the spec of a service without a budgets section."""


# -- router -------------------------------------------------------------------------------


class RouterResources(ApiModel):
    """What each router replica requests."""

    cpu: Str = _quantity("500m", "CPU request per router replica.")
    memory: Str = _quantity("512Mi", "Memory request and limit per router replica.")


AdmissionSpec = AdmissionConfig
"""Limits the router enforces before a request reaches Triton: the router's own model."""


class RouterSpec(ApiModel):
    """The router Deployment in front of Triton."""

    replicas: Int = Field(default=2, ge=1, le=64, description="Router replicas.")
    resources: RouterResources = Field(default=RouterResources(),
                                       description="Router container resources.")
    admission: AdmissionConfig = Field(default=AdmissionConfig(),
                                       description="Admission control.")
    affinity: AffinityConfig = Field(
        default=AffinityConfig(),
        description="Replica affinity: a request's samples, probes and forced answers on "
                    "one Triton replica (its prefix cache) until it is saturated.")
    api_keys_secret: Str | None = _optional_name(
        "Secret whose values are the accepted API keys (key name = tenant); no "
        "authentication if unset.")


# -- cost ---------------------------------------------------------------------------------


class Pricing(ApiModel):
    """Look the GPU price up in a cloud price list instead of stating it.

    The price table holds one price per (cloud, GPU type, offering): the median per-GPU
    price over the cloud's instance types with that GPU, each a median over regions. There
    is no per-region lookup; state one region's price as ``gpuHourlyPrice``.
    """

    cloud: Cloud = Field(description="Cloud whose list price applies.")
    gpu_type: Str = Field(
        min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$",
        description="Accelerator name in the price list (H100, A100-80GB, L4).")
    offering: Offering = Field(default="on-demand", description="on-demand or spot price.")


def _label(description: str) -> Any:
    return Field(default=None, max_length=63, pattern=LABEL_VALUE, description=description)


class CostLabels(ApiModel):
    """OpenCost allocation labels, set on every pod of the service."""

    team: Str | None = _label("Team.")
    department: Str | None = _label("Department.")
    env: Str | None = _label("Environment (prod, staging, ...).")
    owner: Str | None = _label("Owner.")
    app: Str | None = _label("Application.")


ONE_PRICE_SOURCE = CelRule(
    "!(has(self.gpuHourlyPrice) && has(self.pricing))",
    "set at most one of gpuHourlyPrice and pricing",
    ".pricing",
)


class CostSpec(ApiModel):
    """How GPU time is priced and labelled for cost reports."""

    model_config = _cel(ONE_PRICE_SOURCE)

    gpu_hourly_price: Float | None = Field(default=None, ge=0, le=1000,
                                           description="USD per GPU-hour.")
    pricing: Pricing | None = Field(default=None,
                                    description="Price-list lookup instead of a price.")
    labels: CostLabels = Field(default=CostLabels(), description="Cost allocation labels.")

    @model_validator(mode="after")
    def _one_price_source(self) -> CostSpec:
        if self.gpu_hourly_price is not None and self.pricing is not None:
            raise ONE_PRICE_SOURCE.violation()
        return self


# -- triton pods --------------------------------------------------------------------------

# What the operator itself puts in every Triton pod (``ponder_operator.render``): a spec may
# add to the pod, never replace these.
RESERVED_ENV = ("HOME", "XDG_CACHE_HOME", "HF_HOME", "TRITON_CACHE_DIR", "VLLM_CACHE_ROOT",
                "TRITON_AWS_MOUNT_DIRECTORY", "TRITON_GCS_MOUNT_DIRECTORY",
                "TRITON_AZURE_MOUNT_DIRECTORY", "GOOGLE_APPLICATION_CREDENTIALS")
RESERVED_VOLUMES = ("models", "tmp", "home", "shm", "repository", "gcs-credentials")
RESERVED_MOUNT_PATHS = ("/models", "/tmp", "/home/triton", "/dev/shm",
                        "/var/lib/triton/repository", "/var/run/secrets/ponder/gcs")
ENV_NAME = r"^[-._a-zA-Z][-._a-zA-Z0-9]*$"
_PASSED_THROUGH: dict[str, JsonValue] = {"x-kubernetes-preserve-unknown-fields": True}
KubeObject = Annotated[dict[str, Any], Field(json_schema_extra=_PASSED_THROUGH)]
"""A Kubernetes object copied into the pod as it is; the API server checks it there."""


def _cel_list(names: tuple[str, ...]) -> str:
    return "[" + ", ".join(f"'{n}'" for n in names) + "]"


ONE_ENV_SOURCE = CelRule(
    "has(self.value) != has(self.valueFrom)",
    "an env entry sets exactly one of value and valueFrom",
    ".value",
)


class EnvVar(ApiModel):
    """A variable for the Triton container, beside the ones the operator sets."""

    model_config = _cel(ONE_ENV_SOURCE)

    name: Str = Field(min_length=1, max_length=256, pattern=ENV_NAME,
                      description="Variable name.")
    value: Str | None = Field(default=None, max_length=32768, description="Its value.")
    value_from: KubeObject | None = Field(
        default=None,
        description="A Kubernetes EnvVarSource (secretKeyRef, configMapKeyRef, ...), "
                    "copied as it is.")

    @model_validator(mode="after")
    def _one_source(self) -> EnvVar:
        if (self.value is None) == (self.value_from is None):
            raise ONE_ENV_SOURCE.violation(self.name)
        return self


class PodVolume(BaseModel):
    """A Kubernetes Volume (its name and one source), copied onto the Triton pods as it is."""

    model_config = ConfigDict(extra="allow", frozen=True, json_schema_extra=_PASSED_THROUGH)

    name: Str = _name("Volume name, unique in the pod.", pattern=DNS_LABEL, max_length=63)

    @model_validator(mode="after")
    def _one_source(self) -> PodVolume:
        if len(self.model_extra or {}) != 1:
            raise ValueError(f"volume {self.name} must have exactly one source "
                             "(emptyDir, persistentVolumeClaim, secret, csi, ...)")
        return self


class VolumeMount(ApiModel):
    """Where one of ``volumes`` appears in the Triton container."""

    name: Str = _name("Name of a volume in volumes.", pattern=DNS_LABEL, max_length=63)
    mount_path: Str = Field(min_length=2, max_length=1024, pattern=r"^/",
                            description="Absolute path in the container.")
    sub_path: Str | None = Field(default=None, max_length=1024, pattern=r"^[^/]",
                                 description="Folder of the volume to mount; its root if unset.")
    read_only: Bool = Field(default=False, description="Mount read-only.")


class RolloutSpec(ApiModel):
    """How a spec change replaces the Triton pods (the Deployment's rolling update)."""

    max_surge: Int = Field(
        default=1, ge=0, le=1024,
        description="Replicas started above the desired count during a rollout; each needs "
                    "gpusPerReplica free GPUs. With the default a new pod serves before an "
                    "old one stops; where no GPU is free for it, set 0 and maxUnavailable 1.")
    max_unavailable: Int = Field(
        default=0, ge=0, le=1024,
        description="Replicas that may be down during a rollout; 0 keeps every replica "
                    "serving until its replacement is ready.")


_MOUNT_NAMES_KNOWN = CelRule(
    "!has(self.volumeMounts) || self.volumeMounts.all(m, has(self.volumes) && "
    "self.volumes.exists(v, v.name == m.name))",
    "every volumeMounts entry must name a volume in volumes",
    ".volumeMounts",
)
_OWN_VOLUMES = CelRule(
    f"!has(self.volumes) || self.volumes.all(v, !(v.name in {_cel_list(RESERVED_VOLUMES)}))",
    f"volume names {', '.join(RESERVED_VOLUMES)} are the operator's own",
    ".volumes",
)
_OWN_MOUNT_PATHS = CelRule(
    f"!has(self.volumeMounts) || "
    f"self.volumeMounts.all(m, !(m.mountPath in {_cel_list(RESERVED_MOUNT_PATHS)}))",
    f"mount paths {', '.join(RESERVED_MOUNT_PATHS)} are the operator's own",
    ".volumeMounts",
)
_OWN_ENV = CelRule(
    f"!has(self.env) || self.env.all(e, !(e.name in {_cel_list(RESERVED_ENV)}))",
    f"the operator sets {', '.join(RESERVED_ENV)}; env must not override them",
    ".env",
)
_ROLLOUT_MOVES = CelRule(
    "self.rollout.maxSurge + self.rollout.maxUnavailable > 0",
    "rollout.maxSurge and rollout.maxUnavailable must not both be 0",
    ".rollout",
)


class TritonPodSpec(ApiModel):
    """What the Triton pods get beyond the model and its resources, and how they roll out."""

    model_config = _cel(_MOUNT_NAMES_KNOWN, _OWN_VOLUMES, _OWN_MOUNT_PATHS, _OWN_ENV,
                        _ROLLOUT_MOVES)

    env: tuple[EnvVar, ...] = Field(
        default=(), max_length=128,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys":
                           ["name"]},
        description="Extra environment of the Triton container (HF_TOKEN from a Secret, "
                    "VLLM_* settings); the operator's own variables cannot be overridden.")
    volumes: tuple[PodVolume, ...] = Field(
        default=(), max_length=32,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys":
                           ["name"]},
        description="Extra Kubernetes volumes for the Triton pods, mounted by volumeMounts.")
    volume_mounts: tuple[VolumeMount, ...] = Field(
        default=(), max_length=32, json_schema_extra={"x-kubernetes-list-type": "atomic"},
        description="Where the extra volumes appear in the Triton container.")
    image_pull_secrets: tuple[Annotated[Str, Field(max_length=253, pattern=DNS_SUBDOMAIN)],
                              ...] = Field(
        default=(), max_length=16, json_schema_extra={"x-kubernetes-list-type": "set"},
        description="Secrets to pull model.image with (a private registry or NGC mirror).")
    runtime_class_name: Str | None = _optional_name(
        "RuntimeClass of the Triton pods (nvidia where the NVIDIA runtime is not the "
        "node's default).")
    affinity: KubeObject | None = Field(
        default=None,
        description="A Kubernetes Affinity for the Triton pods, copied as it is.")
    topology_spread_constraints: tuple[KubeObject, ...] = Field(
        default=(), max_length=8, json_schema_extra={"x-kubernetes-list-type": "atomic"},
        description="Kubernetes TopologySpreadConstraints for the Triton pods; one without "
                    "a labelSelector counts this service's Triton pods.")
    rollout: RolloutSpec = Field(default=RolloutSpec(),
                                 description="How a spec change replaces the Triton pods.")

    @model_validator(mode="after")
    def _rules(self) -> TritonPodSpec:
        volumes = [v.name for v in self.volumes]
        if len(set(volumes)) != len(volumes):
            raise RuleViolation("volume names must be unique", ".volumes")
        unknown = sorted({m.name for m in self.volume_mounts} - set(volumes))
        if unknown:
            raise _MOUNT_NAMES_KNOWN.violation(f"got {', '.join(unknown)}")
        own = sorted(set(volumes) & set(RESERVED_VOLUMES))
        if own:
            raise _OWN_VOLUMES.violation(f"got {', '.join(own)}")
        paths = sorted({m.mount_path for m in self.volume_mounts} & set(RESERVED_MOUNT_PATHS))
        if paths:
            raise _OWN_MOUNT_PATHS.violation(f"got {', '.join(paths)}")
        names = [e.name for e in self.env]
        if len(set(names)) != len(names):
            raise RuleViolation("env names must be unique", ".env")
        overridden = sorted(set(names) & set(RESERVED_ENV))
        if overridden:
            raise _OWN_ENV.violation(f"got {', '.join(overridden)}")
        if self.rollout.max_surge == self.rollout.max_unavailable == 0:
            raise _ROLLOUT_MOVES.violation()
        return self


# -- the spec -----------------------------------------------------------------------------


MAX_GPUS_FITS_ONE_REPLICA = CelRule(
    "!has(self.scaling.maxGpus) || self.scaling.maxGpus >= self.resources.gpusPerReplica",
    "scaling.maxGpus must be at least resources.gpusPerReplica",
    ".scaling.maxGpus",
)
MAX_GPUS_FITS_MIN_REPLICAS = CelRule(
    "!has(self.scaling.maxGpus) || "
    "self.scaling.maxGpus >= self.scaling.minReplicas * self.resources.gpusPerReplica",
    "scaling.maxGpus must be at least scaling.minReplicas * resources.gpusPerReplica",
    ".scaling.maxGpus",
)


class ReasoningServiceSpec(ApiModel):
    """A pool of Triton replicas serving one reasoning model, with the router in front."""

    model_config = _cel(MAX_GPUS_FITS_ONE_REPLICA, MAX_GPUS_FITS_MIN_REPLICAS)

    model: ModelSpec = Field(description="The model and its Triton server.")
    resources: ResourcesSpec = Field(default=ResourcesSpec(),
                                     description="Per-replica resources and placement.")
    scaling: ScalingSpec = Field(default=ScalingSpec(), description="Autoscaling.")
    budgets: BudgetsSpec = Field(
        default=DEFAULT_BUDGETS,
        description="Test-time compute budgets; the router's default policy if unset.")
    answers: AnswerFormat = Field(
        default=AnswerFormat(),
        description="How the model writes its final answer and when two answers are one "
                    "vote; chain and numeric if unset.")
    router: RouterSpec = Field(default=RouterSpec(), description="The router.")
    cost: CostSpec = Field(default=CostSpec(), description="Cost accounting.")
    triton: TritonPodSpec = Field(
        default=TritonPodSpec(),
        description="Triton pods: extra env, volumes, placement, pull secrets, rollout.")

    @model_validator(mode="after")
    def _gpu_quota(self) -> ReasoningServiceSpec:
        quota, per_replica = self.scaling.max_gpus, self.resources.gpus_per_replica
        if quota is None:
            return self
        if quota < per_replica:
            raise MAX_GPUS_FITS_ONE_REPLICA.violation(f"{quota} < {per_replica}")
        if quota < self.scaling.min_replicas * per_replica:
            raise MAX_GPUS_FITS_MIN_REPLICAS.violation(
                f"{quota} < {self.scaling.min_replicas} * {per_replica}")
        return self


def _field_path(loc: tuple[int | str, ...], error: Mapping[str, Any]) -> str:
    path = "spec"
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    violation = error.get("ctx", {}).get("error")
    if isinstance(violation, RuleViolation) and violation.field_path:
        path += violation.field_path
    return path


def parse_spec(body: Mapping[str, Any]) -> ReasoningServiceSpec:
    """Validate a ReasoningService, given whole (kopf's ``body``) or just its ``spec``.

    Raises ``SpecError`` whose ``field_path`` names the first offending field, in the
    spelling a user writes (``spec.budgets.tiers[1].maxTokens``).
    """
    whole_object = any(key in body for key in ("apiVersion", "kind", "metadata", "spec"))
    spec = body.get("spec") if whole_object else body
    if spec is None:
        raise SpecError("spec", "Field required")
    if not isinstance(spec, Mapping):
        raise SpecError("spec", "Input should be an object")
    try:
        return ReasoningServiceSpec.model_validate(dict(spec))
    except ValidationError as exc:
        problems = tuple(
            (_field_path(e["loc"], e), e["msg"].removeprefix("Value error, "))
            for e in exc.errors()
        )
        raise SpecError(*problems[0], problems=problems) from exc

"""The router's configuration: the operator's ConfigMap and the process environment.

Role: ``RouterConfig`` is what the operator renders into the router's ConfigMap from a
ReasoningService (camelCase keys, as the CRD) and what the router validates at start and
on every change (``load_config``; ``config_watch.ConfigWatcher`` polls the file); an
invalid new file never replaces a valid running one. ``ProcessSettings`` holds the
``PONDER_ROUTER_…`` environment variables, read in ``main()`` only. Neighbours:
``budgets`` and ``aggregate`` own the ``budgets`` and ``stopping`` sections; ``app``
applies a new config to a running router. ``StopRule``, ``AnswerFormat`` and
``AdmissionConfig`` are also the CRD's ``spec.budgets.stopping``, ``spec.answers`` and
``spec.router.admission``, and ``ForcingConfig``, ``ProbeConfig`` and ``ConfidenceConfig``
its ``spec.budgets.forcing``, ``spec.budgets.probes`` and ``spec.budgets.confidence``, and
``AffinityConfig`` its ``spec.router.affinity``, and
``DemandLearningConfig`` its ``spec.budgets.demandLearning`` (the
operator's API imports them), so those sections have one
schema; the budget tiers have their own CRD models, held to these by
``tests/unit/test_config_contract.py``. ``prior.PriorConfig`` is ``spec.budgets.prior``;
the router's ``prior`` section adds the state file's path, which the operator sets.

Shape (YAML or JSON)::

    service: qwen-7b            namespace: ml          modelName: qwen-7b
    tritonModel: qwen-7b        answers: {extractor: regex, pattern: 'A:\\s*(\\S+)', equality: text}
    endpoints: ["10.0.0.5:8001"]          # or, never both:
    discovery: {namespace: ml, labelSelector: "app=qwen-7b-triton", grpcPort: 8001}
    budgets: {tiers: [...], effortTiers: {...}, shrinkOrder: [...], demandModel: {...},
              estimator: {bias: -5.6, coefficients: {log_chars: 0.8, ...}}}  # optional
    stopping: {rule: beta, threshold: 0.95, window: 5, margin: 3}
    admission: {maxQueueLength, maxConcurrencyPerTenant, maxPromptChars,
                maxConcurrentRequests, requestTimeoutSeconds, sampleTimeoutSeconds}
    apiKeysFile: /etc/ponder/api-keys/keys     # lines "key" or "key:tenant"
    escalation: {qwen-72b: "http://qwen-72b-router.ml.svc:8080"}
    capacity: {atCeiling: false, replicas: 2, tokensPerSecondPerReplica: 2500,
               horizonSeconds: 30}
    verifier: {model: prm-1b, timeoutSeconds: 10}   # optional, for best-of-n; a tier's
                                                    # verifierModel overrides the model
    forcing: {enabled: true, cue: "\n{think_end}\n\nFinal answer:", answerTokens: 32}
    probes: {enabled: false, intervalTokens: 256, agreement: 3, maxTokens: 16,
             stop: ["}"]}   # cue unset: the forcing cue and " \\boxed{"
    affinity: {enabled: true, maxSamplesPerReplica: 64}   # a request's samples on one replica
    confidence: {weighting: false, cancel: false, percentile: 10, window: 1000,
                 minWindow: 100, minTokens: 256}
    prior: {enabled: false, nFeatures: 131072, warmRequests: 200, learningRate: 0.05,
            saveIntervalSeconds: 60, statePath: /var/lib/ponder/prior.npz}
    demandLearning: {enabled: false, windowRequests: 200, priorRequests: 10}
    chat: {preset: deepseek-r1}     # or {template: "<jinja>", thinking: {start, end}},
                                    # returnReasoning (chat.ChatFormat); plain if unset
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic.alias_generators import to_camel

from .affinity import AffinityConfig
from .aggregate import StopRule
from .answers import AnswerFormat
from .budgets import MODEL_NAME_PATTERN, BudgetPolicy, default_policy
from .chat import ChatFormat
from .confidence import ConfidenceConfig
from .demand_learning import DemandLearningConfig
from .errors import PolicyError
from .forcing import ForcingConfig
from .prior import RouterPriorConfig
from .probes import ProbeConfig

_DNS_LABEL = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"
_HOST_PORT = re.compile(r"^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?)"
                        r":(\d{1,5})$")  # fmt: skip
_MODEL_NAME = MODEL_NAME_PATTERN
_MODEL_CONFIG = ConfigDict(
    frozen=True, extra="forbid", alias_generator=to_camel, populate_by_name=True
)


class ConfigError(PolicyError):
    """The router's configuration file is missing, unreadable or invalid."""


class DiscoveryConfig(BaseModel):
    """Find Triton pods by watching Pods (label selector, ``status.podIP``, Ready)."""

    model_config = _MODEL_CONFIG

    namespace: str = Field(pattern=_DNS_LABEL, description="namespace of the Triton pods")
    label_selector: str = Field(min_length=1, max_length=1024,
                                description="label selector of the Triton pods")
    grpc_port: int = Field(default=8001, ge=1, le=65535, description="Triton's gRPC port")


class AdmissionConfig(BaseModel):
    """Limits the router enforces before a request reaches Triton."""

    # Also the ReasoningService CRD's spec.router.admission (the operator's API imports it
    # and copies it into this config as is), so the descriptions are what kubectl explain shows.

    model_config = _MODEL_CONFIG

    max_queue_length: int = Field(
        default=512, ge=0, le=1_000_000,
        description="Requests that may wait for a slot; more get 429 (0: none wait, a "
                    "request is refused while maxConcurrentRequests are running).",
    )  # fmt: skip
    max_concurrency_per_tenant: int = Field(
        default=64, ge=1, le=100_000,
        description="Requests one API key (tenant) may have queued or running.",
    )  # fmt: skip
    max_prompt_chars: int = Field(default=200_000, ge=1, le=10_000_000,
                                  description="Longer prompts are refused with 400.")
    max_concurrent_requests: int = Field(default=256, ge=1, le=100_000,
                                         description="Requests each router replica runs at once.")
    request_timeout_seconds: float = Field(
        default=600.0, gt=0, le=86_400,
        description="End-to-end limit per request, queueing included.",
    )  # fmt: skip
    sample_timeout_seconds: float = Field(default=300.0, gt=0, le=86_400,
                                          description="Limit of one sample on Triton.")


class CapacityConfig(BaseModel):
    """The pool's capacity as the autoscaler publishes it; only used to shrink budgets."""

    model_config = _MODEL_CONFIG

    at_ceiling: bool = Field(default=False, description="the autoscaler cannot add replicas")
    replicas: int = Field(default=0, ge=0, description="ready Triton replicas")
    tokens_per_second_per_replica: float = Field(
        default=0.0, ge=0.0, description="generation throughput of one replica; 0 = unknown"
    )
    horizon_seconds: float = Field(
        default=30.0, gt=0.0, description="the open demand is compared with this much "
        "capacity, and the offered load (``offered``) averaged over as long")

    @property
    def tokens_per_second(self) -> float:
        return self.replicas * self.tokens_per_second_per_replica


class VerifierConfig(BaseModel):
    """A Triton model scoring (prompt, completion) pairs for best-of-n.

    The service-wide verifier; a tier's ``verifierModel`` replaces its model for that
    tier (``RouterConfig.verifier_for``).
    """

    model_config = _MODEL_CONFIG

    model: str = Field(pattern=_MODEL_NAME, description="Triton model: text_input -> score")
    timeout_seconds: float = Field(default=10.0, gt=0, le=600)


class RouterConfig(BaseModel):
    """One ReasoningService's router, as the operator renders it into the ConfigMap."""

    model_config = _MODEL_CONFIG

    service: str = Field(pattern=_DNS_LABEL, description="the ReasoningService's name")
    namespace: str = Field(default="default", pattern=_DNS_LABEL)
    model_name: str = Field(pattern=_MODEL_NAME, description="model name clients ask for")
    triton_model: str = Field(pattern=_MODEL_NAME, description="model name inside Triton")
    endpoints: tuple[str, ...] = Field(
        default=(), max_length=1024, description="static Triton gRPC endpoints, host:port"
    )
    discovery: DiscoveryConfig | None = Field(default=None, description="watch Triton pods")
    budgets: BudgetPolicy = Field(default_factory=default_policy)
    stopping: StopRule = Field(default_factory=StopRule)
    answers: AnswerFormat = Field(default_factory=AnswerFormat,
                                  description="how answers are found and compared")
    chat: ChatFormat = Field(default_factory=ChatFormat,
                             description="the model's chat template and thinking markers")
    forcing: ForcingConfig = Field(default_factory=ForcingConfig,
                                   description="answer at the cap (budget forcing)")
    probes: ProbeConfig = Field(default_factory=ProbeConfig,
                                description="stop a sample once its answer has settled")
    affinity: AffinityConfig = Field(default_factory=AffinityConfig,
                                     description="a request's samples on one replica")
    confidence: ConfidenceConfig = Field(default_factory=ConfidenceConfig,
                                         description="per-sample confidence: weights, cancels")
    prior: RouterPriorConfig = Field(default_factory=RouterPriorConfig,
                                     description="the prompt prior learned from traffic")
    demand_learning: DemandLearningConfig = Field(
        default_factory=DemandLearningConfig,
        description="the demand model learned from finished requests")
    admission: AdmissionConfig = Field(default_factory=AdmissionConfig)
    api_keys_file: str | None = Field(
        default=None, description="mounted Secret file, lines 'key' or 'key:tenant'"
    )
    escalation: dict[str, str] = Field(
        default_factory=dict, description="ReasoningService name -> base URL of its router"
    )
    capacity: CapacityConfig = Field(default_factory=CapacityConfig)
    verifier: VerifierConfig | None = None

    def verifier_for(self, tier: str) -> VerifierConfig | None:
        """The verifier of ``tier``'s best-of-n samples; None: aggregate by majority vote.

        The tier's ``verifierModel`` when set (with the service-wide verifier's timeout, or
        the default timeout when there is none), else the service-wide verifier.
        """
        model = self.budgets.tier(tier).verifier_model
        if model is None:
            return self.verifier
        if self.verifier is None:
            return VerifierConfig(model=model)
        return self.verifier.model_copy(update={"model": model})

    @model_validator(mode="after")
    def _consistent(self) -> RouterConfig:
        if bool(self.endpoints) == (self.discovery is not None):
            raise ValueError("set exactly one of endpoints (a static list) and discovery")
        for endpoint in self.endpoints:
            match = _HOST_PORT.match(endpoint)
            if match is None or not 0 < int(match.group(2)) < 65536:
                raise ValueError(f"endpoint {endpoint!r} is not host:port")
        if len(set(self.endpoints)) != len(self.endpoints):
            raise ValueError("endpoints must not repeat")
        for name, url in self.escalation.items():
            if not re.match(_DNS_LABEL, name):
                raise ValueError(f"escalation key {name!r} is not a ReasoningService name")
            if not url.startswith(("http://", "https://")):
                raise ValueError(f"escalation URL for {name!r} must start with http(s)://")
        for tier in self.budgets.tiers:
            if tier.escalate_to is not None and tier.escalate_to not in self.escalation:
                raise ValueError(
                    f"tier {tier.name} escalates to {tier.escalate_to!r}, "
                    "which has no URL in escalation"
                )
        return self


def parse_config(text: str, source: str = "<config>") -> RouterConfig:
    """A validated ``RouterConfig`` from YAML or JSON text."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: not valid YAML/JSON: {exc}") from exc
    if not isinstance(data, Mapping):
        raise ConfigError(f"{source}: expected a mapping at the top level")
    try:
        return RouterConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{source}: invalid router config: {exc}") from exc


def load_config(path: str | Path) -> RouterConfig:
    """Read and validate the config file at ``path``."""
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read router config {path}: {exc}") from exc
    return parse_config(text, str(path))


@dataclass(frozen=True)
class ProcessSettings:
    """The process's environment: where the config is and where to listen."""

    config_path: Path
    host: str = "127.0.0.1"
    port: int = 8080
    log_level: str = "info"
    config_poll_seconds: float = 2.0

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ProcessSettings:
        env = os.environ if environ is None else environ
        path = env.get("PONDER_ROUTER_CONFIG")
        if not path:
            raise ConfigError("PONDER_ROUTER_CONFIG must name the router config file")
        try:
            port = int(env.get("PONDER_ROUTER_PORT", "8080"))
            poll = float(env.get("PONDER_ROUTER_CONFIG_POLL_SECONDS", "2"))
        except ValueError as exc:
            raise ConfigError(f"PONDER_ROUTER_PORT / _CONFIG_POLL_SECONDS: {exc}") from exc
        if not 0 < port < 65536:
            raise ConfigError(f"PONDER_ROUTER_PORT must be 1-65535, got {port}")
        return cls(
            config_path=Path(path),
            host=env.get("PONDER_ROUTER_HOST", "127.0.0.1"),
            port=port,
            log_level=env.get("PONDER_ROUTER_LOG_LEVEL", "info").lower(),
            config_poll_seconds=poll,
        )

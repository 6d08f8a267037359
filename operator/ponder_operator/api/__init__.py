"""The ReasoningService API (``reasoningservices.ponder.dev/v1alpha1``) as pydantic models.

``spec`` holds what a user asks for, ``status`` what the operator reports, and ``crd``
generates the CustomResourceDefinition from both. Everything else in the operator takes
these frozen models as input; nothing here does I/O.
"""

from __future__ import annotations

GROUP = "ponder.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "ReasoningService"
PLURAL = "reasoningservices"
SINGULAR = "reasoningservice"
SHORT_NAME = "rsvc"

from ponder_operator.api.spec import (  # noqa: E402  (the names above come first)
    AdmissionSpec,
    BudgetsSpec,
    BudgetTier,
    CelRule,
    ConfigMapSource,
    CostLabels,
    CostSpec,
    EffortMapping,
    ModelRepository,
    ModelSpec,
    Pricing,
    PvcSource,
    ReasoningServiceSpec,
    ResourcesSpec,
    RouterResources,
    RouterSpec,
    ScaleToZero,
    ScalingSpec,
    ShrinkUnderLoad,
    StoppingSpec,
    Toleration,
    UriSource,
    parse_spec,
)
from ponder_operator.api.status import (  # noqa: E402
    Condition,
    ConditionStatus,
    ConditionType,
    Reason,
    ReasoningServiceStatus,
    find_condition,
    with_condition,
)

__all__ = [
    "API_VERSION",
    "GROUP",
    "KIND",
    "PLURAL",
    "SHORT_NAME",
    "SINGULAR",
    "VERSION",
    "AdmissionSpec",
    "BudgetTier",
    "BudgetsSpec",
    "CelRule",
    "Condition",
    "ConditionStatus",
    "ConditionType",
    "ConfigMapSource",
    "CostLabels",
    "CostSpec",
    "EffortMapping",
    "ModelRepository",
    "ModelSpec",
    "Pricing",
    "PvcSource",
    "Reason",
    "ReasoningServiceSpec",
    "ReasoningServiceStatus",
    "ResourcesSpec",
    "RouterResources",
    "RouterSpec",
    "ScaleToZero",
    "ScalingSpec",
    "ShrinkUnderLoad",
    "StoppingSpec",
    "Toleration",
    "UriSource",
    "find_condition",
    "parse_spec",
    "with_condition",
]

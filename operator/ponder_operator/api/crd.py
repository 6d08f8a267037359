"""The ReasoningService CRD, generated from the pydantic models in ``spec`` and ``status``.

Run ``python -m ponder_operator.api.crd > crds/reasoningservices.ponder.dev.yaml`` after
changing a model; ``tests/unit/test_crd_drift.py`` fails while the committed file is stale.

Pydantic writes JSON Schema 2020-12; the API server wants a *structural* OpenAPI v3 schema.
The translation inlines every ``$ref``, turns ``Optional[X]`` (``anyOf: [X, null]``) into
``X`` left out of ``required``, drops ``title`` and ``additionalProperties: false`` (the API
server prunes unknown fields and ``--validate=strict`` refuses them), rewrites numeric
``exclusiveMinimum`` into OpenAPI v3's boolean form, and keeps the ``x-kubernetes-*``
extensions (CEL rules, list types) the models carry. A Kubernetes object the spec passes
through to a pod as it is (a volume source, an affinity) is an open object marked
``x-kubernetes-preserve-unknown-fields``; the API server checks it in the pod. Spec
defaults are written out (the API server applies them, so ``kubectl get -o yaml`` shows
the effective spec); status has none. Any keyword it does not know stops the generator
rather than slip through.

Output is deterministic: keys sorted, ``required`` sorted, lists in model order.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel
from pydantic.json_schema import GenerateJsonSchema
from pydantic_core import core_schema

from ponder_operator.api import GROUP, KIND, PLURAL, SHORT_NAME, SINGULAR, VERSION
from ponder_operator.api.spec import ReasoningServiceSpec
from ponder_operator.api.status import ReasoningServiceStatus
from ponder_operator.errors import PonderOperatorError

CRD_NAME = f"{PLURAL}.{GROUP}"
CRD_PATH = Path("crds") / f"{CRD_NAME}.yaml"
GENERATE_COMMAND = f"python -m ponder_operator.api.crd > {CRD_PATH}"

_PLAIN_KEYWORDS = frozenset({
    "type", "enum", "format", "minimum", "maximum", "minLength", "maxLength", "pattern",
    "minItems", "maxItems", "minProperties", "maxProperties",
})


class CrdGenerationError(PonderOperatorError):
    """A model uses a schema construct that has no structural OpenAPI v3 form."""


class _WithFactoryDefaults(GenerateJsonSchema):
    """Pydantic leaves ``default_factory`` values out of the schema; the CRD wants them."""

    def get_default_value(self, schema: core_schema.WithDefaultSchema) -> Any:
        factory = schema.get("default_factory")
        if factory is not None and not schema.get("default_factory_takes_data"):
            return factory()  # type: ignore[call-arg]
        return super().get_default_value(schema)


def _resolve(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    """Inline ``$ref`` and unwrap ``anyOf: [X, null]``; the outer keys win (descriptions)."""
    while True:
        if "$ref" in node:
            target = defs[node["$ref"].removeprefix("#/$defs/")]
            node = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
        elif "anyOf" in node:
            branches = [b for b in node["anyOf"] if b != {"type": "null"}]
            if len(branches) != 1 or len(node["anyOf"]) != 2:
                raise CrdGenerationError(f"only Optional[X] unions are structural: {node}")
            rest = {k: v for k, v in node.items() if k != "anyOf"}
            if "default" in rest and rest["default"] is None:
                del rest["default"]
            node = {**_resolve(branches[0], defs), **rest}
        else:
            return node


def _prune(value: Any) -> Any:
    """A default without nulls and empty containers: absent means the same to the models."""
    if isinstance(value, dict):
        pruned = {k: _prune(v) for k, v in value.items()}
        return {k: v for k, v in pruned.items() if v not in (None, {}, [])}
    if isinstance(value, list):
        return [_prune(v) for v in value]
    return value


def _description(text: str) -> str:
    """Docstring paragraphs with their line breaks folded, for ``kubectl explain``."""
    paragraphs = (" ".join(p.split()) for p in text.strip().split("\n\n"))
    return "\n\n".join(p for p in paragraphs if p)


def structural(node: dict[str, Any], defs: dict[str, Any], *, defaults: bool) -> dict[str, Any]:
    """Translate one pydantic JSON schema node into a structural OpenAPI v3 schema."""
    node = _resolve(node, defs)
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in {"title", "$defs"} or (key == "additionalProperties" and value is False):
            continue
        if key == "additionalProperties" and value is True:  # a Kubernetes object passed
            if not node.get("x-kubernetes-preserve-unknown-fields"):  # through as it is
                raise CrdGenerationError(f"open object without preserve-unknown-fields: {node}")
            continue
        if key.startswith("x-kubernetes-") or key in _PLAIN_KEYWORDS:
            out[key] = value
        elif key == "properties":
            out[key] = {name: structural(sub, defs, defaults=defaults)
                        for name, sub in value.items()}
        elif key in {"items", "additionalProperties"}:
            out[key] = structural(value, defs, defaults=defaults)
        elif key == "required":
            out[key] = sorted(value)
        elif key in {"exclusiveMinimum", "exclusiveMaximum"}:
            out["minimum" if key == "exclusiveMinimum" else "maximum"] = value
            out[key] = True
        elif key == "const":
            out["enum"] = [value]
        elif key == "description":
            out[key] = _description(value)
        elif key == "default":
            pruned = _prune(value)
            if defaults and pruned not in (None, {}, []):
                out[key] = pruned
        else:
            raise CrdGenerationError(f"unsupported JSON schema keyword {key!r} in {node}")
    if "type" not in out:
        raise CrdGenerationError(f"schema node without a type: {node}")
    if out["type"] == "object" and not {"properties", "additionalProperties",
                                        "x-kubernetes-preserve-unknown-fields"} & out.keys():
        raise CrdGenerationError(f"object without properties: {node}")
    return out


def model_schema(model: type[BaseModel], *, defaults: bool) -> dict[str, Any]:
    """The structural schema of one pydantic model, by alias, ``$defs`` inlined."""
    raw = model.model_json_schema(by_alias=True, mode="validation",
                                  schema_generator=_WithFactoryDefaults)
    return structural(raw, raw.get("$defs", {}), defaults=defaults)


def openapi_schema() -> dict[str, Any]:
    """The whole object's schema: apiVersion, kind, metadata, spec (required) and status."""
    return {
        "type": "object",
        "description": _description(ReasoningServiceSpec.__doc__ or ""),
        "properties": {
            "apiVersion": {"type": "string", "description": "Versioned schema of this object."},
            "kind": {"type": "string", "description": "REST resource this object represents."},
            "metadata": {"type": "object"},
            "spec": model_schema(ReasoningServiceSpec, defaults=True),
            "status": model_schema(ReasoningServiceStatus, defaults=False),
        },
        "required": ["spec"],
    }


def _column(name: str, type_: str, path: str, description: str) -> dict[str, str]:
    return {"name": name, "type": type_, "jsonPath": path, "description": description}


def crd() -> dict[str, Any]:
    """The CustomResourceDefinition as a plain object."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": CRD_NAME},
        "spec": {
            "group": GROUP,
            "names": {
                "kind": KIND,
                "listKind": f"{KIND}List",
                "plural": PLURAL,
                "singular": SINGULAR,
                "shortNames": [SHORT_NAME],
                "categories": ["ponder"],
            },
            "scope": "Namespaced",
            "versions": [{
                "name": VERSION,
                "served": True,
                "storage": True,
                "schema": {"openAPIV3Schema": openapi_schema()},
                "subresources": {
                    "status": {},
                    "scale": {
                        "specReplicasPath": ".spec.scaling.replicas",
                        "statusReplicasPath": ".status.replicas",
                        "labelSelectorPath": ".status.selector",
                    },
                },
                "additionalPrinterColumns": [
                    _column("Ready", "integer", ".status.readyReplicas",
                            "Triton replicas ready."),
                    _column("Replicas", "integer", ".status.replicas",
                            "Triton replicas that exist."),
                    _column("Desired", "integer", ".status.desiredReplicas",
                            "Replicas the autoscaler asks for."),
                    _column("GPU", "string", ".spec.resources.gpuProduct",
                            "GPU product the replicas run on."),
                    _column("Cost/h", "number", ".status.hourlyCost",
                            "USD per hour at the current replica count."),
                    _column("Age", "date", ".metadata.creationTimestamp",
                            "Time since creation."),
                ],
            }],
        },
    }


def render_crd_yaml() -> str:
    """The CRD as the YAML committed under ``crds/``."""
    header = f"# Generated from ponder_operator.api by `{GENERATE_COMMAND}`. Do not edit.\n"
    return header + yaml.safe_dump(crd(), sort_keys=True, default_flow_style=False, width=100)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ponder_operator.api.crd",
        description="Print the ReasoningService CRD generated from the pydantic models.")
    parser.add_argument("-o", "--output", type=Path,
                        help="write the CRD to this file instead of standard output")
    args = parser.parse_args(argv)
    text = render_crd_yaml()
    if args.output is None:
        sys.stdout.write(text)
    else:
        args.output.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Generate docs/reference/reasoningservice.md from the ReasoningService pydantic models.

The models in ``ponder_operator.api.spec`` and ``ponder_operator.api.status`` carry a
description on every field, their bounds and their cross-field (CEL) rules; this script
turns them into one Markdown page: a section per model, a table per section, the rules the
API server enforces, the condition vocabulary and the ``kubectl get`` columns.

    .venv/bin/python hack/gen_crd_docs.py            # rewrite the page
    .venv/bin/python hack/gen_crd_docs.py --check    # exit 1 if the page is stale

``tests/unit/test_docs_reference.py`` fails while the committed page is stale.
"""

from __future__ import annotations

import argparse
import inspect
import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from ponder_operator.api import GROUP, KIND, PLURAL, SHORT_NAME, VERSION, conditions, spec, status
from ponder_operator.api.crd import _WithFactoryDefaults, crd

REPO = Path(__file__).resolve().parents[1]
OUTPUT = REPO / "docs" / "reference" / "reasoningservice.md"
COMMAND = ".venv/bin/python hack/gen_crd_docs.py"

_BOUNDS = (
    ("minimum", "≥ {}"), ("exclusiveMinimum", "> {}"), ("maximum", "≤ {}"),
    ("exclusiveMaximum", "< {}"), ("minLength", "length ≥ {}"), ("maxLength", "length ≤ {}"),
    ("minItems", "≥ {} items"), ("maxItems", "≤ {} items"),
    ("minProperties", "≥ {} entries"), ("maxProperties", "≤ {} entries"),
)


def _models(module: Any) -> dict[str, type[BaseModel]]:
    """The module's models by class name, with the router's models it uses as sections."""
    return {obj.__name__: obj for obj in vars(module).values()
            if inspect.isclass(obj) and issubclass(obj, BaseModel)
            and obj.__module__.startswith((module.__name__, "ponder_router."))}


MODELS = {**_models(spec), **_models(status)}


def _anchor(name: str) -> str:
    return name.lower()


def _text(text: str | None) -> str:
    """One Markdown table cell: whitespace folded, pipes escaped."""
    return " ".join((text or "").split()).replace("|", "\\|")


def _paragraphs(text: str | None) -> str:
    paragraphs = (" ".join(p.split()) for p in (text or "").strip().split("\n\n"))
    return "\n\n".join(p for p in paragraphs if p)


def _unwrap(node: dict[str, Any]) -> dict[str, Any]:
    """``anyOf: [X, null]`` (an optional field) as X, keeping the outer keys."""
    if "anyOf" in node:
        branches = [b for b in node["anyOf"] if b != {"type": "null"}]
        if len(branches) == 1:
            rest = {k: v for k, v in node.items() if k != "anyOf"}
            return {**branches[0], **rest}
    return node


def _ref_name(node: dict[str, Any]) -> str | None:
    ref = node.get("$ref")
    return ref.rsplit("/", 1)[-1] if isinstance(ref, str) else None


def _type(node: dict[str, Any], defs: dict[str, Any]) -> str:
    node = _unwrap(node)
    name = _ref_name(node)
    if name and "enum" in defs.get(name, {}):  # an enum class (the router's): its values
        node = {**defs[name], **node}
    elif name:
        return f"[{name}](#{_anchor(name)})"
    if "enum" in node:
        return "enum: " + ", ".join(f"`{v}`" for v in node["enum"])
    if "const" in node:
        return f"`{node['const']}`"
    kind = node.get("type", "object")
    if kind == "array":
        return f"list of {_type(node.get('items', {}), defs)}"
    if kind == "object" and isinstance(node.get("additionalProperties"), dict):
        return f"map of string to {_type(node['additionalProperties'], defs)}"
    if node.get("format") == "date-time":
        return "string (RFC 3339 time)"
    return str(kind)


def _constraints(node: dict[str, Any]) -> str:
    node = _unwrap(node)
    parts = [fmt.format(node[key]) for key, fmt in _BOUNDS if key in node]
    if node.get("type") == "array":
        items = _unwrap(node.get("items", {}))
        parts += [f"each {fmt.format(items[key])}" for key, fmt in _BOUNDS if key in items]
    if "pattern" in node:
        parts.append(f"pattern `{node['pattern']}`")
    list_type = node.get("x-kubernetes-list-type")
    if list_type == "set":
        parts.append("no duplicates")
    elif list_type == "map":
        keys = ", ".join(node.get("x-kubernetes-list-map-keys", []))
        parts.append(f"unique by {keys}")
    return "; ".join(parts)


def _default(node: dict[str, Any], required: bool) -> str:
    if required:
        return "required"
    if "default" not in node or node["default"] is None:
        return ""
    value = node["default"]
    if isinstance(value, dict) and _ref_name(_unwrap(node)):
        return "see its fields"
    return f"`{json.dumps(value, separators=(', ', ': '))}`"


def _rules(model: type[BaseModel]) -> list[dict[str, str]]:
    extra = model.model_config.get("json_schema_extra")
    rules = extra.get("x-kubernetes-validations") if isinstance(extra, dict) else None
    if not isinstance(rules, list):
        return []
    return [{k: str(v) for k, v in r.items()} for r in rules if isinstance(r, dict)]


def _schema(model: type[BaseModel], *, defaults: bool) -> dict[str, Any]:
    generator = _WithFactoryDefaults
    schema = model.model_json_schema(by_alias=True, mode="validation", schema_generator=generator)
    if not defaults:
        for prop in schema.get("properties", {}).values():
            prop.pop("default", None)
    return schema


def _walk(root: type[BaseModel]) -> Iterator[type[BaseModel]]:
    """``root`` and every model it references, breadth first, in field order."""
    seen: list[str] = []
    queue = [root.__name__]
    while queue:
        name = queue.pop(0)
        if name in seen:
            continue
        seen.append(name)
        model = MODELS[name]
        yield model
        for node in _schema(model, defaults=False).get("properties", {}).values():
            for found in re.findall(r"#/\$defs/(\w+)", json.dumps(node)):
                if found in MODELS and found not in seen:
                    queue.append(found)


def _section(model: type[BaseModel], path: str, *, defaults: bool) -> list[str]:
    schema = _schema(model, defaults=defaults)
    required = set(schema.get("required", []))
    lines = [f"### {model.__name__}", ""]
    if path:
        lines += [f"At `{path}`.", ""]
    lines += [_paragraphs(model.__doc__), ""]
    header = ["Field", "Type", "Default", "Constraints", "Description"]
    if not defaults:
        header.remove("Default")
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, node in schema.get("properties", {}).items():
        cells = [f"`{name}`", _type(node, schema.get("$defs", {})), _default(node, name in required),
                 _constraints(node), " ".join((node.get("description") or "").split())]
        if not defaults:
            del cells[2]
        lines.append("| " + " | ".join((c or "").replace("|", "\\|") for c in cells) + " |")
    rules = _rules(model)
    if rules:
        lines += ["", "Rules (checked by the API server and by the operator alike):", ""]
        for rule in rules:
            where = f" (reported at `{rule['fieldPath']}`)" if rule.get("fieldPath") else ""
            lines.append(f"- {rule['message']}{where}: `{rule['rule']}`")
    return [*lines, ""]


def _paths(root: type[BaseModel], prefix: str) -> dict[str, str]:
    """Where each model sits in the object (the first path that reaches it)."""
    found: dict[str, str] = {root.__name__: prefix}
    queue = [(root, prefix)]
    while queue:
        model, path = queue.pop(0)
        for name, node in _schema(model, defaults=False).get("properties", {}).items():
            node = _unwrap(node)
            suffix = ""
            if node.get("type") == "array":
                node, suffix = _unwrap(node.get("items", {})), "[]"
            target = _ref_name(node)
            if target and target in MODELS and target not in found:
                found[target] = f"{path}.{name}{suffix}"
                queue.append((MODELS[target], found[target]))
    return found


def _enum_comments(cls: type) -> dict[str, str]:
    """The comment on each member of an enum, by value, from its source."""
    comments: dict[str, str] = {}
    for line in inspect.getsource(cls).splitlines()[1:]:
        member = re.fullmatch(r'\w+\s*=\s*"([^"]+)"\s*(?:#\s*(.*))?', line.strip())
        if member:
            comments[member.group(1)] = member.group(2) or ""
    return comments


def _reasons() -> list[str]:
    """The reasons table: each condition type's reasons (``CONDITION_REASONS``), with meaning."""
    meanings = _enum_comments(conditions.Reason)
    lines = ["| Condition | Reason | Meaning |", "|---|---|---|"]
    for type_, reasons in conditions.CONDITION_REASONS.items():
        lines += [f"| {type_} | `{reason}` | {_text(meanings[reason])} |" for reason in reasons]
    return lines


def _columns() -> list[str]:
    version = crd()["spec"]["versions"][0]
    lines = ["| Column | Source | Meaning |", "|---|---|---|"]
    for column in version["additionalPrinterColumns"]:
        lines.append(f"| {column['name']} | `{column['jsonPath']}` | "
                     f"{_text(column['description'])} |")
    scale = version["subresources"]["scale"]
    lines += ["", "The scale subresource maps `kubectl scale rsvc` to "
              f"`{scale['specReplicasPath']}` (applied while `spec.scaling.paused` is true) and "
              f"reads `{scale['statusReplicasPath']}` and `{scale['labelSelectorPath']}`."]
    return lines


def render() -> str:
    lines = [
        f"<!-- Generated by `{COMMAND}` from ponder_operator.api. Do not edit. -->",
        "",
        f"# {KIND} reference",
        "",
        f"`{PLURAL}.{GROUP}/{VERSION}`, namespaced, short name `{SHORT_NAME}`. "
        f"`kubectl explain {SHORT_NAME}.spec` shows the same descriptions.",
        "",
        "Every field is camelCase on the wire. Unknown fields are refused "
        "(`kubectl apply --validate=strict`, the default), scalars are strict (`\"3\"` is not "
        "an integer), and the defaults below are written by the API server, so "
        f"`kubectl get {SHORT_NAME} NAME -o yaml` shows the effective spec.",
        "",
        "## Spec",
        "",
    ]
    spec_paths = _paths(spec.ReasoningServiceSpec, "spec")
    for model in _walk(spec.ReasoningServiceSpec):
        lines += _section(model, spec_paths[model.__name__], defaults=True)
    lines += ["## Status", "", "Written by the operator only.", ""]
    status_paths = _paths(status.ReasoningServiceStatus, "status")
    for model in _walk(status.ReasoningServiceStatus):
        lines += _section(model, status_paths[model.__name__], defaults=False)
    lines += ["## Conditions", "", "| Type | Meaning |", "|---|---|"]
    lines += [f"| `{value}` | {_text(comment)} |"
              for value, comment in _enum_comments(conditions.ConditionType).items()]
    lines += ["", *_reasons()]
    lines += ["", "## kubectl get columns", "", *_columns(), ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="exit 1 if the committed page differs from the models")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        if not OUTPUT.exists() or OUTPUT.read_text() != text:
            sys.stderr.write(f"{OUTPUT.relative_to(REPO)} is stale: run {COMMAND}\n")
            return 1
        return 0
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    OUTPUT.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""docs/reference/reasoningservice.md is what hack/gen_crd_docs.py generates from the models."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parents[2]


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_crd_docs", REPO / "hack" / "gen_crd_docs.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_crd_reference_is_in_sync_with_the_models() -> None:
    generator = _generator()
    committed = (REPO / "docs" / "reference" / "reasoningservice.md").read_text()
    assert committed == generator.render(), (
        "docs/reference/reasoningservice.md is stale: run .venv/bin/python hack/gen_crd_docs.py")


def test_the_crd_reference_documents_every_spec_field() -> None:
    from ponder_operator.api.crd import openapi_schema

    page = (REPO / "docs" / "reference" / "reasoningservice.md").read_text()

    def fields(node: dict[str, object]) -> set[str]:
        names: set[str] = set()
        properties = node.get("properties")
        if isinstance(properties, dict):
            for name, sub in properties.items():
                names.add(name)
                names |= fields(sub)
        items = node.get("items")
        if isinstance(items, dict):
            names |= fields(items)
        return names

    spec = openapi_schema()["properties"]["spec"]
    missing = {name for name in fields(spec) if f"| `{name}` |" not in page}
    assert not missing


def test_the_crd_reference_lists_the_cel_rules_with_their_messages() -> None:
    from ponder_operator.api.spec import EXACTLY_ONE_SOURCE, TIERS_ORDERED

    page = (REPO / "docs" / "reference" / "reasoningservice.md").read_text()
    for rule in (EXACTLY_ONE_SOURCE, TIERS_ORDERED):
        assert rule.message in page
        assert rule.rule in page

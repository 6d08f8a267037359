"""The examples and the ReasoningServices shown in the docs are ones the operator accepts,
and the docs' links lead somewhere."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from ponder_operator.api.spec import parse_spec

REPO = Path(__file__).resolve().parents[2]
DOCS = sorted((REPO / "docs").rglob("*.md"))
EXAMPLES = sorted((REPO / "examples").glob("*.yaml"))


def _services_in_docs() -> list[tuple[str, dict[str, Any]]]:
    found = []
    for page in DOCS:
        for block in re.findall(r"```yaml\n(.*?)```", page.read_text(), re.DOTALL):
            for doc in yaml.safe_load_all(block):
                if isinstance(doc, dict) and doc.get("kind") == "ReasoningService":
                    found.append((f"{page.relative_to(REPO)}:{doc['metadata']['name']}", doc))
    return found


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_every_example_is_a_service_the_operator_accepts(path: Path) -> None:
    for doc in yaml.safe_load_all(path.read_text()):
        assert doc["apiVersion"] == "ponder.dev/v1alpha1"
        parse_spec(doc)


@pytest.mark.parametrize(("where", "doc"), _services_in_docs(), ids=lambda v: str(v)[:60])
def test_every_service_shown_in_the_docs_is_one_the_operator_accepts(
    where: str, doc: dict[str, Any]
) -> None:
    parse_spec(doc)


def test_the_docs_show_at_least_one_service() -> None:
    assert _services_in_docs()


@pytest.mark.parametrize("page", DOCS, ids=lambda p: str(p.relative_to(REPO)))
def test_every_relative_link_in_the_docs_leads_to_a_file(page: Path) -> None:
    prose = re.sub(r"```.*?```", "", page.read_text(), flags=re.DOTALL)
    prose = re.sub(r"`[^`\n]*`", "", prose)
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", prose):
        if re.match(r"[a-z]+:", target):
            continue
        assert (page.parent / target).exists(), f"{page.name} links to missing {target}"

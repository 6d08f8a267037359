"""The examples and the ReasoningServices shown in the docs are ones the operator accepts,
the docs' links lead somewhere, and the model repository the install guide shows is one
the rendered pod loads."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from ponder_operator.api.spec import parse_spec
from ponder_operator.model_check import check, notes
from ponder_operator.render import MODEL_MOUNT, Owner, render_triton_deployment

REPO = Path(__file__).resolve().parents[2]
DOCS = sorted((REPO / "docs").rglob("*.md"))
EXAMPLES = sorted((REPO / "examples").glob("*.yaml"))
OWNER = Owner(name="qwen", namespace="ml", uid="0000-1111")


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


INSTALL = REPO / "docs" / "install.md"


def _files_in(page: Path) -> dict[str, str]:
    """The code blocks of a page that name the file they show (```json file=a/b.json)."""
    return dict(re.findall(r"```\w+ file=(\S+)\n(.*?)```", page.read_text(), re.DOTALL))


def test_the_model_repository_shown_in_the_install_guide_passes_the_pods_own_check(
    tmp_path: Path,
) -> None:
    (service,) = [doc for where, doc in _services_in_docs() if where.endswith(":qwen-on-a-pvc")]
    pod = render_triton_deployment(OWNER, parse_spec(service))["spec"]["template"]["spec"]
    for relative, text in _files_in(INSTALL).items():
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / relative).write_text(text)
    # the init container's arguments, with the claim's root at tmp_path instead of /models
    repository, model, backend, gpus = pod["initContainers"][0]["command"][3:]
    folder = tmp_path / repository.removeprefix(MODEL_MOUNT + "/") / model
    assert check(folder, backend, int(gpus)) == []
    assert notes(folder, backend) == []  # engine metrics reported, for the autoscaler
    # the weights path is absolute, inside the claim's mount, where the layout puts them
    weights = json.loads((folder / "1" / "model.json").read_text())["model"]
    (triton,) = pod["containers"]
    mounts = [m for m in triton["volumeMounts"] if weights.startswith(m["mountPath"] + "/")]
    assert [m["name"] for m in mounts] == ["models"]
    assert f"  {weights.removeprefix(MODEL_MOUNT + '/')}/" in INSTALL.read_text()
    assert "ENABLE_VLLM_HEALTH_CHECK" in (folder / "config.pbtxt").read_text()


def test_the_triton_user_the_install_guide_names_is_the_one_the_pods_run_as() -> None:
    service = {"model": {"name": "m", "repository": {"pvc": {"claimName": "c"}}}}
    pod = render_triton_deployment(OWNER, parse_spec(service))["spec"]["template"]["spec"]
    security = pod["securityContext"]
    assert security["runAsNonRoot"] is True
    assert f"to UID {security['runAsUser']} and `runAsNonRoot`" in INSTALL.read_text()

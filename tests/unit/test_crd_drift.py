"""The committed CRD is what the models generate, and it is a structural schema."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from ponder_operator.api.crd import CRD_PATH, GENERATE_COMMAND, crd, render_crd_yaml

ROOT = Path(__file__).resolve().parents[2]
STALE = f"{CRD_PATH} is stale: regenerate it with `{GENERATE_COMMAND}` (from the repository root)"


def schema_nodes(node: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    yield path, node
    for name, sub in node.get("properties", {}).items():
        yield from schema_nodes(sub, f"{path}.{name}")
    for key in ("items", "additionalProperties"):
        if isinstance(node.get(key), dict):
            yield from schema_nodes(node[key], f"{path}[{key}]")


def spec_and_status() -> Iterator[tuple[str, dict[str, Any]]]:
    root = crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    for name in ("spec", "status"):
        yield from schema_nodes(root["properties"][name], name)


def test_committed_crd_matches_the_models() -> None:
    committed = (ROOT / CRD_PATH).read_text()

    assert committed == render_crd_yaml(), STALE


@pytest.mark.parametrize("hash_seed", ["0", "1"])
def test_the_generator_command_prints_the_committed_crd_whatever_the_hash_seed(
    hash_seed: str,
) -> None:
    # Fresh processes with different string hashing: no set or dict order leaks into the CRD.
    result = subprocess.run([sys.executable, "-m", "ponder_operator.api.crd"],
                            capture_output=True, text=True, check=True, cwd=ROOT,
                            env={**os.environ, "PYTHONHASHSEED": hash_seed})  # fmt: skip

    assert result.stdout == (ROOT / CRD_PATH).read_text(), STALE


def test_every_schema_node_is_structural() -> None:
    forbidden = {"$ref", "$defs", "anyOf", "oneOf", "allOf", "title", "uniqueItems", "const"}
    for path, node in spec_and_status():
        assert not forbidden & node.keys(), path
        assert "type" in node, path
        assert node.get("default", ...) is not None, path
        if node["type"] == "object":
            open_object = node.get("x-kubernetes-preserve-unknown-fields") is True
            assert "properties" in node or "additionalProperties" in node or open_object, path


def test_only_the_kubernetes_objects_passed_to_the_triton_pods_keep_unknown_fields() -> None:
    open_paths = {path for path, node in spec_and_status()
                  if node.get("x-kubernetes-preserve-unknown-fields")}
    assert open_paths == {
        "spec.triton.env[items].valueFrom", "spec.triton.volumes[items]",
        "spec.triton.affinity", "spec.triton.topologySpreadConstraints[items]"}


def test_every_spec_field_is_described_and_bounded_for_cel() -> None:
    for path, node in spec_and_status():
        if not path.endswith("]"):
            assert node.get("description"), f"{path} has no description"
        if node["type"] == "string" and "enum" not in node and "format" not in node:
            assert "maxLength" in node, f"{path} has no maxLength"
        if node["type"] == "array":
            assert "maxItems" in node, f"{path} has no maxItems"


def test_status_has_no_defaults() -> None:
    for path, node in spec_and_status():
        if path.startswith("status"):
            assert "default" not in node, path


def test_scale_subresource_points_at_existing_fields() -> None:
    version = crd()["spec"]["versions"][0]
    root = version["schema"]["openAPIV3Schema"]
    scale = version["subresources"]["scale"]

    for json_path in scale.values():
        node = root
        for part in json_path.strip(".").split("."):
            node = node["properties"][part]
        assert node["type"] in {"integer", "string"}, json_path


def test_committed_file_is_one_yaml_document() -> None:
    docs = list(yaml.safe_load_all((ROOT / CRD_PATH).read_text()))

    assert [d["kind"] for d in docs] == ["CustomResourceDefinition"]

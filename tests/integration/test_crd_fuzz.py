"""Generated invalid ReasoningServices against the real API server and the real operator.

Hypothesis mutates a valid service (``examples/multi-tier.yaml``) at a path drawn from
the CRD's own schema: a value of a wrong type or out of range, an unknown field, a
required field removed. Each is created the way kubectl does (strict field validation).
Either the API server rejects it with a message naming the field, or, once accepted, the
operator marks it ``Ready`` with a reason (``False``/``InvalidSpec`` when the models
refuse what the schema let through) — and the operator process never goes down.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kubernetes import client, config
from kubernetes.client.rest import ApiException

from fixtures_operator import StartOperator, eventually, get_json
from ponder_localstack.cluster import Cluster
from ponder_operator.api.crd import CRD_NAME
from ponder_operator.api.spec import parse_spec
from ponder_operator.errors import SpecError

pytestmark = pytest.mark.cluster

ROOT = Path(__file__).resolve().parents[2]
GROUP, VERSION, PLURAL = "ponder.dev", "v1alpha1", "reasoningservices"
Path_ = tuple[str | int, ...]


def base_service() -> dict[str, Any]:
    service: dict[str, Any] = yaml.safe_load((ROOT / "examples" / "multi-tier.yaml").read_text())
    service["spec"]["scaling"]["minReplicas"] = 0  # no pods for a thousand fuzz services
    return service


def spec_paths(schema: dict[str, Any], prefix: Path_ = ()) -> Iterator[tuple[Path_, bool]]:
    """Every field path under ``schema`` and whether the field is required."""
    required = set(schema.get("required", ()))
    for key, sub in schema.get("properties", {}).items():
        path = (*prefix, key)
        yield path, key in required
        if sub.get("type") == "object":
            yield from spec_paths(sub, path)
        elif sub.get("type") == "array" and sub.get("items", {}).get("type") == "object":
            yield from spec_paths(sub["items"], (*path, 0))


def crd_spec_schema() -> dict[str, Any]:
    crd = yaml.safe_load((ROOT / "crds" / f"{CRD_NAME}.yaml").read_text())
    schema: dict[str, Any] = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return dict(schema["properties"]["spec"])


PATHS = sorted(spec_paths(crd_spec_schema()), key=str)
WRONG_VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**40), 2**40), st.sampled_from([-1, 0, 10**9]),
    st.floats(allow_nan=False, allow_infinity=False, width=32), st.text(max_size=40),
    st.sampled_from(["", "x" * 5000, "1e309", "-5", "NaN", "0.5", "🙂"]),
    st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=8), st.integers(),
                                                         max_size=2))  # fmt: skip


@st.composite
def mutations(draw: st.DrawFn) -> tuple[str, Path_, dict[str, Any], tuple[str, ...]]:
    """(kind of mutation, the path it hit, the mutated service, the objects on the path it
    had to create: a refusal may name one of those instead, e.g. a required field of a
    ``pvc`` block the example does not have)."""
    service = base_service()
    path, required = draw(st.sampled_from(PATHS))
    parent: Any = service["spec"]
    created: list[str] = []
    for step in path[:-1]:
        if isinstance(step, int):
            parent = parent if parent else [{}]
            parent = parent[0]
        else:
            if step not in parent:
                created.append(step)
            parent = parent.setdefault(step, {})
    leaf = path[-1]
    kinds = ["value", "unknown", "remove"] if required else ["value", "unknown"]
    kind = draw(st.sampled_from(kinds))
    if kind == "value":
        parent[leaf] = draw(WRONG_VALUES)
    elif kind == "unknown":
        parent[f"{leaf}Typo"] = draw(WRONG_VALUES)
    else:
        parent.pop(leaf, None)
    return kind, path, service, tuple(created)


@pytest.fixture
def api(cluster: Cluster) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(config.new_client_from_config(str(cluster.kubeconfig)))


def test_invalid_services_are_refused_by_name_or_marked_not_ready_and_nothing_crashes(
    cluster: Cluster, namespace: str, start_operator: StartOperator, api: client.CustomObjectsApi
) -> None:
    operator = start_operator()
    accepted: dict[str, str] = {}  # name -> the mutation, for messages
    refused: list[str] = []

    @settings(max_examples=150, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))  # fmt: skip
    @given(mutations())
    def create(mutation: tuple[str, Path_, dict[str, Any], tuple[str, ...]]) -> None:
        kind, path, service, created = mutation
        name = f"fuzz-{len(accepted) + len(refused)}"
        service = copy.deepcopy(service)
        service["metadata"] = {"name": name}
        try:
            api.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, service,
                                                field_validation="Strict")  # fmt: skip
        except ApiException as exc:
            refusal = exc
        else:
            accepted[name] = f"{kind} at spec.{'.'.join(map(str, path))}"
            return
        assert refusal.status in (400, 422), f"{refusal.status} for {kind} at {path}"
        message = json.loads(refusal.body)["message"]
        named = str(path[-1]) if kind != "unknown" else f"{path[-1]}Typo"
        assert named in message or any(f".{c}." in message for c in created), \
            f"{kind} at {path}: the refusal does not name it: {message}"  # fmt: skip
        refused.append(name)

    create()
    assert refused, "no mutation was refused: the schema validates nothing"

    def marked(name: str) -> dict[str, Any] | None:
        status = get_json(cluster, "rsvc", name, "-n", namespace).get("status", {})
        ready = [c for c in status.get("conditions", []) if c["type"] == "Ready"]
        return ready[0] if ready and ready[0].get("reason") else None

    for name, mutation in accepted.items():
        ready = eventually(lambda n=name: marked(n), timeout_seconds=120,  # type: ignore[misc]
                           what=f"{name} ({mutation}) marked Ready with a reason")
        stored = get_json(cluster, "rsvc", name, "-n", namespace)  # as pruned and defaulted
        refused_offline = None
        try:
            parse_spec(stored)
        except SpecError as exc:
            refused_offline = str(exc)
        if refused_offline:
            assert (ready["status"], ready["reason"]) == ("False", "InvalidSpec"), \
                f"{name} ({mutation}): the models refuse it ({refused_offline}) but it is {ready}"
    assert operator.alive, "the operator went down"
    assert "Traceback" not in operator.log_path.read_text()

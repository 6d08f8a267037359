"""The built wheel, installed alone into a fresh virtualenv, runs what the docs promise.

The wheel is built from the image's build context (``.dockerignore``: pyproject.toml,
README.md, operator/, router/, tools/) and installed with uv into a new virtualenv without
the ``tools`` extra, as in the image. It must hold the product and the tools and never the
local stack, and every ``ponder`` subcommand the README lists must run there: ``--help``
for each, and a small real run where one is cheap. uv comes from ``hack/setup.sh python``;
missing, the tests fail under ``CI=true`` and skip elsewhere.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from components import require, require_data
from ponder_localstack.paths import uv_tool
from ponder_tools.cli import build_parser

REPO = Path(__file__).resolve().parents[2]
CONTEXT = ("pyproject.toml", "README.md", "operator", "router", "tools")
"""What the image's build context lets in (``.dockerignore``)."""

pytestmark = pytest.mark.timeout(600)


@dataclass(frozen=True)
class Installed:
    wheel: Path
    bin: Path

    def ponder(self, args: Sequence[str], **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(self.bin / "ponder"), *args], capture_output=True,
                              text=True, timeout=300, cwd=self.bin.parent,
                              env={**os.environ, **env})  # fmt: skip


def _run(command: Sequence[str | Path], **env: str) -> None:
    result = subprocess.run([str(c) for c in command], capture_output=True, text=True,
                            timeout=500, env={**os.environ, **env})  # fmt: skip
    assert result.returncode == 0, f"{command}: {result.stdout}{result.stderr}"


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    uv = require(uv_tool)
    root = tmp_path_factory.mktemp("wheel")
    source = root / "context"
    source.mkdir()
    for name in CONTEXT:
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, source / name,
                            ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "build"))
        else:
            shutil.copy2(REPO / name, source / name)
    _run([uv, "build", "--wheel", "--out-dir", root / "dist", source])
    (wheel,) = (root / "dist").glob("ponder-*.whl")
    venv = root / "venv"
    _run([uv, "venv", "-q", "--python", sys.executable, venv])
    # uv's own cache (~/.cache/uv) makes a second run fast.
    _run([uv, "pip", "install", "-q", wheel], VIRTUAL_ENV=str(venv))
    return Installed(wheel, venv / "bin")


def documented_subcommands() -> list[str]:
    """The ``ponder`` subcommands README.md's CLI table lists (``cost report`` as one)."""
    readme = (REPO / "README.md").read_text()
    return sorted(set(re.findall(r"^\| `ponder ([a-z]+(?: report)?)\b", readme, re.M)))


DOCUMENTED = documented_subcommands()


def test_the_wheel_holds_the_product_and_the_tools_but_not_the_local_stack(
    installed: Installed,
) -> None:
    names = zipfile.ZipFile(installed.wheel).namelist()
    packages = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert packages == {"ponder_operator", "ponder_router", "ponder_tools"}
    assert not [n for n in names if "ponder_localstack" in n]


def test_the_readme_lists_every_subcommand_the_cli_has() -> None:
    (action,) = [a for a in build_parser()._actions
                 if isinstance(a, argparse._SubParsersAction)]  # fmt: skip
    assert {c.split()[0] for c in DOCUMENTED} == set(action.choices)


@pytest.mark.parametrize("subcommand", ["", *DOCUMENTED])
def test_every_documented_subcommand_answers_help(installed: Installed, subcommand: str) -> None:
    result = installed.ponder([*subcommand.split(), "--help"])
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: ponder")


def test_the_console_scripts_of_the_pods_import(installed: Installed) -> None:
    result = subprocess.run([str(installed.bin / "python"), "-c",
                             "import ponder_operator.main, ponder_router.main"],
                            capture_output=True, text=True, timeout=120)  # fmt: skip
    assert result.returncode == 0, result.stderr


def test_ponder_evaluate_and_calibrate_run_on_a_small_file(installed: Installed,
                                                           tmp_path: Path) -> None:  # fmt: skip
    data = tmp_path / "tiny.jsonl"
    with data.open("w") as f:
        for i in range(12):
            samples = [f"\\boxed{{{i if (i + j) % 3 else i + 1}}}" for j in range(8)]
            f.write(json.dumps({"id": f"p{i}", "question": f"What is {i}?",
                                "reference": str(i), "samples": samples,
                                "tokens": [100 + j for j in range(8)]}) + "\n")  # fmt: skip
    evaluated = installed.ponder(["evaluate", "--data", str(data), "--orderings", "3",
                                  "--out", str(tmp_path / "evaluate")])  # fmt: skip
    assert evaluated.returncode == 0, evaluated.stderr
    assert "no plot: matplotlib is not installed" in evaluated.stdout
    document = json.loads((tmp_path / "evaluate" / "evaluate_tiny.json").read_text())
    assert document["results"]
    calibrated = installed.ponder(["calibrate", "--data", str(data), "--orderings", "3",
                                   "--out", str(tmp_path / "calibrate")])  # fmt: skip
    assert calibrated.returncode == 0, calibrated.stderr
    assert (tmp_path / "calibrate" / "budgets-spec.yaml").is_file()


def test_ponder_simulate_replays_two_minutes_of_a_real_trace(installed: Installed,
                                                            tmp_path: Path) -> None:  # fmt: skip
    data = require_data("traces").parent
    result = installed.ponder(["simulate", "--trace", "azure-conv", "--duration-seconds", "120",
                               "--policies", "ponder,hpa", "--out", str(tmp_path)],
                              PONDER_DATA_DIR=str(data))  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert json.loads((tmp_path / "simulate_azure-conv.json").read_text())


def test_ponder_cost_report_says_in_one_line_that_prometheus_is_unreachable(
    installed: Installed,
) -> None:
    result = installed.ponder(["cost", "report", "--prometheus", "http://127.0.0.1:9",
                               "--since", "1h", "--progress", "never"])  # fmt: skip
    assert result.returncode != 0
    assert "cannot reach Prometheus" in result.stderr
    assert "Traceback" not in result.stderr


def test_the_stand_in_source_without_the_local_stack_names_what_to_install(
    installed: Installed,
) -> None:
    result = installed.ponder(["evaluate", "--builtin", "standin-math500"])
    assert result.returncode == 2
    assert "ponder-localstack" in result.stderr
    assert "Traceback" not in result.stderr

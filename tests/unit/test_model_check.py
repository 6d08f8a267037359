"""The model check the Triton pods' init container runs (issue 20, row 3).

It runs as ``python3 -c <source>`` in the Triton image, so one test runs the rendered
command itself, with this interpreter, against repositories on disk.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from ponder_operator.api.spec import parse_spec
from ponder_operator.model_check import check, notes
from ponder_operator.render import MODEL_CHECK_SOURCE, Owner, render_triton_deployment

SIM_LLM = Path(__file__).resolve().parents[2] / "localstack/ponder_localstack/sim_llm"
VLLM_CONFIG = 'backend: "vllm"\ninstance_group [ { count: 1, kind: KIND_MODEL } ]\n'


def model_folder(root: Path, config: str, engine: dict[str, Any] | str | None) -> Path:
    folder = root / "m"
    (folder / "1").mkdir(parents=True)
    (folder / "config.pbtxt").write_text(config)
    if engine is not None:
        text = engine if isinstance(engine, str) else json.dumps(engine)
        (folder / "1" / "model.json").write_text(text)
    return folder


@pytest.mark.parametrize(("config", "engine", "gpus", "problem"), [
    pytest.param(VLLM_CONFIG, {"model": "/models/w", "tensor_parallel_size": 4}, 4, None,
                 id="tensor-parallel-over-every-gpu-passes"),
    pytest.param('backend: "vllm"\n', {"model": "Qwen/Qwen2.5-7B"}, 1, None,
                 id="defaults-on-one-gpu-pass"),
    pytest.param(VLLM_CONFIG, {"model": "w", "tensor_parallel_size": 2,
                               "pipeline_parallel_size": 2}, 4, None,
                 id="tensor-times-pipeline-over-every-gpu-passes"),
    pytest.param(VLLM_CONFIG, {"model": "w"}, 2, "must equal spec.resources.gpusPerReplica (2)",
                 id="one-gpu-engine-on-a-two-gpu-pod"),
    pytest.param(VLLM_CONFIG, {"model": "w", "tensor_parallel_size": 8}, 4,
                 "tensor_parallel_size (8)", id="engine-wants-more-gpus-than-the-pod-gets"),
    pytest.param(VLLM_CONFIG, {"model": "w", "gpu_memory_utilization": 1.5}, 1,
                 "gpu_memory_utilization must be in (0, 1]", id="memory-share-above-one"),
    pytest.param(VLLM_CONFIG, {"tensor_parallel_size": 1}, 1, "naming the model",
                 id="engine-without-a-model"),
    pytest.param(VLLM_CONFIG, "{not json", 1, "is not JSON", id="engine-not-json"),
    pytest.param(VLLM_CONFIG, None, 1, "model.json is missing", id="no-engine-arguments"),
    pytest.param('backend: "vllm"\ninstance_group [ { count: 1, kind: KIND_GPU } ]\n',
                 {"model": "w"}, 1, "must be KIND_MODEL", id="one-engine-per-gpu"),
    pytest.param('backend: "vllm"\ninstance_group [ { count: 2, kind: KIND_MODEL } ]\n',
                 {"model": "w"}, 1, "count must be 1", id="two-engines"),
    pytest.param(VLLM_CONFIG + "model_transaction_policy { decoupled: false }\n",
                 {"model": "w"}, 1, "decoupled: true", id="not-decoupled"),
    pytest.param('backend: "python"\n', {"model": "w"}, 1,
                 "backend is 'python', spec.model.backend is 'vllm'", id="other-backend"),
    pytest.param('# backend: "vllm"\n', {"model": "w"}, 1, "backend is 'unset'",
                 id="backend-only-in-a-comment"),
])
def test_the_model_check_finds_what_would_fail_at_load_and_passes_the_rest(
    tmp_path: Path, config: str, engine: dict[str, Any] | str | None, gpus: int,
    problem: str | None
) -> None:
    problems = check(model_folder(tmp_path, config, engine), "vllm", gpus)
    if problem is None:
        assert problems == []
    else:
        assert any(problem in p for p in problems), problems


def test_the_stand_in_models_own_configuration_passes_as_a_python_model() -> None:
    assert check(SIM_LLM, "python", 1) == []


def test_a_python_model_must_be_decoupled(tmp_path: Path) -> None:
    folder = model_folder(tmp_path, 'backend: "python"\n', None)
    assert any("decoupled: true" in p for p in check(folder, "python", 1))


def test_a_missing_model_folder_names_the_spec_field_to_check(tmp_path: Path) -> None:
    (problem,) = check(tmp_path / "absent", "vllm", 1)
    assert "spec.model.tritonModelName" in problem


@pytest.mark.parametrize(("tensor_parallel_size", "status"), [(2, 0), (1, 1)])
def test_the_rendered_init_container_runs_on_the_standard_library_and_fails_a_mismatch(
    tmp_path: Path, tensor_parallel_size: int, status: int
) -> None:
    model_folder(tmp_path, VLLM_CONFIG, {"model": "w",
                                         "tensor_parallel_size": tensor_parallel_size})
    spec = parse_spec({"model": {"name": "m", "repository": {"pvc": {"claimName": "c"}}},
                       "resources": {"gpusPerReplica": 2}})
    pod = render_triton_deployment(Owner("x", "ns", "u"), spec)["spec"]["template"]["spec"]
    command = pod["initContainers"][0]["command"]
    assert command[0] == "python3"
    # -I -S: no site-packages and no Ponder on the path, as in the Triton image
    command = [sys.executable, "-I", "-S", *command[1:3], str(tmp_path), *command[4:]]
    done = subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == status, done.stdout + done.stderr
    assert done.stdout.startswith("m: ")



METRICS_ON = 'parameters: { key: "REPORT_CUSTOM_METRICS" value: { string_value: "true" } }\n'


@pytest.mark.parametrize(("config", "engine", "note"), [
    pytest.param(VLLM_CONFIG + METRICS_ON, {"model": "w"}, None, id="metrics-reported"),
    pytest.param(VLLM_CONFIG + METRICS_ON.replace('" value', '", value'), {"model": "w"}, None,
                 id="metrics-reported-with-a-comma"),
    pytest.param(VLLM_CONFIG, {"model": "w"}, "REPORT_CUSTOM_METRICS", id="metrics-not-asked"),
    pytest.param(VLLM_CONFIG + "# " + METRICS_ON, {"model": "w"}, "REPORT_CUSTOM_METRICS",
                 id="metrics-only-in-a-comment"),
    pytest.param(VLLM_CONFIG + METRICS_ON.replace("true", "false"), {"model": "w"},
                 "REPORT_CUSTOM_METRICS", id="metrics-switched-off"),
    pytest.param(VLLM_CONFIG + METRICS_ON, {"model": "w", "disable_log_stats": True},
                 "disable_log_stats", id="engine-stats-switched-off"),
])
def test_a_vllm_model_without_engine_metrics_passes_with_a_note(
    tmp_path: Path, config: str, engine: dict[str, Any], note: str | None
) -> None:
    folder = model_folder(tmp_path, config, engine)
    assert check(folder, "vllm", 1) == []
    found = notes(folder, "vllm")
    if note is None:
        assert found == []
    else:
        (only,) = found
        assert note in only


def test_the_init_container_prints_the_note_and_still_passes(tmp_path: Path) -> None:
    model_folder(tmp_path, VLLM_CONFIG, {"model": "w"})
    done = subprocess.run(
        [sys.executable, "-I", "-S", "-c", MODEL_CHECK_SOURCE, str(tmp_path), "m", "vllm", "1"],
        capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "m: note: config.pbtxt: set parameters" in done.stdout

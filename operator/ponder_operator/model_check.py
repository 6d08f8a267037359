"""Check a Triton model's configuration against the ReasoningService, before Triton loads it.

Runs in the Triton pod's ``check-model`` init container with the Triton image's own python
(``python3 -c <this file> REPOSITORY MODEL BACKEND GPUS``), so it uses the standard library
only and imports nothing from Ponder. ``render`` ships its source; the unit tests import it.

What it checks, for the model folder ``REPOSITORY/MODEL``:

- ``config.pbtxt`` names the backend the spec says (``spec.model.backend``);
- vllm: every ``instance_group`` is ``KIND_MODEL`` (vLLM places the model on the GPUs
  itself; ``KIND_GPU`` starts one engine per GPU) with one instance, the transaction
  policy is not switched off ``decoupled`` (the router streams), and ``1/model.json``
  sets ``tensor_parallel_size`` x ``pipeline_parallel_size`` to the GPUs the pod gets
  (``resources.gpusPerReplica``) and a ``gpu_memory_utilization`` in (0, 1];
- python (the stand-in): ``decoupled: true``, which a python model must state.

Each problem is printed on its own line, naming the file and the spec field to change,
and the exit status is 1; nothing wrong prints one line and exits 0.

Notes (``notes``) are printed too but pass: a vllm model without the parameter
``REPORT_CUSTOM_METRICS: "true"`` (or with ``disable_log_stats`` in ``model.json``)
reports no ``vllm:`` series, and the autoscaler then sees only Triton's pending count,
which stays near 0 while requests wait inside the engine.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

_FIELD = r'\b{}\s*:\s*"?([A-Za-z0-9_.-]+)"?'


def _pbtxt_values(text: str, key: str) -> list[str]:
    """Every value of ``key`` in a protobuf text file, comments removed."""
    lines = (line.split("#", 1)[0] for line in text.splitlines())
    return re.findall(_FIELD.format(key), "\n".join(lines))


def _check_model_json(text: str, gpus: int) -> list[str]:
    try:
        engine = json.loads(text)
    except ValueError as exc:
        return [f"1/model.json is not JSON: {exc}"]
    if not isinstance(engine, dict) or "model" not in engine:
        return ["1/model.json must be an object naming the model (\"model\": ...)"]
    problems = []
    tensor = engine.get("tensor_parallel_size", 1)
    pipeline = engine.get("pipeline_parallel_size", 1)
    if not isinstance(tensor, int) or not isinstance(pipeline, int) or tensor * pipeline != gpus:
        problems.append(
            f"1/model.json: tensor_parallel_size ({tensor}) x pipeline_parallel_size "
            f"({pipeline}) must equal spec.resources.gpusPerReplica ({gpus}), the GPUs "
            "the pod gets")
    share = engine.get("gpu_memory_utilization", 0.9)
    if not isinstance(share, int | float) or not 0 < share <= 1:
        problems.append(f"1/model.json: gpu_memory_utilization must be in (0, 1], got {share}")
    return problems


def _parameter(text: str, key: str) -> str | None:
    """The ``string_value`` of the model parameter ``key`` in ``config.pbtxt``, if set."""
    lines = (line.split("#", 1)[0] for line in text.splitlines())
    found = re.search(rf'key\s*:\s*"{re.escape(key)}"\s*,?\s*value\s*:\s*\{{\s*'
                      r'string_value\s*:\s*"([^"]*)"', "\n".join(lines))
    return found.group(1) if found else None


def notes(folder: Path, backend: str) -> list[str]:
    """What passes but weakens the service: for vllm, engine metrics switched off."""
    config_path, engine_path = folder / "config.pbtxt", folder / "1" / "model.json"
    if backend != "vllm" or not config_path.is_file():
        return []
    found = []
    if _parameter(config_path.read_text(), "REPORT_CUSTOM_METRICS") != "true":
        found.append('config.pbtxt: set parameters { key: "REPORT_CUSTOM_METRICS" value: '
                     '{ string_value: "true" } } so the autoscaler sees the requests waiting '
                     "in the vLLM engine and its throughput (vllm: series)")
    try:
        engine = json.loads(engine_path.read_text()) if engine_path.is_file() else {}
    except ValueError:
        engine = {}  # check() reports it
    if isinstance(engine, dict) and engine.get("disable_log_stats") is True:
        found.append("1/model.json: disable_log_stats switches the vLLM engine's metrics "
                     "off; remove it for the autoscaler's vllm: series")
    return found


def check(folder: Path, backend: str, gpus: int) -> list[str]:
    """The problems of the model in ``folder`` for the spec's backend and GPU count."""
    config_path = folder / "config.pbtxt"
    if not config_path.is_file():
        return [f"{config_path} is missing: is spec.model.tritonModelName (or name) the "
                "model's folder in the repository?"]
    config = config_path.read_text()
    problems = []
    named = _pbtxt_values(config, "backend")
    if named != [backend]:
        problems.append(f"config.pbtxt: backend is {named[0] if named else 'unset'!r}, "
                        f"spec.model.backend is {backend!r}")
    decoupled = _pbtxt_values(config, "decoupled")
    if backend == "vllm":
        kinds = _pbtxt_values(config, "kind")
        if any(kind != "KIND_MODEL" for kind in kinds):
            problems.append(f"config.pbtxt: instance_group kind must be KIND_MODEL, got {kinds}")
        if any(count != "1" for count in _pbtxt_values(config, "count")):
            problems.append("config.pbtxt: instance_group count must be 1 (one vLLM engine "
                            "uses all the pod's GPUs)")
        if decoupled and decoupled != ["true"]:
            problems.append("config.pbtxt: model_transaction_policy must be decoupled: true "
                            "(the router streams tokens)")
        engine_path = folder / "1" / "model.json"
        if not engine_path.is_file():
            problems.append(f"{engine_path} is missing: the vLLM backend reads its engine "
                            "arguments there")
        else:
            problems += _check_model_json(engine_path.read_text(), gpus)
    elif decoupled != ["true"]:
        problems.append("config.pbtxt: model_transaction_policy { decoupled: true } is "
                        "required (the router streams tokens)")
    return problems


def main(argv: list[str]) -> int:
    repository, model, backend, gpus = argv
    folder = Path(repository) / model
    problems = check(folder, backend, int(gpus))
    for note in notes(folder, backend):
        print(f"{model}: note: {note}")  # noqa: T201 - the init container's log is the report
    for problem in problems:
        print(f"{model}: {problem}")  # noqa: T201 - the init container's log is the report
    if not problems:
        print(f"{model}: configuration fits {gpus} GPU(s) and the {backend} backend")  # noqa: T201
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

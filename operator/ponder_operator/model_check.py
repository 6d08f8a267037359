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
    problems = check(Path(repository) / model, backend, int(gpus))
    for problem in problems:
        print(f"{model}: {problem}")  # noqa: T201 - the init container's log is the report
    if not problems:
        print(f"{model}: configuration fits {gpus} GPU(s) and the {backend} backend")  # noqa: T201
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

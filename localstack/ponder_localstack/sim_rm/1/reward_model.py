"""Triton python-backend model ``ponder-sim-rm``: a simulator standing in for a reward model.

Not decoupled, on CPU: ``text_input`` (the prompt, a blank line, the completion: what the
router's verifier adapter sends) -> ``score`` (FP32). The score comes from ``scoring.py``
(beside this version folder), the right answer from the stand-in LLM's ``behaviour.py``
(copied beside it too), so a right answer by ``ponder-sim-llm`` scores as a right one.

It runs under the Triton virtualenv's interpreter (numpy and the standard library only)
and never logs prompts or completions.
"""

import json
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import triton_python_backend_utils as pb_utils

_MODEL_DIR = Path(__file__).resolve().parent.parent
if str(_MODEL_DIR) not in sys.path:
    sys.path.insert(0, str(_MODEL_DIR))

import behaviour  # noqa: E402
import scoring  # noqa: E402


def _text(request: Any) -> str:
    tensor = pb_utils.get_input_tensor_by_name(request, "text_input")
    value = tensor.as_numpy().reshape(-1)[0]
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


class TritonPythonModel:
    def initialize(self, args: dict[str, str]) -> None:
        config = json.loads(args["model_config"])
        parameter = config.get("parameters", {}).get("data_dir", {}).get("string_value", "")
        data_dir = parameter or os.environ.get("PONDER_DATA_DIR", "")
        if not data_dir:
            raise behaviour.CalibrationDataError(
                "the model parameter data_dir (or PONDER_DATA_DIR) must name the shared data"
            )
        sim = behaviour.SimModel(behaviour.load_catalog(Path(data_dir)),
                                 behaviour.load_calibration(Path(data_dir)))
        self._rm = scoring.SimRewardModel(lambda prompt: sim.profile_prompt(prompt).reference)
        pb_utils.Logger.log_info(f"{args['model_name']} (simulated reward model) ready")

    def execute(self, requests: list[Any]) -> list[Any]:
        responses = []
        for request in requests:
            score = self._rm.score(_text(request))
            tensor = pb_utils.Tensor("score", np.array([score], dtype=np.float32))
            responses.append(pb_utils.InferenceResponse(output_tensors=[tensor]))
        return responses

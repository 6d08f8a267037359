"""The stand-in LLM: a simulator standing in for a GPU LLM on CPU-only machines.

This folder is both a Python package and a Triton model-repository template:

- ``behaviour`` — the pure logic (problem lookup, calibration from ``shared/data``,
  answer and distractor choice, reasoning length, sampling parameters); no Triton needed;
- ``config.pbtxt`` and ``1/model.py`` — the Triton python-backend model ``ponder-sim-llm``,
  decoupled, with the same inputs and outputs as Triton's vLLM backend;
- ``ponder_localstack.triton`` copies this template into a model repository and starts
  ``tritonserver`` on it.

It is a simulator: its completions are synthetic words ending in an answer whose
correctness follows per-problem difficulty calibrated from real per-sample correctness.
"""

from __future__ import annotations

from pathlib import Path

MODEL_NAME = "ponder-sim-llm"
TEMPLATE_DIR = Path(__file__).resolve().parent
"""The model template: ``config.pbtxt``, ``1/model.py`` and ``behaviour.py``."""

"""The stand-in reward model: a simulator standing in for a GPU reward (verifier) model.

This folder is both a Python package and a Triton model-repository template:

- ``scoring`` — the pure logic: which answer a scored completion gives, and the score a
  right or a wrong one draws (calibrated from Qwen's ``rm_score``); no Triton needed;
- ``config.pbtxt`` and ``1/reward_model.py`` — the Triton python-backend model ``ponder-sim-rm``
  (``text_input`` -> ``score``, the router's verifier interface); it knows the right
  answer as the stand-in LLM does (``sim_llm.behaviour``, copied beside it);
- ``ponder_localstack.triton`` copies this template into a model repository.

It is a simulator: it reads no text for meaning. It scores a completion high or low at
random, with the real reward model's distribution for a right or a wrong answer.
"""

from __future__ import annotations

from pathlib import Path

MODEL_NAME = "ponder-sim-rm"
TEMPLATE_DIR = Path(__file__).resolve().parent
"""The model template: ``config.pbtxt``, ``1/reward_model.py`` and ``scoring.py``."""

"""Offline evaluation and calibration of test-time compute budgets (``ponder evaluate``,
``ponder calibrate``).

Modules, each using only those above it and the router's pure policy (``difficulty``,
``budgets``, ``answers``, ``aggregate``), never its service layer:

- ``dataset``   — JSONL evaluation data (problems, sampled completions, scores, tokens),
  line-numbered load issues, and the built-in sources from ``$PONDER_DATA_DIR``;
- ``replay``    — the array engine: random sample orders, prefix tallies, and replays
  through ``should_stop`` / ``plan_next_wave`` with their answers cached by state;
- ``suite``     — the compared policies: maj@N, best-of-N, Adaptive-Consistency, ESC,
  Ponder's policies through ``assign_budget``;
- ``allocate``  — concave hulls and greedy marginal-gain allocation across bins (pure);
- ``stats``     — rank correlation, AUROC, shrunk bin means;
- ``calibrate`` — candidates, difficulty bins, per-bin curves, allocation, the policy;
- ``calibration_report`` — estimator quality, bins, hulls and escalation, as JSON;
- ``crossfit``  — out-of-sample results of calibration by K-fold cross-fitting;
- ``report``    — tables, comparisons, the JSON document and the plot;
- ``cli``       — the two subcommands.
"""

from .allocate import allocate_accuracy, allocate_budget, greedy_path, upper_hull
from .calibrate import CalibrationConfig, ModelData, build_table, solve, split_ids
from .dataset import Dataset, DatasetError, EvalProblem, load_dataset, parse_lines
from .replay import ReplaySet, build_replay_set, replay_adaptive, replay_fixed
from .suite import NamedPolicy, SuiteConfig, run_suite

__all__ = [
    "CalibrationConfig",
    "Dataset",
    "DatasetError",
    "EvalProblem",
    "ModelData",
    "NamedPolicy",
    "ReplaySet",
    "SuiteConfig",
    "allocate_accuracy",
    "allocate_budget",
    "build_replay_set",
    "build_table",
    "greedy_path",
    "load_dataset",
    "parse_lines",
    "replay_adaptive",
    "replay_fixed",
    "run_suite",
    "solve",
    "split_ids",
    "upper_hull",
]

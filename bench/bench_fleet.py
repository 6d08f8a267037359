"""Fleet benchmark: accuracy, latency, SLO and dollars per 1,000 correct answers, per policy.

Replays the first minutes of a public trace (default: Azure 2023 conversation) through
``ponder_tools.sim.fleet_compare``, the same comparison ``ponder simulate --fleet`` runs:
every request gets a problem from a recorded per-sample data set, the router's
``RequestPlan`` decides its samples, the replica pool decodes them and an autoscaler sizes
the pool; every policy runs on the same arrivals, problem draws, sample orders and sample
lengths (the runs are listed in ``fleet_compare``'s docstring). Ponder's calibrated
policies are fitted by ``ponder calibrate``'s solver on one half of the problems; every
run then draws its problems from the other half.

Prints a table, writes ``bench/results/fleet.json`` and ``bench/results/fleet.png``
(matplotlib, when installed). Then the same comparison on the bursty Azure code trace
(bursts shorter than the 60 s start-up), where shrinking off, at the ceiling and while
scale-up is in flight sit side by side: ``fleet_burst.json`` and ``fleet_burst.png``,
with the Qwen2.5-Math samples (``--burst-dataset``; its samples take the trace's lengths).
Then the first comparison again with the stand-in over MATH-500 (``--standin-dataset``,
default ``standin-tracelen``: the stand-in's own answers with the trace's lengths):
``fleet_standin.json`` and ``fleet_standin.png``. Last, a day-long shape: ServeGen's
DeepSeek-R1 pool, its day of ten-minute rates compressed into ``--day-minutes`` (30) at a
mean of ``--day-mean-rate-rps`` (5, about the conversation slice's rate), its requests
with the R1 pool's lengths, with the stand-in (``--day-dataset``): ``fleet_day.json`` and
``fleet_day.png``.

    PYTHONPATH=operator:router:tools:localstack .venv/bin/python bench/bench_fleet.py \\
        [--trace azure-conv] [--minutes 5] [--seed 0] \\
        [--dataset llama2|gpt4|qwen|standin|standin-tracelen] [--day-minutes 30]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ponder_tools.sim.cli import run_simulate_fleet
from ponder_tools.sim.fleet_compare import DATASET_NAMES


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trace", default="azure-conv")
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--dataset", choices=DATASET_NAMES, default="llama2")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--slo-wait-seconds", type=float, default=2.0)
    parser.add_argument("--startup-seconds", type=float, default=60.0)
    parser.add_argument("--accelerator", default="H100")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    parser.add_argument("--burst-trace", default="azure-code")
    parser.add_argument("--burst-dataset", choices=DATASET_NAMES, default="qwen")
    parser.add_argument("--standin-dataset", choices=DATASET_NAMES, default="standin-tracelen")
    parser.add_argument("--day-trace", default="servegen-r1")
    parser.add_argument("--day-minutes", type=float, default=30.0)
    parser.add_argument("--day-mean-rate-rps", type=float, default=5.0)
    parser.add_argument("--day-dataset", choices=DATASET_NAMES, default="standin-tracelen")
    args = parser.parse_args()
    day_minutes, day_rate = args.day_minutes, args.day_mean_rate_rps
    del args.day_minutes, args.day_mean_rate_rps  # the first three runs read their traces
    status = run_simulate_fleet(args)
    burst = argparse.Namespace(**{**vars(args), "trace": args.burst_trace,
                                  "dataset": args.burst_dataset, "stem": "fleet_burst"})
    standin = argparse.Namespace(**{**vars(args), "dataset": args.standin_dataset,
                                    "stem": "fleet_standin"})
    day = argparse.Namespace(**{**vars(args), "trace": args.day_trace,
                                "dataset": args.day_dataset, "minutes": day_minutes,
                                "day_minutes": day_minutes, "mean_rate_rps": day_rate,
                                "stem": "fleet_day"})  # fmt: skip
    return (status or run_simulate_fleet(burst) or run_simulate_fleet(standin)
            or run_simulate_fleet(day))  # fmt: skip


if __name__ == "__main__":
    raise SystemExit(main())

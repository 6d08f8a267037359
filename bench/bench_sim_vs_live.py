"""Cross-check: one trace slice through ``make demo``'s closed loop and through the simulator.

The live half is ``ponder_localstack.demo.run`` itself (the local kube-apiserver with
KWOK, the operator, Prometheus, CPU Triton serving the stand-in LLM, the router pod, the
Azure conv slice replayed through the ``openai`` client). The simulated half replays the
same arrivals, each request with the same MATH-500 problem, through
``ponder_tools.sim.fleet.simulate_fleet`` with the stand-in's samples over MATH-500,
configured only from what the live stack is configured with (``sim.crosscheck``): the
stand-in's token latency and concurrency (``demo.MODEL``), the ReasoningService
(``examples/demo.yaml``) read by the operator's and the router's own code, the GPUs of the
demo's nodes, the Triton start-up time measured in the live runs (the median of their
pods' creation-to-Ready times; ``--startup-seconds`` overrides it) and the serving
overhead of a sample beyond its tokens, measured from the live runs' single-sample
requests (``crosscheck.measure_sample_overhead``: its mean, which sets the replicas, and
its median, which sets the typical latency; ``--sample-overhead-seconds``). Neither
measurement looks at the replica counts the check compares.

With this little traffic the pool's size hinges on whether a scaling tick catches a hard
request in flight, so one run is one noisy draw: the figures are means over the live runs
(``--live-runs`` new ones, plus those recorded in ``--live-record`` files) and over
``--sample-seeds`` simulated draws, each with its own draw of the stand-in's samples and
its own phase of the scaling loop against the arrivals (spread evenly over one
``intervalSeconds``: the live operator's loop keeps no fixed phase against the replay).
The simulator runs three times: without a sample overhead, with its median and with its
mean (the headline, in ``within_tolerance``), so the difference each makes shows.

Prints replicas over time (mean, peak, replica-seconds; ready and desired), requests
answered, samples and tokens per request and latency p50/p99 side by side with their
ratios; writes ``bench/results/sim_vs_live.json`` (with every live run's raw record, so
the simulated half can be rerun with ``--live-record bench/results/sim_vs_live.json``
without starting the stack) and ``sim_vs_live.png`` (ready replicas over time, both).

    PYTHONPATH=operator:router:tools:localstack .venv/bin/python bench/bench_sim_vs_live.py \\
        [--live-runs 1] [--live-record FILE ...] [--sample-seeds 10]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from contextlib import ExitStack
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import yaml

from ponder_localstack import demo
from ponder_operator.api.spec import parse_spec
from ponder_tools.evaluation.dataset import generate, load_dataset, write_jsonl
from ponder_tools.sim.baselines import PonderAutoscaler
from ponder_tools.sim.crosscheck import (
    Figures,
    SampleOverhead,
    compare_figures,
    format_comparison,
    latency_percentiles,
    mean_figures,
    measure_sample_overhead,
    replica_model,
    replica_stats,
    service_setup,
    with_sample_overhead,
)
from ponder_tools.sim.engine import SimConfig
from ponder_tools.sim.fleet import FleetResult, draw_fleet, simulate_fleet
from ponder_tools.sim.traces import Trace

RESULTS = Path(__file__).parent / "results"
STANDIN_SAMPLES = 16  # per problem: more than the hard tier's 12
RECORD_SECONDS = 2.0  # the demo reads the replicas every 2 s


def run_live(options: demo.DemoOptions) -> dict[str, Any]:
    """``make demo``'s run on ``options``; the raw record the comparison needs."""
    with tempfile.TemporaryDirectory(prefix="ponder-crosscheck-") as folder, \
            ExitStack() as stack:  # fmt: skip
        state = Path(folder)
        result = demo.run(stack, state, replace(options, out_dir=state / "out"))
    tally = result.tally
    return {
        "arrival_seconds": demo.trace_slice(options),
        "history": [[s.t, s.desired, s.ready, s.demand, s.queue] for s in result.history],
        "sent": tally.sent, "outcomes": dict(tally.outcomes),
        "answered": tally.outcomes["200"], "samples_launched": tally.samples_launched,
        "tokens_used": tally.tokens_used,
        "latencies_seconds": [a[0] for a in tally.answers.values()],
        "answers": {str(i): list(a) for i, a in sorted(tally.answers.items())},
        "correct": tally.correct, "triton_ready_seconds": result.triton_ready_seconds,
    }  # fmt: skip


def live_figures(record: dict[str, Any], end_seconds: float) -> Figures:
    t, desired, ready = ([row[i] for row in record["history"]] for i in range(3))
    answered = max(int(record["answered"]), 1)
    p50, p99 = latency_percentiles(record["latencies_seconds"])
    return Figures(replica_stats(t, ready, end_seconds), replica_stats(t, desired, end_seconds),
                   len(record["arrival_seconds"]), int(record["answered"]),
                   record["samples_launched"] / answered, record["tokens_used"] / answered,
                   p50, p99)  # fmt: skip


def run_simulated(record: dict[str, Any], options: demo.DemoOptions, startup_seconds: float,
                  end_seconds: float, sample_seed: int | None = None,
                  overhead_seconds: float = 0.0,
                  tick_phase: float = 0.0) -> tuple[FleetResult, int]:  # fmt: skip
    """The same arrivals and problems through the simulator, set up as the demo is; the
    stand-in's samples and their order drawn under ``sample_seed`` (default: the demo's),
    each longer by ``overhead_seconds``; the scaling loop first ticking ``tick_phase`` of
    its interval into the replay; also the tokens that overhead added per sample."""
    seed = options.seed if sample_seed is None else sample_seed
    spec = parse_spec(yaml.safe_load(demo.SERVICE_MANIFEST.read_text()))
    setup = service_setup(spec, "ponder-demo")
    arrivals = np.asarray(record["arrival_seconds"], dtype=np.float64)
    zeros = np.zeros(len(arrivals), dtype=np.int64)
    trace = Trace("azure-conv-demo-slice", arrivals, zeros, zeros)
    with tempfile.TemporaryDirectory() as folder:
        rows = generate("standin-math500", samples_per_problem=STANDIN_SAMPLES,
                        seed=seed)  # fmt: skip
        dataset = load_dataset(write_jsonl(rows, Path(folder) / "standin.jsonl"))
    index = {p.problem_id: i for i, p in enumerate(dataset.problems)}
    asked = demo.problems(options.seed)  # the demo's request i asks asked[i % len(asked)]
    chosen = [index[asked[i % len(asked)]["unique_id"]] for i in range(len(arrivals))]
    draw, extra = with_sample_overhead(
        draw_fleet(trace, dataset.problems, seed=seed, problem_index=chosen),
        overhead_seconds, demo.MODEL.token_latency_ms)  # fmt: skip
    gpus = sum(node.gpus for node in demo.NODES)
    model = replica_model(token_latency_ms=demo.MODEL.token_latency_ms,
                          max_concurrency=demo.MODEL.max_concurrency,
                          startup_seconds=startup_seconds,
                          gpus_per_replica=setup.scaling.gpus_per_replica)  # fmt: skip
    config = SimConfig(replica=model, gpu_capacity=gpus,
                       initial_replicas=max(1, setup.scaling.min_replicas),
                       record_interval_seconds=RECORD_SECONDS,
                       min_end_seconds=end_seconds,
                       first_tick_seconds=tick_phase * setup.interval_seconds)  # fmt: skip
    autoscaler = PonderAutoscaler(setup.scaling, period_seconds=setup.interval_seconds)
    return simulate_fleet(draw, setup.policy, autoscaler, config,
                          max_replicas=setup.scaling.ceiling_replicas), extra  # fmt: skip


def sample_overhead(records: list[dict[str, Any]]) -> SampleOverhead:
    """``measure_sample_overhead`` over the single-sample requests of every live run."""
    single = [a for r in records for a in r.get("answers", {}).values() if a[2] == 1]
    return measure_sample_overhead([a[0] for a in single], [a[1] for a in single],
                                   demo.MODEL.token_latency_ms)  # fmt: skip


def simulated_figures(result: FleetResult, end_seconds: float, extra_tokens: int = 0) -> Figures:
    """``result``'s figures; the tokens without the ``extra_tokens`` each sample carried
    for its serving overhead."""
    t, spec, ready = result.timeline[0], result.timeline[1], result.timeline[3]
    answered = ~np.isnan(result.latency_seconds)
    p50, p99 = latency_percentiles(result.latency_seconds.tolist())
    tokens = result.tokens - extra_tokens * result.samples
    return Figures(replica_stats(t.tolist(), ready.tolist(), end_seconds),
                   replica_stats(t.tolist(), spec.tolist(), end_seconds),
                   len(result.latency_seconds), int(answered.sum()),
                   float(result.samples[answered].mean()), float(tokens[answered].mean()),
                   p50, p99)  # fmt: skip


def on_grid(times: Any, values: Any, grid: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """A step function's value at each point of ``grid`` (the last reading at or before)."""
    t, v = np.asarray(times, dtype=np.float64), np.asarray(values, dtype=np.float64)
    return v[np.clip(np.searchsorted(t, grid, side="right") - 1, 0, len(v) - 1)]


def plot(records: list[dict[str, Any]], simulated: dict[str, list[FleetResult]], path: Path,
         end_seconds: float) -> bool:  # fmt: skip
    """Ready replicas over time: each live run (thin), and the mean over the live runs and
    over each simulator variant's sample draws (bold)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    grid = np.arange(0.0, end_seconds, RECORD_SECONDS)
    live = [on_grid([h[0] for h in r["history"]], [h[2] for h in r["history"]], grid)
            for r in records]  # fmt: skip
    figure, axes = plt.subplots(figsize=(9, 4.5))
    for run in live:
        axes.step(grid, run, where="post", color="tab:blue", alpha=0.3, linewidth=1.0)
    axes.step(grid, np.mean(live, axis=0), where="post", color="tab:blue", linewidth=2.0,
              label=f"live, mean of {len(live)} runs")  # fmt: skip
    colors = ("tab:gray", "tab:green", "tab:orange")
    for (label, results), color in zip(simulated.items(), colors[-len(simulated):],
                                       strict=True):  # fmt: skip
        mean = np.mean([on_grid(r.timeline[0], r.timeline[3], grid) for r in results], axis=0)
        axes.step(grid, mean, where="post", color=color, linewidth=2.0,
                  label=f"simulated {label}, mean of {len(results)} draws")  # fmt: skip
    axes.set_xlabel("seconds since the replay started")
    axes.set_ylabel("ready Triton replicas")
    axes.set_title("The demo's trace slice: live closed loop against the simulator")
    axes.legend(loc="upper left", fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return True


def load_records(paths: list[Path]) -> list[dict[str, Any]]:
    """The live runs recorded in earlier ``sim_vs_live.json`` files."""
    records: list[dict[str, Any]] = []
    for path in paths:
        document = json.loads(path.read_text())
        records.extend(document.get("live_records") or [document["live_record"]])
    return records


def spread(runs: list[Figures], key: str) -> str:
    values = [run.flat()[key] for run in runs]
    return f"{min(values):.2f}..{max(values):.2f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    defaults = demo.DemoOptions()
    parser.add_argument("--replay-seconds", type=float, default=defaults.replay_seconds)
    parser.add_argument("--window-minutes", type=int, default=defaults.window_minutes)
    parser.add_argument("--mean-rate-rps", type=float, default=defaults.mean_rate_rps)
    parser.add_argument("--settle-seconds", type=float, default=defaults.settle_seconds)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--startup-seconds", type=float, default=None,
                        help="Triton start-up in the simulator (default: measured live)")
    parser.add_argument("--sample-overhead-seconds", type=float, default=None,
                        help="serving time per sample beyond its tokens (default: measured "
                             "live)")
    parser.add_argument("--live-record", type=Path, nargs="*", default=[],
                        help="sim_vs_live.json files whose live runs to reuse")
    parser.add_argument("--live-runs", type=int, default=None,
                        help="new live runs (default: 1 without --live-record, else 0)")
    parser.add_argument("--sample-seeds", type=int, default=10,
                        help="simulated runs, each with its own draw of the stand-in's samples "
                             "and its own phase of the scaling loop")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    options = replace(defaults, replay_seconds=args.replay_seconds,
                      window_minutes=args.window_minutes, mean_rate_rps=args.mean_rate_rps,
                      settle_seconds=args.settle_seconds, seed=args.seed)
    records = load_records(args.live_record)
    fresh = args.live_runs if args.live_runs is not None else (0 if records else 1)
    records.extend(run_live(options) for _ in range(fresh))
    if not records:
        parser.error("no live run: give --live-record or --live-runs")
    arrivals = demo.trace_slice(options)
    if any(r["arrival_seconds"] != arrivals for r in records):
        parser.error("a live record replayed other arrivals than these options give")
    end = options.replay_seconds + options.settle_seconds
    startups = [s for r in records for s in r["triton_ready_seconds"]]
    startup = args.startup_seconds if args.startup_seconds is not None else (
        statistics.median(startups))  # fmt: skip
    measured = sample_overhead(records)
    variants = {"without a sample overhead": 0.0,
                "with the median sample overhead": measured.median_seconds,
                "with the mean sample overhead": measured.mean_seconds}  # fmt: skip
    if args.sample_overhead_seconds is not None:
        variants = {"without a sample overhead": 0.0,
                    "with the given sample overhead": args.sample_overhead_seconds}
    headline = list(variants)[-1]
    live_runs = [live_figures(r, end) for r in records]
    print(f"\n{len(arrivals)} requests over {options.replay_seconds:.0f} s "
          f"(+{options.settle_seconds:.0f} s to settle); Triton pods created-to-Ready live: "
          f"{', '.join(f'{s:.1f}' for s in startups)} s; simulator start-up {startup:.1f} s")
    print(f"sample overhead of {measured.requests} single-sample live requests: mean "
          f"{1000 * measured.mean_seconds:.0f} ms, median {1000 * measured.median_seconds:.0f}"
          f" ms beyond {1000 * measured.seconds_per_token:.2f} ms per token")
    comparisons: dict[str, Any] = {}
    simulated: dict[str, list[FleetResult]] = {}
    for label, seconds in variants.items():
        runs = [run_simulated(records[0], options, startup, end, options.seed + i, seconds,
                              tick_phase=i / args.sample_seeds)
                for i in range(args.sample_seeds)]  # fmt: skip
        simulated_runs = [simulated_figures(r, end, extra) for r, extra in runs]
        simulated[label] = [result for result, _ in runs]
        rows = compare_figures(mean_figures(live_runs), mean_figures(simulated_runs))
        within = all(bool(r.get("within_tolerance", True)) for r in rows.values())
        print(f"\n-- simulator {label}: means over {len(records)} live runs and "
              f"{len(runs)} simulated sample draws")
        print(format_comparison(rows))
        for key in ("ready_mean", "ready_replica_seconds", "answered"):
            print(f"  {key}: live runs {spread(live_runs, key)}, "
                  f"simulated draws {spread(simulated_runs, key)}")
        print(f"replicas and answered requests within 20 %: {'yes' if within else 'NO'}")
        comparisons[label] = {
            "sample_overhead_seconds": seconds, "within_tolerance": within, "figures": rows,
            "simulated_runs": [f.flat() for f in simulated_runs],
            "simulated_timeline": [[round(float(v), 3) for v in column]
                                   for column in runs[0][0].timeline[:4]]}  # fmt: skip
    args.out.mkdir(parents=True, exist_ok=True)
    document = {
        "options": {k: str(v) if isinstance(v, Path) else v
                    for k, v in asdict(options).items() if k != "out_dir"},
        "simulator": {"token_latency_ms": demo.MODEL.token_latency_ms,
                      "max_concurrency": demo.MODEL.max_concurrency,
                      "startup_seconds": startup,
                      "sample_overhead": asdict(measured), "headline": headline,
                      "standin_samples": STANDIN_SAMPLES,
                      "sample_seeds": [options.seed + i for i in range(args.sample_seeds)],
                      "tick_phases": [i / args.sample_seeds for i in range(args.sample_seeds)]},
        "within_tolerance": comparisons[headline]["within_tolerance"],
        "comparisons": comparisons,
        "live_runs": [f.flat() for f in live_runs], "live_records": records,
    }  # fmt: skip
    (args.out / "sim_vs_live.json").write_text(json.dumps(document, indent=1) + "\n")
    if plot(records, simulated, args.out / "sim_vs_live.png", end):
        print(f"wrote {args.out / 'sim_vs_live.json'} and {args.out / 'sim_vs_live.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

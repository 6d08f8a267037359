"""``ponder evaluate`` and ``ponder calibrate``: offline proof and calibration of budgets.

Role: the command-line face of ``suite`` and ``calibrate``; ``ponder_tools.cli``
registers both through ``add_evaluate_parser`` and ``add_calibrate_parser``. Data come
from a JSONL file (``--data``) or a built-in source read in place from
``$PONDER_DATA_DIR`` (``--builtin``); a built-in source is written as JSONL to
``--out``/data, or to a temporary folder that is removed afterwards. ``standin-math500``
needs the ``ponder-localstack`` package (a checkout after ``make setup``); without it the
command says so and exits 2.

    ponder evaluate --builtin standin-math500 --out DIR [--policy DIR/policy.yaml]
    ponder calibrate --builtin qwen25math-100x8 --out DIR
    ponder calibrate --builtin standin-math500 --standin-skill -1.5 \\
        --large-builtin standin-math500 --large-service qwen-72b \\
        --price-per-token 1 --large-price-per-token 8 --out DIR

Tables go to stdout, load issues and errors to stderr; exit 2 on bad input.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, get_args

import numpy as np
import yaml
from pydantic import ValidationError

from ponder_router.aggregate import StopRule, StopRuleKind
from ponder_router.answers import EqualityMode, ExtractorName
from ponder_router.budgets import BudgetPolicy, default_policy
from ponder_router.confidence import ConfidenceConfig
from ponder_router.errors import PolicyError
from ponder_router.forcing import ForcingConfig
from ponder_router.prior import PriorConfig

from .calibrate import (
    DEFAULT_THRESHOLDS,
    CalibrationConfig,
    CalibrationError,
    CostUnit,
    ModelData,
    budgets_spec,
    build_table,
    compare_estimators,
    solve,
    split_ids,
)
from .calibration_report import solution_report
from .confidence_replay import evaluate_confidence, format_confidence_table, running_from_traces
from .dataset import (
    Dataset,
    DatasetError,
    convert_qwen25math,
    generate,
    load_dataset,
    write_jsonl,
)
from .prior_fit import warm_start_prior
from .replay import ReplayError
from .report import compare_policies, format_comparisons, format_table, plot_suite, suite_document
from .signals import SignalConfig, SignalReport, difficulty_signals, format_signals, load_prior
from .suite import Escalation, NamedPolicy, SuiteConfig, run_suite
from .thinking import (
    ThinkingResult,
    calibrate_thinking,
    format_thinking,
    from_problem,
    thinking_report,
)
from .trajectories import GEMMA_CAVEAT, by_question, convert_gemma_thinking, load_gemma_traces

BUILTINS = ("qwen25math-100x8", "gemma4-12b-thinking", "standin-math500")
_BAD_INPUT = (DatasetError, CalibrationError, ReplayError, PolicyError, ValidationError,
              OSError, ValueError)  # fmt: skip


# -- shared options -----------------------------------------------------------------------


def _add_data_options(parser: argparse.ArgumentParser, prefix: str = "", *,
                      required: bool = True) -> None:  # fmt: skip
    flag = f"--{prefix}" if prefix else "--"
    dest = prefix.replace("-", "_")
    group = parser.add_mutually_exclusive_group(required=required)
    group.add_argument(f"{flag}data", type=Path, dest=f"{dest}data",
                       help="JSONL file: one problem a line with id, question, reference, "
                            "samples, and optional scores, tokens, level")
    group.add_argument(f"{flag}builtin", choices=BUILTINS, dest=f"{dest}builtin",
                       help="built-in source from $PONDER_DATA_DIR: Qwen2.5-Math 100x8, "
                            "Gemma-4-12B thinking traces (150 questions x 10, answers and "
                            "confidences at the end of each trace), or "
                            "the stand-in LLM (a simulator) over MATH-500 (needs "
                            "the ponder-localstack package)")
    parser.add_argument(f"{flag}standin-skill", type=float, default=0.0,
                        dest=f"{dest}standin_skill",
                        help="stand-in logit skill offset (below 0 a weaker model)")


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--samples-per-problem", type=int, default=40,
                        help="stand-in samples per problem (default: 40)")
    parser.add_argument("--standin-seed", type=int, default=0,
                        help="stand-in sampling seed (default: 0)")
    parser.add_argument("--orderings", type=int, default=None,
                        help="random sample orders per problem")
    parser.add_argument("--seed", type=int, default=0, help="seed of the orders and split")
    parser.add_argument("--extractor", choices=get_args(ExtractorName), default=None,
                        help="answer extractor, as a service's spec.answers.extractor "
                             "(default: chain, or regex with --extract-pattern)")
    parser.add_argument("--extract-pattern", default=None, metavar="REGEX",
                        help="the answer is this regular expression's one capture group "
                             "in its last match, as spec.answers.pattern (e.g. 'A:\\s*(\\S+)')")
    parser.add_argument("--equality", choices=get_args(EqualityMode), default="numeric",
                        help="when two answers are the same answer: numeric, latex, text "
                             "(no case, whitespace or quotes) or exact (default: numeric)")
    parser.add_argument("--strict", action="store_true",
                        help="fail on the first bad line instead of skipping it")
    parser.add_argument("--price-per-token", type=float, default=1.0,
                        help="cost per generated token of the serving model (default: 1)")
    parser.add_argument("--out", type=Path, default=None,
                        help="folder for results (and generated data under data/)")


@contextmanager
def _workdir(out: Path | None) -> Iterator[Path]:
    if out is not None:
        yield out / "data"
        return
    with tempfile.TemporaryDirectory(prefix="ponder-eval-") as tmp:
        yield Path(tmp)


def _load(args: argparse.Namespace, workdir: Path, prefix: str = "") -> Dataset:
    path: Path | None = getattr(args, f"{prefix}data")
    builtin: str | None = getattr(args, f"{prefix}builtin")
    skill: float = getattr(args, f"{prefix}standin_skill")
    if builtin == "qwen25math-100x8":
        path = write_jsonl(convert_qwen25math(), workdir / f"{builtin}.jsonl")
    elif builtin == "gemma4-12b-thinking":
        print(GEMMA_CAVEAT, file=sys.stderr)
        path = write_jsonl(convert_gemma_thinking(), workdir / f"{builtin}.jsonl")
    elif builtin == "standin-math500":
        name = f"{builtin}-x{args.samples_per_problem}-skill{skill:+g}"
        path = workdir / f"{name}.jsonl"
        write_jsonl(generate(builtin, samples_per_problem=args.samples_per_problem,
                             seed=args.standin_seed, skill_logit_offset=skill), path)
    assert path is not None
    dataset = load_dataset(path, strict=args.strict, **_answers(args))
    _report_issues(dataset)
    return dataset


def _answers(args: argparse.Namespace) -> dict[str, Any]:
    """``load_dataset``'s answer settings from --extractor, --extract-pattern, --equality."""
    pattern: str | None = args.extract_pattern
    extractor = args.extractor or ("regex" if pattern is not None else "chain")
    return {"extractor": extractor, "pattern": pattern, "mode": args.equality}


def _report_issues(dataset: Dataset, shown: int = 10) -> None:
    print(dataset.summary(), file=sys.stderr)
    for issue in dataset.issues[:shown]:
        print(f"  {dataset.source}: {issue}", file=sys.stderr)
    if len(dataset.issues) > shown:
        print(f"  ... and {len(dataset.issues) - shown} more issues", file=sys.stderr)


def _stop_rule(args: argparse.Namespace) -> StopRule:
    return StopRule(kind=StopRuleKind(args.stop_rule), threshold=args.stop_threshold,
                    window=args.stop_window, margin=args.stop_margin)  # fmt: skip


def load_policy(path: Path) -> BudgetPolicy:
    """A ``BudgetPolicy`` from a YAML or JSON file (camelCase, as the router reads it)."""
    try:
        return BudgetPolicy.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")))
    except (OSError, yaml.YAMLError, ValidationError) as exc:
        raise PolicyError(f"{path}: not a budget policy: {exc}") from exc


def _pairs(values: list[str], what: str) -> dict[str, str]:
    out = {}
    for value in values:
        name, sep, rest = value.partition("=")
        if not sep or not name or not rest:
            raise PolicyError(f"{what} {value!r}: expected NAME=VALUE")
        out[name] = rest
    return out


def _write_json(document: dict[str, Any], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2, default=_jsonable) + "\n", encoding="utf-8")
    return path


def _jsonable(value: object) -> object:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


# -- evaluate -----------------------------------------------------------------------------


def add_evaluate_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``evaluate`` on the ``ponder`` command's ``subparsers``."""
    parser = subparsers.add_parser(
        "evaluate", help="replay sampled answers through the router's budget policy offline",
        description="Replay every problem's samples in many random orders through the "
                    "router's estimator, budgets, aggregation and stopping; report accuracy "
                    "against mean samples, waves and tokens for maj@N, best-of-N, "
                    "Adaptive-Consistency, ESC and Ponder's policies, and the cross-fitted "
                    "AUROC of each difficulty signal for 'the first sample is wrong'.")  # fmt: skip
    _add_data_options(parser)
    _add_common(parser)
    parser.add_argument("--policy", action="append", default=[], metavar="[NAME=]FILE",
                        help="a BudgetPolicy YAML/JSON to evaluate (repeatable)")
    parser.add_argument("--no-default-policy", action="store_true",
                        help="leave the router's default policy out")
    parser.add_argument("--no-signals", action="store_true",
                        help="leave out the cross-fitted AUROC of the difficulty signals")
    parser.add_argument("--signal-orderings", type=int, default=20,
                        help="random sample orders per problem for the signals (default: 20)")
    parser.add_argument("--folds", type=int, default=5,
                        help="cross-fitting folds for the signals (default: 5)")
    parser.add_argument("--prior", action="append", default=[], metavar="NAME=MODULE:ATTR",
                        help="a prompt prior to score beside the built-in ones: a callable "
                             "that takes training problems and returns a prompt -> score "
                             "callable (higher: harder), fitted on the other folds "
                             "(repeatable)")
    parser.add_argument("--escalate", action="append", default=[], metavar="SERVICE=FILE",
                        help="samples of a service a tier escalates to (repeatable)")
    parser.add_argument("--escalate-price", action="append", default=[],
                        metavar="SERVICE=PRICE", help="its cost per token (default: 1)")
    parser.add_argument("--stop-rule", choices=[k.value for k in StopRuleKind],
                        default=StopRule().kind.value,
                        help="the service's stopping rule for Ponder's policies")
    parser.add_argument("--stop-threshold", type=float, default=None,
                        help="the beta or settled threshold (default: 0.95 beta, 0.97 settled)")
    parser.add_argument("--stop-window", type=int, default=5)
    parser.add_argument("--stop-margin", type=int, default=3,
                        help="the lead the margin rule needs (--stop-rule margin)")
    parser.add_argument("--no-forcing", action="store_true",
                        help="a sample cut at its tier's cap abstains (spec.budgets.forcing "
                             "off); by default it votes with its answer at the cap where the "
                             "data hold trajectories")  # fmt: skip
    knobs = ConfidenceConfig()
    parser.add_argument("--confidence", action="store_true",
                        help="also replay Adaptive-Consistency and each Ponder policy with "
                             "confidence-weighted votes, low-confidence cancellation and both, "
                             "side by side (the data need per-sample confidences)")
    parser.add_argument("--confidence-percentile", type=float, default=knobs.percentile)
    parser.add_argument("--confidence-min-tokens", type=int, default=knobs.min_tokens)
    parser.add_argument("--confidence-orderings", type=int, default=5,
                        help="orders per problem of the confidence replay (default: 5)")
    parser.set_defaults(run=run_evaluate)


def run_evaluate(args: argparse.Namespace) -> int:
    """Run the suite ``args`` describe; 0 on success, 2 on bad input."""
    try:
        started = time.perf_counter()
        with _workdir(args.out) as workdir:
            dataset = _load(args, workdir)
            signals: SignalReport | None = None
            if not args.no_signals:
                priors = {name: load_prior(spec)
                          for name, spec in _pairs(args.prior, "--prior").items()}
                signals = difficulty_signals(
                    dataset, SignalConfig(orderings=args.signal_orderings, seed=args.seed,
                                          folds=args.folds), priors=priors)  # fmt: skip
            policies = []
            for spec in args.policy:
                name, sep, file = spec.partition("=")
                path = Path(file if sep else spec)
                policies.append(NamedPolicy(name if sep else f"ponder-{path.stem}",
                                            load_policy(path)))  # fmt: skip
            prices = {k: float(v) for k, v in _pairs(args.escalate_price, "price").items()}
            escalations = {
                service: Escalation(load_dataset(Path(file), strict=args.strict,
                                                 **_answers(args)),
                                    prices.get(service, 1.0))
                for service, file in _pairs(args.escalate, "--escalate").items()
            }  # fmt: skip
            config = SuiteConfig(orderings=args.orderings or 50, seed=args.seed,
                                 stop_rule=_stop_rule(args),
                                 price_per_token=args.price_per_token,
                                 forcing=ForcingConfig(enabled=not args.no_forcing))  # fmt: skip
            suite = run_suite(dataset, policies, config, escalations=escalations,
                              include_default=not args.no_default_policy)  # fmt: skip
            confidence = _confidence(args, dataset, policies, config.stop_rule)
    except _BAD_INPUT as exc:
        print(f"ponder evaluate: {exc}", file=sys.stderr)
        return 2
    print(format_table(suite))
    print()
    print(format_comparisons(compare_policies(suite)))
    named = [NamedPolicy("ponder-default", default_policy())] if not args.no_default_policy \
        else []  # fmt: skip
    thinking = _thinking(dataset, [*named, *policies], config)
    print(f"\nreplayed {suite.problems} problems x {config.orderings} orders in "
          f"{suite.elapsed_seconds:.2f} s ({time.perf_counter() - started:.2f} s in all)")
    if confidence:
        print()
        print(format_confidence_table(confidence))
        if args.out is not None:
            _write_json({"rows": confidence}, args.out / f"confidence_{dataset.name}.json")
    if args.out is not None:
        stem = f"evaluate_{dataset.name}"
        settings = {"orderings": config.orderings, "seed": config.seed,
                    "stop_rule": config.stop_rule.model_dump(mode="json"),
                    "forcing": config.forcing.model_dump(mode="json"),
                    "source": dataset.source, "skipped_problems": dataset.skipped,
                    "abstentions": dataset.abstentions,
                    "issues": [str(i) for i in dataset.issues[:100]]}  # fmt: skip
        extra: dict[str, Any] = {"settings": settings}
        if signals is not None:
            extra["difficulty_signals"] = signals.as_dict()
        document = suite_document(suite, extra)
        if thinking:
            document["thinking"] = [r.as_dict() for r in thinking]
        _write_json(document, args.out / f"{stem}.json")
        if plot_suite(suite, args.out / f"{stem}.png"):
            print(f"wrote {args.out / stem}.json and .png")
        else:
            print(f"wrote {args.out / stem}.json (no plot: matplotlib is not installed; "
                  "pip install 'ponder[tools]')")
    if signals is not None:
        print(f"\n{format_signals(signals)}")
    return 0


def _thinking(dataset: Dataset, policies: list[NamedPolicy],
              config: SuiteConfig) -> list[ThinkingResult]:  # fmt: skip
    """Where the data hold trajectories, print and return the thinking-budget replay at
    the policies' tier caps (``thinking.thinking_report``)."""
    traced = [s for p in dataset.problems for s in from_problem(p)]
    if not traced:
        return []
    caps = [t.max_tokens for named in policies for t in named.policy.tiers]
    results = thinking_report(traced, caps, answer_tokens=config.forcing.answer_tokens)
    print()
    print(format_thinking(results, f"thinking budgets, per trajectory ({len(traced)} samples; "
                                   "caps from the policies' tiers):"))  # fmt: skip
    return results
def _confidence(args: argparse.Namespace, dataset: Dataset, policies: list[NamedPolicy],
                rule: StopRule) -> list[dict[str, object]]:  # fmt: skip
    """``--confidence``: the confidence policies side by side (``confidence_replay``);
    running confidences from the Gemma traces for that built-in."""
    if not args.confidence:
        return []
    if not dataset.has_confidences:
        raise PolicyError("--confidence needs per-sample confidences in the data "
                          "(the JSONL field 'confidences')")  # fmt: skip
    named = [] if args.no_default_policy else [("ponder-default", default_policy())]
    named += [(p.name, p.policy) for p in policies]
    base = ConfidenceConfig(percentile=args.confidence_percentile,
                            min_tokens=args.confidence_min_tokens)
    running = (running_from_traces(by_question(load_gemma_traces()))
               if args.builtin == "gemma4-12b-thinking" else None)  # fmt: skip
    return evaluate_confidence(dataset, named, rule, base, orderings=args.confidence_orderings,
                               seed=args.seed, running=running)  # fmt: skip


# -- calibrate ----------------------------------------------------------------------------


def add_calibrate_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``calibrate`` on the ``ponder`` command's ``subparsers``."""
    parser = subparsers.add_parser(
        "calibrate", help="fit compute-optimal budget tiers from evaluation data",
        description="Bin problems by difficulty, fit per-bin accuracy curves against "
                    "compute, allocate compute across bins for a budget, and write a "
                    "BudgetPolicy (and a ReasoningService spec.budgets section); with a "
                    "second, larger model decide per bin where to escalate. Difficulty "
                    "estimator weights refitted on the train split are shipped with the "
                    "policy (its estimator block) when they rank the test split better "
                    "than the router's defaults.")  # fmt: skip
    _add_data_options(parser)
    _add_data_options(parser, "large-", required=False)
    _add_common(parser)
    parser.add_argument("--large-service", default="large",
                        help="ReasoningService name of the larger model (escalateTo)")
    parser.add_argument("--large-price-per-token", type=float, default=1.0)
    parser.add_argument("--bins", type=int, default=5, help="difficulty bins (default: 5)")
    parser.add_argument("--test-fraction", type=float, default=0.3)
    parser.add_argument("--cost-unit", choices=("samples", "tokens", "cost"), default=None,
                        help="compute measure (default: samples; cost with two models)")
    budget = parser.add_mutually_exclusive_group()
    budget.add_argument("--budget", type=float, default=None,
                        help="mean compute per request, in --cost-unit")
    budget.add_argument("--target-accuracy", type=float, default=None,
                        help="least compute reaching this accuracy (0-1) on train")
    budget.add_argument("--match-within", type=float, default=0.1,
                        help="least compute within this many points of maj@all on train "
                             "(default: 0.1)")
    parser.add_argument("--thresholds", default=",".join(f"{t:g}" for t in DEFAULT_THRESHOLDS),
                        help="beta stopping thresholds to choose from")
    parser.add_argument("--verifier-model", default=None,
                        help="Triton verifier for best-of-n tiers; without one the allocation "
                             "uses votes only")
    parser.add_argument("--token-quantile", type=float, default=1.0,
                        help="quantile of a bin's sample tokens that sets maxTokens")
    parser.add_argument("--selection-se", type=float, default=2.0,
                        help="standard errors of its difference to its family's "
                             "full-compute answer a candidate's accuracy is discounted by "
                             "when candidates compete (default: 2; 0 takes train means "
                             "as they are)")
    parser.add_argument("--prior-out", type=Path, default=None,
                        help="also fit the router's prompt prior on the serving model's "
                             "problems (their free labels, replayed under the default "
                             "policy) and write its state file here (.npz; the router's "
                             "prior.statePath warm-starts from it); the report gains its "
                             "cross-fitted AUROC")
    parser.add_argument("--prior-features", type=int, default=PriorConfig().n_features,
                        help="the prior's hashed features; must match the service's "
                             "spec.budgets.prior.nFeatures (default: its default)")
    parser.set_defaults(run=run_calibrate)


def run_calibrate(args: argparse.Namespace) -> int:
    """Calibrate as ``args`` describe; 0 on success, 2 on bad input."""
    try:
        prior_config = PriorConfig(n_features=args.prior_features)
        with _workdir(args.out) as workdir:
            models = [ModelData("serving", _load(args, workdir), args.price_per_token)]
            if args.large_data is not None or args.large_builtin is not None:
                models.append(ModelData(args.large_service, _load(args, workdir, "large_"),
                                        args.large_price_per_token))  # fmt: skip
        unit: CostUnit = args.cost_unit or ("cost" if len(models) > 1 else "samples")
        thresholds = tuple(float(t) for t in args.thresholds.split(",") if t.strip())
        config = CalibrationConfig(
            bins=args.bins, test_fraction=args.test_fraction, seed=args.seed,
            orderings=args.orderings or 20, cost_unit=unit, budget=args.budget,
            target_accuracy=args.target_accuracy, match_within=args.match_within / 100,
            thresholds=thresholds, token_quantile=args.token_quantile,
            verifier_model=args.verifier_model, selection_se=args.selection_se,
        )  # fmt: skip
        started = time.perf_counter()
        table = build_table(models, config)
        train_ids, test_ids = split_ids(table.ids, config.test_fraction, config.seed)
        train = np.array([i in train_ids for i in table.ids])
        weights = compare_estimators(table, train).shipped
        solution = solve(table, train, config, weights)
        report = solution_report(table, train, solution, config)
        thinking = _calibrate_thinking(models[0].dataset, train_ids, solution.policy, config)
        if thinking:
            report["thinking"] = thinking
        held_out = run_suite(
            models[0].dataset.subset(test_ids, name=f"{models[0].dataset.name}-test"),
            [NamedPolicy("ponder-calibrated", solution.policy)],
            SuiteConfig(orderings=config.orderings, seed=config.seed, stop_rule=solution.rule,
                        price_per_token=models[0].price_per_token),
            escalations={m.service: Escalation(m.dataset, m.price_per_token)
                         for m in models[1:]},
        )  # fmt: skip
    except _BAD_INPUT as exc:
        print(f"ponder calibrate: {exc}", file=sys.stderr)
        return 2
    spec = budgets_spec(solution.policy, solution.rule, config.verifier_model)
    policy_doc = solution.policy.model_dump(by_alias=True, mode="json", exclude_none=True)
    report["held_out"] = suite_document(held_out)
    if args.prior_out is not None:
        report["prior"] = warm_start_prior(models[0].dataset, args.prior_out, prior_config,
                                           seed=args.seed)  # fmt: skip
    report["elapsed_seconds"] = round(time.perf_counter() - started, 3)
    _print_calibration(report, held_out, policy_doc, solution.rule)
    if thinking:
        _print_thinking(thinking, [t["maxTokens"] for t in policy_doc["tiers"]], config)
    if "prior" in report:
        prior, quality = report["prior"], report["prior"]["crossfit"]["auroc_first_wrong"]
        print(f"prompt prior: learned from {prior['requests_learned']} requests, wrote "
              f"{prior['state_file']}; cross-fitted AUROC(first sample wrong) = "
              f"{_fmt(quality['learned_prior'])} (fixed estimator "
              f"{_fmt(quality['fixed_estimator'])})")
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "policy.yaml").write_text(yaml.safe_dump(policy_doc, sort_keys=False),
                                              encoding="utf-8")  # fmt: skip
        (args.out / "budgets-spec.yaml").write_text(
            yaml.safe_dump({"budgets": spec}, sort_keys=False), encoding="utf-8")
        _write_json(report, args.out / "calibration.json")
        print(f"wrote {args.out}/policy.yaml (BudgetPolicy), budgets-spec.yaml "
              f"(ReasoningService spec.budgets) and calibration.json")
    else:
        print(yaml.safe_dump(policy_doc, sort_keys=False))
    return 0


def _calibrate_thinking(dataset: Dataset, train_ids: set[str], policy: BudgetPolicy,
                        config: CalibrationConfig) -> dict[str, Any] | None:  # fmt: skip
    """Where the data hold trajectories: the probe setting chosen on the train split and
    the tier caps and it replayed on the test split (``thinking.calibrate_thinking``)."""
    train = [s for p in dataset.problems if p.problem_id in train_ids for s in from_problem(p)]
    test = [s for p in dataset.problems if p.problem_id not in train_ids
            for s in from_problem(p)]  # fmt: skip
    if not train:
        return None
    return calibrate_thinking(train, test, [t.max_tokens for t in policy.tiers],
                              tolerance=config.thinking_tolerance)  # fmt: skip


def _print_thinking(thinking: dict[str, Any], caps: list[int],
                    config: CalibrationConfig) -> None:  # fmt: skip
    probe = thinking["probe_chosen_on_train"]
    print(f"\nthinking budgets from trajectories: tier caps {caps} (smallest with forced "
          f"answers within {config.thinking_tolerance:.1%} of the full traces on train); "
          f"probe exit chosen on train: agreement {probe['agreement']}, confidence floor "
          f"{probe['confidence_floor']:g}. On the test split, per sample:")  # fmt: skip
    for row in thinking["test"]:
        print(f"  {row['name']:32s} {100 * row['accuracy']:6.2f}% ({100 * row['delta']:+.2f} "
              f"± {100 * row['paired_se']:.2f} vs full traces), {row['mean_tokens']:.0f} "
              f"tokens ({row['tokens_saved']:.0%} saved)")  # fmt: skip


def _print_calibration(report: dict[str, Any], held_out: Any, policy: dict[str, Any],
                       rule: StopRule) -> None:  # fmt: skip
    est = report["estimator"]
    thresholds = sorted({t["stopThreshold"] for t in policy["tiers"] if "stopThreshold" in t})
    verified = "" if rule.score_threshold is None \
        else f"; best-of-n stops at verifier score >= {rule.score_threshold:g}"  # fmt: skip
    print(f"train {report['split']['train']} / test {report['split']['test']} problems; "
          f"stopping: {rule.kind.value}, tier thresholds "
          f"{', '.join(f'{t:g}' for t in thresholds) or 'none'}{verified}")
    for name in ("router_default_weights", "refit_on_train"):
        q = est[name]
        print(f"estimator ({name}) on test: AUROC(pass@1<0.5) = {_fmt(q['auroc_pass1_below_half'])}"
              f", Spearman(score, error rate) = {_fmt(q['spearman_vs_error_rate'])}"
              f"{' (shipped: tiers are cut on its score)' if est['shipped'] == name else ''}")
    for kind in ("predicted_bins", "oracle_bins"):
        b = report[kind]
        print(f"{kind}: " + "; ".join(
            f"<= {x['upper_edge']:.4g}: {x['chosen']['strategy']} x{x['chosen']['max_samples']}"
            f"{' on ' + x['chosen']['model'] if x['chosen']['model'] != 'serving' else ''}"
            for x in b["bins"]) + f" | test {100 * b['test_from_curves']['accuracy']:.2f}%")
    tiers = ", ".join(f"{t['name']} (<= {t['maxDifficulty']}: {t['strategy']} "
                      f"x{t['maxSamples']}{' -> ' + t['escalateTo'] if 'escalateTo' in t else ''})"
                      for t in policy["tiers"])  # fmt: skip
    print(f"policy: {tiers}")
    print()
    print(format_table(held_out, title=f"held-out test split: {held_out.problems} problems"))
    print()
    print(format_comparisons(compare_policies(held_out)))


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"

"""The stand-in LLM's behaviour (a simulator standing in for a GPU LLM), without Triton.

Checks what a user of the simulated model would see across many samples: determinism
under a seed, accuracy falling with level, wrong answers clustering, reasoning growing
with level, ``max_tokens`` cutting a sample off before its answer, and a simulated
``cumulative_logprob`` that tells right from wrong about as well as a real reasoning
model's answer confidence does; and that the model repository built from the template
carries each model's options.
"""

from __future__ import annotations

import bisect
import math
import random
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import pytest

from ponder_localstack.sim_llm import MODEL_NAME, behaviour
from ponder_localstack.sim_llm.behaviour import (
    LEVELS,
    Problem,
    SamplingParameterError,
    SamplingParams,
    SimModel,
    SimSettings,
)
from ponder_localstack.triton import SimModelOptions, build_model_repository
from ponder_tools.data import shared_data_dir

DATA_DIR = shared_data_dir()
SEEDS = range(24)
AMPLE = 100_000


@pytest.fixture(scope="module")
def model() -> SimModel:
    return SimModel.load(DATA_DIR)


@pytest.fixture(scope="module")
def weak_model(model: SimModel) -> SimModel:
    return SimModel(model.catalog, model.calibration, SimSettings(skill_logit_offset=-2.0))


def by_level(model: SimModel) -> dict[int, list[Problem]]:
    levels: dict[int, list[Problem]] = {}
    for problem in model.catalog.problems:
        levels.setdefault(problem.level, []).append(problem)
    return levels


def sampled_accuracy(model: SimModel, problems: list[Problem]) -> float:
    outcomes = [
        model.complete(p.text, SamplingParams(max_tokens=AMPLE, seed=seed)).correct
        for p in problems
        for seed in SEEDS
    ]
    return sum(bool(o) for o in outcomes) / len(outcomes)


def math_prompt(text: str) -> str:
    return (
        "<|im_start|>system\nPlease reason step by step, and put your final answer within "
        f"\\boxed{{}}.<|im_end|>\n<|im_start|>user\n{text}<|im_end|>\n<|im_start|>assistant\n"
    )


# --- determinism ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("first", "second", "same"),
    [
        pytest.param({"seed": 7}, {"seed": 7}, True, id="same seed gives the same output"),
        pytest.param(
            {"temperature": 0, "seed": 1},
            {"temperature": 0, "seed": 2},
            True,
            id="greedy ignores the seed",
        ),
        pytest.param({"seed": 7}, {"seed": 8}, False, id="another seed gives another output"),
    ],
)
def test_output_is_fixed_by_prompt_and_seed(
    model: SimModel, first: dict[str, int], second: dict[str, int], same: bool
) -> None:
    prompt = math_prompt(model.catalog.problems[42].text)
    a = model.complete(prompt, SamplingParams(max_tokens=AMPLE, **first))
    b = model.complete(prompt, SamplingParams(max_tokens=AMPLE, **second))
    assert (a == b) is same


def test_unseeded_samples_differ(model: SimModel) -> None:
    params = SamplingParams(max_tokens=AMPLE)
    texts = {model.complete("What is 6 times 7?", params).text for _ in range(8)}
    assert len(texts) > 1


def test_the_same_seed_in_another_prompt_gives_another_output(model: SimModel) -> None:
    text = model.catalog.problems[3].text
    params = SamplingParams(max_tokens=AMPLE, seed=5)
    assert model.complete(math_prompt(text), params).text != model.complete(text, params).text


# --- problems ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "wrap",
    [
        pytest.param(lambda t: t, id="the bare problem"),
        pytest.param(math_prompt, id="inside a chat template"),
        pytest.param(lambda t: "Solve:\n\n" + "  \n ".join(t.split(" ")), id="re-spaced"),
    ],
)
def test_a_known_problem_is_recognised_in_the_prompt(model: SimModel, wrap: object) -> None:
    problem = model.catalog.problems[100]
    prompt = wrap(problem.text)  # type: ignore[operator]
    profile = model.profile_prompt(prompt)
    assert (profile.problem_id, profile.level, profile.reference) == (
        problem.problem_id,
        problem.level,
        problem.answer,
    )


def test_the_question_after_worked_examples_is_the_one_recognised(model: SimModel) -> None:
    example, question = model.catalog.problems[5], model.catalog.problems[6]
    prompt = f"Example: {example.text}\nAnswer: 42\n\nNow solve: {question.text}\nAnswer:"
    assert model.catalog.find(prompt) == question


def test_an_unknown_prompt_gets_a_stable_answer_at_mid_difficulty(model: SimModel) -> None:
    prompts = ["Tell me a joke about Kubernetes.", "What is the capital of Australia?"]
    for prompt in prompts:
        profiles = {model.profile_prompt(prompt) for _ in range(3)}
        assert len(profiles) == 1
        (profile,) = profiles
        assert profile.problem_id is None
        assert profile.level == behaviour.UNKNOWN_LEVEL
        assert profile.accuracy == pytest.approx(model.expected_level_accuracy(3))
    references = {model.profile_prompt(p).reference for p in prompts}
    assert len(references) == 2


# --- accuracy ------------------------------------------------------------------------


def test_the_calibrated_level_accuracy_falls_with_level_and_stays_near_the_data(
    model: SimModel,
) -> None:
    cal = model.calibration
    smoothed = [cal.level_accuracy[level] for level in LEVELS]
    assert smoothed == sorted(smoothed, reverse=True)
    assert len(set(smoothed)) == len(smoothed)
    for level in LEVELS:
        assert cal.level_accuracy[level] == pytest.approx(
            cal.observed_level_accuracy[level], abs=0.05
        )


@pytest.mark.parametrize("sim", ["model", "weak_model"])
def test_accuracy_per_level_falls_with_level_over_many_seeds(
    sim: str, request: pytest.FixtureRequest
) -> None:
    model: SimModel = request.getfixturevalue(sim)
    levels = by_level(model)
    expected = [model.expected_level_accuracy(level) for level in LEVELS]
    realised = [
        sum(model.problem_accuracy(p) for p in levels[level]) / len(levels[level])
        for level in LEVELS
    ]
    sampled = [sampled_accuracy(model, levels[level]) for level in LEVELS]
    assert expected == sorted(expected, reverse=True)
    assert realised == pytest.approx(expected, abs=0.005)
    assert sampled == pytest.approx(realised, abs=0.025)
    assert sampled[0] > sampled[2] > sampled[4]


def test_a_weaker_model_is_less_accurate_at_every_level(
    model: SimModel, weak_model: SimModel
) -> None:
    for level in LEVELS:
        assert weak_model.expected_level_accuracy(level) < model.expected_level_accuracy(level)


def test_some_problems_are_much_harder_than_others(model: SimModel) -> None:
    accuracies = [model.problem_accuracy(p) for p in model.catalog.problems]
    assert sum(a < 0.2 for a in accuracies) >= 10
    assert sum(0.2 <= a <= 0.8 for a in accuracies) >= 20
    assert sum(a > 0.95 for a in accuracies) >= 300


def test_majority_of_eight_beats_a_single_sample_on_contested_problems(model: SimModel) -> None:
    contested = [p for p in model.catalog.problems if 0.5 < model.problem_accuracy(p) < 0.9]
    assert contested
    single = majority = 0
    for problem in contested:
        profile = model.profile_problem(problem)
        for trial in range(20):
            rng = random.Random(f"{problem.problem_id}/{trial}")
            draws = [behaviour.draw_sample(profile, rng) for _ in range(8)]
            single += draws[0].correct
            top, _ = Counter(d.answer for d in draws).most_common(1)[0]
            majority += top == profile.reference
    assert majority > single


# --- wrong answers -------------------------------------------------------------------


@pytest.mark.parametrize(
    "reference",
    ["42", "0", "-7", "\\frac{14}{3}", "3\\sqrt{13}", "0.15", "\\text{Evelyn}", "p - q"],
)
def test_distractors_are_two_or_three_plausible_values_other_than_the_reference(
    reference: str,
) -> None:
    distractors = behaviour.compute_distractors(reference, key=f"k-{reference}")
    assert 2 <= len(distractors) <= 3
    assert reference not in distractors
    assert len(set(distractors)) == len(distractors)
    assert distractors == behaviour.compute_distractors(reference, key=f"k-{reference}")


def test_wrong_answers_cluster_on_the_distractors(model: SimModel) -> None:
    hard = [p for p in model.catalog.problems if 0.1 < model.problem_accuracy(p) < 0.7]
    assert len(hard) >= 5
    for problem in hard:
        params = [SamplingParams(max_tokens=AMPLE, seed=seed) for seed in range(150)]
        samples = [model.complete(problem.text, p) for p in params]
        wrong = [c.answer for c in samples if not c.correct]
        counts = Counter(wrong).most_common()
        top_three = sum(n for _, n in counts[:3])
        assert top_three / len(wrong) >= 0.8, problem.problem_id
        assert counts[0][1] / len(wrong) >= 0.35, problem.problem_id


# --- length --------------------------------------------------------------------------


def test_reasoning_grows_with_level(model: SimModel) -> None:
    levels = by_level(model)
    means = []
    for level in LEVELS:
        lengths = [
            len(model.complete(p.text, SamplingParams(max_tokens=AMPLE, seed=s)).tokens)
            for p in levels[level]
            for s in range(4)
        ]
        means.append(sum(lengths) / len(lengths))
    assert means == sorted(means)
    assert means[-1] > 1.5 * means[0]


def test_length_scale_stretches_the_reasoning(model: SimModel) -> None:
    longer = SimModel(model.catalog, model.calibration, SimSettings(length_scale=1 / 4))
    problem = model.catalog.problems[7]
    short = model.profile_problem(problem).median_reasoning_tokens
    assert longer.profile_problem(problem).median_reasoning_tokens == pytest.approx(4 * short)


# --- max_tokens, stop strings, parameters ----------------------------------------------


@pytest.mark.parametrize(
    ("max_tokens", "finish_reason", "answered"),
    [
        pytest.param(AMPLE, "stop", True, id="an ample budget ends with the answer"),
        pytest.param(12, "length", False, id="a small budget cuts off the reasoning"),
        pytest.param(None, "length", False, id="vLLM's default of 16 tokens cuts it off too"),
    ],
)
def test_max_tokens_truncates_before_the_answer(
    model: SimModel, max_tokens: int | None, finish_reason: str, answered: bool
) -> None:
    raw = {"seed": 3} if max_tokens is None else {"seed": 3, "max_tokens": max_tokens}
    completion = model.complete(
        math_prompt(model.catalog.problems[0].text), behaviour.parse_sampling_parameters(raw)
    )
    assert completion.finish_reason == finish_reason
    assert (completion.answer is not None) is answered
    assert ("\\boxed{" in completion.text) is answered
    if not answered:
        assert len(completion.tokens) == (max_tokens or behaviour.VLLM_DEFAULT_MAX_TOKENS)
    else:
        assert completion.text.endswith(f"The answer is \\boxed{{{completion.answer}}}.")


def test_a_cut_one_token_short_of_the_answer_has_no_answer(model: SimModel) -> None:
    prompt = model.catalog.problems[1].text
    full = model.complete(prompt, SamplingParams(max_tokens=AMPLE, seed=9))
    cut = model.complete(prompt, SamplingParams(max_tokens=len(full.tokens) - 1, seed=9))
    assert cut.tokens == full.tokens[:-1]
    assert (cut.answer, cut.finish_reason) == (None, "length")


@pytest.mark.parametrize("include", [False, True])
def test_a_stop_string_ends_the_sample(model: SimModel, include: bool) -> None:
    params = SamplingParams(
        max_tokens=AMPLE, seed=1, stop=("The answer",), include_stop_str_in_output=include
    )
    completion = model.complete("What is 6 times 7?", params)
    assert completion.finish_reason == "stop"
    assert completion.answer is None
    assert completion.text.endswith("\nThe answer" if include else "\n")


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param('{"max_tokens": 0}', id="max_tokens below one"),
        pytest.param('{"temperature": -0.5}', id="negative temperature"),
        pytest.param('{"top_p": 0}', id="top_p of zero"),
        pytest.param('{"max_token": 10}', id="a misspelt key"),
        pytest.param('{"ponder_latency": 1}', id="an unknown simulator key"),
        pytest.param("[1, 2]", id="not an object"),
        pytest.param("{max_tokens: 3}", id="not JSON"),
        pytest.param('{"seed": "abc"}', id="a seed that is not a number"),
    ],
)
def test_invalid_sampling_parameters_are_rejected(raw: str) -> None:
    with pytest.raises(SamplingParameterError):
        behaviour.parse_sampling_parameters(raw)


def test_sampling_parameters_parse_as_vllm_reads_them() -> None:
    params = behaviour.parse_sampling_parameters(
        '{"max_tokens": "64", "temperature": 0.7, "top_p": 0.95, "seed": 11, "stop": "###",'
        ' "n": 1, "ponder_token_latency_ms": 20}'
    )
    assert params == SamplingParams(
        max_tokens=64, temperature=0.7, top_p=0.95, seed=11, stop=("###",), token_latency_ms=20
    )


# --- the confidence signal (cumulative_logprob) ---------------------------------------


def auroc(positives: Sequence[float], negatives: Sequence[float]) -> float:
    """P(a positive scores above a negative), ties half."""
    ordered = sorted(negatives)
    wins = 0.0
    for x in positives:
        below, upto = bisect.bisect_left(ordered, x), bisect.bisect_right(ordered, x)
        wins += below + (upto - below) / 2
    return wins / (len(positives) * len(ordered))


def test_real_answer_confidences_are_read_for_right_and_wrong_traces(model: SimModel) -> None:
    confidence = model.confidence
    assert confidence is not None
    # 150 questions x 10 full traces of Gemma-4-12B (see shared/data/README.md).
    assert len(confidence.right_log_confidence) + len(confidence.wrong_log_confidence) == 1500
    assert all(v <= 0 for v in confidence.right_log_confidence + confidence.wrong_log_confidence)
    data = auroc(confidence.right_log_confidence, confidence.wrong_log_confidence)
    assert 0.55 < data < 0.7  # a real but weak signal on these (selected) questions


def test_the_simulated_logprob_tells_right_from_wrong_as_the_real_confidences_do(
    model: SimModel,
) -> None:
    right: list[float] = []
    wrong: list[float] = []
    right_total: list[float] = []
    wrong_total: list[float] = []
    for problem in model.catalog.problems[::2]:
        for seed in range(8):
            done = model.complete(problem.text, SamplingParams(max_tokens=AMPLE, seed=seed))
            n = len(done.tokens)
            total = done.cumulative_logprob(n)
            answer_part = total - behaviour.REASONING_LOGPROB_PER_TOKEN * n
            (right if done.correct else wrong).append(answer_part)
            (right_total if done.correct else wrong_total).append(total)
    assert model.confidence is not None
    data = auroc(model.confidence.right_log_confidence, model.confidence.wrong_log_confidence)
    assert abs(auroc(right, wrong) - data) < 0.06
    # The whole cumulative logprob adds length (wrong samples reason longer): stronger still.
    assert auroc(right_total, wrong_total) > data


def test_the_cumulative_logprob_grows_evenly_over_the_trace(model: SimModel) -> None:
    prompt = model.catalog.problems[5].text
    full = model.complete(prompt, SamplingParams(max_tokens=AMPLE, seed=4))
    cut = model.complete(prompt, SamplingParams(max_tokens=len(full.tokens) // 2, seed=4))
    assert cut.finish_reason == "length"
    n = len(cut.tokens)
    assert math.isclose(cut.cumulative_logprob(n), full.cumulative_logprob(n))
    assert full.cumulative_logprob(len(full.tokens)) < cut.cumulative_logprob(n) < 0
    assert full.cumulative_logprob(0) == 0


def test_without_confidence_data_every_token_costs_the_same(model: SimModel) -> None:
    plain = SimModel(model.catalog, model.calibration)
    done = plain.complete(model.catalog.problems[0].text, SamplingParams(max_tokens=AMPLE, seed=1))
    assert done.logprob_per_token == behaviour.REASONING_LOGPROB_PER_TOKEN


# --- the model repository --------------------------------------------------------------


def test_the_model_repository_carries_each_models_options(tmp_path: Path) -> None:
    small = SimModelOptions(
        name="sim-small",
        token_latency_ms=20,
        max_concurrency=2,
        instance_count=3,
        skill_logit_offset=-1.5,
        spread_logit=2.0,
        data_dir=Path("/srv/data"),
    )
    repo = build_model_repository(tmp_path, [SimModelOptions(), small])

    assert sorted(p.name for p in repo.iterdir()) == sorted([MODEL_NAME, "sim-small"])
    config = (repo / "sim-small" / "config.pbtxt").read_text()
    for line in (
        'name: "sim-small"',
        "count: 3, kind: KIND_CPU",
        'key: "token_latency_ms", value: { string_value: "20.0" }',
        'key: "max_concurrency", value: { string_value: "2" }',
        'key: "skill_logit_offset", value: { string_value: "-1.5" }',
        'key: "spread_logit", value: { string_value: "2.0" }',
        'key: "data_dir", value: { string_value: "/srv/data" }',
        "decoupled: true",
    ):
        assert line in config
    default = (repo / MODEL_NAME / "config.pbtxt").read_text()
    assert 'key: "spread_logit", value: { string_value: "" }' in default
    for model_dir in (repo / MODEL_NAME, repo / "sim-small"):
        assert (model_dir / "1" / "model.py").is_file()
        assert (model_dir / "behaviour.py").is_file()


@pytest.mark.parametrize("declared", [True, False])
def test_the_additional_outputs_are_declared_unless_turned_off(
    tmp_path: Path, declared: bool
) -> None:
    repo = build_model_repository(tmp_path, [SimModelOptions(additional_outputs=declared)])
    config = (repo / MODEL_NAME / "config.pbtxt").read_text()
    for name in ("finish_reason", "cumulative_logprob", "num_output_tokens"):
        assert (f'input {{ name: "return_{name}"' in config) is declared
        assert (f'output {{ name: "{name}"' in config) is declared
    assert 'name: "text_output"' in config


def test_model_names_in_one_repository_must_differ(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unique"):
        build_model_repository(tmp_path, [SimModelOptions(), SimModelOptions()])


# -- an answer forced at the cue (budget forcing; simulated) -----------------------------

CUE = "\n</think>\n\nFinal answer:"


def test_a_trace_cut_and_cued_is_recognised_with_its_prompt_and_length(model: SimModel) -> None:
    prompt = "<think>\n" + model.catalog.problems[1].text
    cut = model.complete(prompt, SamplingParams(max_tokens=12, seed=9))
    forced = behaviour.split_forced_prompt(prompt + cut.text + CUE)
    assert forced == behaviour.ForcedPrompt(prompt, 12)
    assert behaviour.split_forced_prompt(prompt + cut.text) is None  # no cue
    assert behaviour.split_forced_prompt("What is the final answer:") is None  # no trace


def test_a_forced_answer_is_short_and_is_the_whole_traces_at_the_whole_trace(
    model: SimModel,
) -> None:
    prompt = model.catalog.problems[1].text
    for seed in range(20):
        full = model.complete(prompt, SamplingParams(max_tokens=AMPLE, seed=seed))
        reasoning = full.text[: full.text.index("\nThe answer")]
        forced = model.complete(prompt + reasoning + CUE, SamplingParams(max_tokens=32, seed=seed))
        assert (forced.answer, forced.finish_reason) == (full.answer, "stop")
        assert forced.text == f" \\boxed{{{full.answer}}}."


@pytest.mark.parametrize(
    ("answer", "tokens"),
    [
        ("42", (" \\", "boxed", "{", "4", "2", "}", ".", "")),
        ("\\frac{1}{9}",
         (" \\", "boxed", "{", "\\frac", "{", "1", "}", "{", "9", "}", "}", ".", "")),
        ("3, 5", (" \\", "boxed", "{", "3", ",", " 5", "}", ".", "")),
    ],
)
def test_a_forced_answer_takes_the_tokens_a_reasoning_models_tokenizer_would(
    answer: str, tokens: tuple[str, ...]
) -> None:
    assert behaviour.forced_answer_tokens(answer) == tokens
    assert "".join(tokens) == f" \\boxed{{{answer}}}."


def test_a_forced_answer_cut_off_before_its_box_closes_has_no_answer(model: SimModel) -> None:
    prompt = model.catalog.problems[1].text
    full = model.complete(prompt, SamplingParams(max_tokens=AMPLE, seed=3))
    reasoning = full.text[: full.text.index("\nThe answer")]
    whole = model.complete(prompt + reasoning + CUE, SamplingParams(max_tokens=64, seed=3))
    n = len(whole.tokens)
    boxed = model.complete(prompt + reasoning + CUE, SamplingParams(max_tokens=n - 2, seed=3))
    cut = model.complete(prompt + reasoning + CUE, SamplingParams(max_tokens=n - 3, seed=3))
    assert (whole.finish_reason, boxed.finish_reason, cut.finish_reason) == (
        "stop", "length", "length")
    assert boxed.answer == whole.answer
    assert (cut.answer, cut.correct) == (None, None)


def test_answers_forced_earlier_in_the_trace_are_right_less_often(model: SimModel) -> None:
    problems = [p for p in model.catalog.problems if p.level <= 2][:40]
    right: dict[float, int] = {}
    for fraction in (0.1, 1.0):
        right[fraction] = 0
        for seed, problem in enumerate(problems):
            full = model.complete(problem.text, SamplingParams(max_tokens=AMPLE, seed=seed))
            cap = max(1, round(fraction * (len(full.tokens) - behaviour.ANSWER_TOKENS)))
            cut = model.complete(problem.text, SamplingParams(max_tokens=cap, seed=seed))
            forced = model.complete(problem.text + cut.text + CUE,
                                    SamplingParams(max_tokens=32, seed=seed))  # fmt: skip
            right[fraction] += bool(forced.correct)
    assert right[0.1] < right[1.0]


# -- a probe: a cue that opens the box, stopped at its closing brace (as vLLM's stop) -----

PROBE_CUE = CUE + " \\boxed{"


def full_reasoning(model: SimModel, prompt: str, seed: int) -> tuple[str, str | None]:
    full = model.complete(prompt, SamplingParams(max_tokens=AMPLE, seed=seed))
    return full.text[: full.text.index("\nThe answer")], full.answer


def test_a_probe_writes_only_its_answer_and_the_stop_eats_the_closing_brace(
    model: SimModel,
) -> None:
    prompt = model.catalog.problems[1].text
    reasoning, answer = full_reasoning(model, prompt, 4)
    assert answer is not None
    assert "}" not in answer
    probe = model.complete(prompt + reasoning + PROBE_CUE,
                           SamplingParams(max_tokens=16, seed=4, stop=("}",)))  # fmt: skip
    assert (probe.text, probe.finish_reason, probe.answer) == (answer, "stop", answer)
    # The brace that matched the stop is generated, so counted, as vLLM counts it.
    inside = behaviour.forced_answer_tokens(answer)[3:-3]
    assert len(probe.tokens) == len(inside) + 1
    unstopped = model.complete(prompt + reasoning + PROBE_CUE,
                               SamplingParams(max_tokens=16, seed=4))  # fmt: skip
    assert unstopped.text == answer + "}."


def test_a_probe_stopped_inside_a_nested_answer_goes_on_after_the_brace(model: SimModel) -> None:
    problem = next(p for p in model.catalog.problems if p.answer.startswith("\\frac{"))
    seed = next(s for s in range(200)
                if full_reasoning(model, problem.text, s)[1] == problem.answer)  # fmt: skip
    reasoning, _ = full_reasoning(model, problem.text, seed)
    params = SamplingParams(max_tokens=16, seed=seed, stop=("}",))
    written, texts = "", []
    for _ in range(8):
        probe = model.complete(problem.text + reasoning + PROBE_CUE + written, params)
        texts.append(probe.text)
        if probe.answer is not None:
            break
        assert probe.finish_reason == "stop"
        written += probe.text + "}"
    assert written + probe.text == problem.answer
    assert len(texts) == problem.answer.count("}") + 1
    assert probe.answer == problem.answer


def test_a_box_already_closed_is_not_a_cue(model: SimModel) -> None:
    prompt = model.catalog.problems[1].text
    reasoning, _ = full_reasoning(model, prompt, 4)
    assert behaviour.split_forced_prompt(prompt + reasoning + PROBE_CUE + "12}") is None
    assert behaviour.split_forced_prompt(prompt + reasoning + PROBE_CUE + "\\frac{1}") is not None

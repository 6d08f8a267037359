"""Evaluation data: JSONL loading with line-numbered issues, and the built-in sources."""

from __future__ import annotations

import json
import re
import tomllib
from importlib.metadata import EntryPoint, EntryPoints
from pathlib import Path

import pytest

from components import require_data
from ponder_localstack.standin import generate_standin
from ponder_router.answers import answer_key
from ponder_tools.data import shared_data_dir
from ponder_tools.evaluation import dataset as dataset_module
from ponder_tools.evaluation.dataset import (
    DatasetError,
    convert_qwen25math,
    load_dataset,
    parse_lines,
    write_jsonl,
)

DATA_DIR = shared_data_dir()


def row(pid: str, samples: list[str], **extra: object) -> str:
    return json.dumps({"id": pid, "question": f"What is {pid}?", "reference": "4",
                       "samples": samples, **extra})  # fmt: skip


GOOD = row("p1", ["\\boxed{4}", "\\boxed{5}"], tokens=[10, 12], scores=[0.9, 0.1], level=2)
BAD_LINES = [
    GOOD,  # line 1
    '{"id": "p2", "question": ',  # line 2: malformed JSON
    json.dumps({"id": "p3", "question": "q", "samples": ["\\boxed{1}"]}),  # 3: no reference
    row("p4", []),  # line 4: empty samples
    row("p5", ["\\boxed{4}"], tokens=[1, 2]),  # line 5: tokens of the wrong length
    row("p6", ["\\boxed{4}", "I am not sure."]),  # line 6: one sample without an answer
    row("p1", ["\\boxed{4}"]),  # line 7: repeated id
    "",  # line 8: blank, holds nothing
    row("p9", ["\\boxed{4}"], scores=["high"]),  # line 9: scores not numbers
]


def test_the_loader_reports_every_bad_line_with_its_number() -> None:
    dataset = parse_lines(BAD_LINES, source="bad.jsonl")
    found = {(issue.line, issue.skipped) for issue in dataset.issues}
    assert found == {(2, True), (3, True), (4, True), (5, True), (6, False), (7, True),
                     (9, True)}  # fmt: skip
    messages = {issue.line: issue.message for issue in dataset.issues}
    assert "malformed JSON" in messages[2]
    assert "reference" in messages[3]
    assert "empty sample list" in messages[4]
    assert "tokens" in messages[5]
    assert "sample 1" in messages[6]
    assert "repeated id" in messages[7]
    assert "scores" in messages[9]


def test_lenient_loading_skips_bad_problems_and_counts_them() -> None:
    dataset = parse_lines(BAD_LINES)
    assert [p.problem_id for p in dataset.problems] == ["p1", "p6"]
    assert dataset.skipped == 6
    assert "2 problems" in dataset.summary()
    assert "6 problems skipped" in dataset.summary()


def test_strict_loading_fails_on_the_first_bad_line_and_names_it(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(BAD_LINES) + "\n", encoding="utf-8")
    with pytest.raises(DatasetError, match=r"bad\.jsonl: line 2: malformed JSON"):
        load_dataset(path, strict=True)


def test_strict_loading_refuses_an_unparseable_sample_too() -> None:
    with pytest.raises(DatasetError, match="line 1 \\(p6\\): sample 1"):
        parse_lines([BAD_LINES[5]], strict=True)


def test_an_unparseable_sample_is_kept_as_an_abstention() -> None:
    dataset = parse_lines(BAD_LINES)
    p6 = dataset.problems[1]
    assert p6.answer_keys == ("4", None)
    assert p6.pass_at_1 == 0.5
    assert dataset.abstentions == 1


def test_answers_are_keyed_once_with_the_router_equality() -> None:
    dataset = parse_lines([row("p", ["\\boxed{\\frac{1}{2}}", "The answer is 0.5", "\\boxed{3/4}"],
                               reference="1/2")])  # fmt: skip
    problem = dataset.problems[0]
    assert problem.answer_keys[0] == problem.answer_keys[1] == problem.reference_key
    assert problem.pass_at_1 == pytest.approx(2 / 3)


def test_a_file_without_a_usable_problem_is_an_error() -> None:
    with pytest.raises(DatasetError, match="no usable problems; first issue: line 1"):
        parse_lines(["not json"])


def test_a_missing_file_is_an_error_that_names_it(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"missing\.jsonl"):
        load_dataset(tmp_path / "missing.jsonl")


def test_the_qwen_converter_reads_every_problem_in_place(tmp_path: Path) -> None:
    require_data(DATA_DIR / "samples")
    path = write_jsonl(convert_qwen25math(DATA_DIR), tmp_path / "qwen.jsonl")
    dataset = load_dataset(path)
    assert len(dataset.problems) == 100
    assert not dataset.issues
    assert all(p.sample_count == 8 and p.tokens and p.scores for p in dataset.problems)
    assert {p.level for p in dataset.problems} == {1, 2, 3, 4, 5}
    mean = sum(p.pass_at_1 for p in dataset.problems) / 100
    assert mean == pytest.approx(0.91)  # the file's own overall sample accuracy


def test_the_stand_in_generator_is_deterministic_under_a_seed() -> None:
    require_data(DATA_DIR / "math")
    first = list(generate_standin(DATA_DIR, samples_per_problem=4, seed=3, problem_limit=3))
    again = list(generate_standin(DATA_DIR, samples_per_problem=4, seed=3, problem_limit=3))
    other = list(generate_standin(DATA_DIR, samples_per_problem=4, seed=4, problem_limit=3))
    assert first == again
    assert [r["samples"] for r in first] != [r["samples"] for r in other]
    dataset = parse_lines(json.dumps(r) for r in first)
    assert not dataset.issues
    assert all(p.tokens for p in dataset.problems)


LOCALSTACK_PYPROJECT = Path(__file__).resolve().parents[2] / "localstack" / "pyproject.toml"


def registered(group: str, name: str, value: str) -> EntryPoints:
    return EntryPoints([EntryPoint(name=name, value=value, group=group)])


def test_the_local_stack_registers_the_stand_in_generator_as_an_entry_point() -> None:
    project = tomllib.loads(LOCALSTACK_PYPROJECT.read_text())
    generators = project["project"]["entry-points"][dataset_module.GENERATOR_GROUP]
    assert generators == {"standin-math500": "ponder_localstack.standin:generate_standin"}
    found = registered(dataset_module.GENERATOR_GROUP, "standin-math500",
                       generators["standin-math500"])  # fmt: skip
    assert next(iter(found)).load() is generate_standin


def test_a_registered_generator_is_found_by_name_and_its_rows_load(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    require_data(DATA_DIR / "math")
    value = "ponder_localstack.standin:generate_standin"
    monkeypatch.setattr(dataset_module, "entry_points", lambda group, name: registered(
        group, name, value) if name == "standin-math500" else EntryPoints([]))  # fmt: skip
    rows = list(dataset_module.generate("standin-math500", DATA_DIR, samples_per_problem=2,
                                        problem_limit=3))  # fmt: skip
    assert rows == list(generate_standin(DATA_DIR, samples_per_problem=2, problem_limit=3))


@pytest.mark.parametrize("value", [None, "ponder_localstack_gone.standin:generate_standin"])
def test_a_missing_generator_is_a_dataset_error_naming_the_package_to_install(
    monkeypatch: pytest.MonkeyPatch, value: str | None
) -> None:
    monkeypatch.setattr(dataset_module, "entry_points", lambda group, name: registered(
        group, name, value) if value else EntryPoints([]))  # fmt: skip
    with pytest.raises(DatasetError, match=r"ponder-localstack package.*make setup"):
        list(dataset_module.generate("standin-math500", DATA_DIR))



def test_unreadable_data_under_a_generator_is_a_dataset_error(monkeypatch: pytest.MonkeyPatch,
                                                               tmp_path: Path) -> None:  # fmt: skip
    value = "ponder_localstack.standin:generate_standin"
    monkeypatch.setattr(dataset_module, "entry_points",
                        lambda group, name: registered(group, name, value))  # fmt: skip
    with pytest.raises(DatasetError, match="set PONDER_DATA_DIR"):
        list(dataset_module.generate("standin-math500", tmp_path, problem_limit=1))


DATES = [row(f"d{i}", [f"Q: when? A: 05/0{i}/2021", f"I think A: 05/0{i}/2021", "A: 1999"],
             reference=f"05/0{i}/2021") for i in range(1, 4)]  # fmt: skip


def test_a_regex_pattern_reads_date_answers_the_chain_would_misread() -> None:
    chain = parse_lines(DATES)
    assert all(key is None for p in chain.problems for key in p.answer_keys[:2])
    dated = parse_lines(DATES, extractor="regex", pattern=r"A:\s*(\S+)")
    assert [p.pass_at_1 for p in dated.problems] == pytest.approx([2 / 3] * 3)


def test_text_equality_ignores_case_whitespace_and_quotes() -> None:
    lines = [row("city", ['Answer: "Paris"', "Answer: paris.", "Answer: Lyon"],
                 reference="PARIS")]  # fmt: skip
    exact = parse_lines(lines, extractor="regex", pattern=r"Answer:\s*(.+)", mode="exact")
    text = parse_lines(lines, extractor="regex", pattern=r"Answer:\s*(.+)", mode="text")
    assert exact.problems[0].pass_at_1 == 0.0
    assert text.problems[0].pass_at_1 == pytest.approx(2 / 3)


def test_multiple_choice_letters_are_read_with_the_choice_extractor() -> None:
    lines = [row("mc", ["so the answer is (B)", "Answer: B", "A train... (C)"], reference="B")]
    assert parse_lines(lines, extractor="choice").problems[0].answer_keys == ("B", "B", "C")


@pytest.mark.parametrize(
    ("extractor", "pattern", "fragment"),
    [
        ("regex", None, "pattern: pattern is required with extractor regex"),
        ("regex", r"A:\s*\S+", "pattern: pattern must have exactly one capture group"),
        ("regex", "(unclosed", "pattern: pattern is not a regular expression"),
        ("chain", r"(x)", "pattern: pattern is required with extractor regex, and only then"),
    ],
)
def test_an_unusable_answer_setting_is_refused_before_any_line_is_read(
    extractor: str, pattern: str | None, fragment: str
) -> None:
    with pytest.raises(DatasetError, match=re.escape(f"answers: {fragment}")):
        parse_lines(DATES, extractor=extractor, pattern=pattern)


def test_pre_extracted_answers_and_confidences_load_without_sample_texts() -> None:
    line = json.dumps({"id": "g1", "question": "Which?", "reference": "B",
                       "answers": ["B", None, "c"], "confidences": [0.9, 0.2, 0.5]})
    problem = parse_lines([line], mode="text").problems[0]
    assert problem.answer_keys == ("b", None, "c")
    assert problem.confidences == (0.9, 0.2, 0.5)
    assert problem.pass_at_1 == pytest.approx(1 / 3)


@pytest.mark.parametrize(("extra", "message"), [
    ({"answers": ["B"], "confidences": [1.5]}, "probabilities in [0, 1]"),
    ({"answers": ["B", "C"], "samples": ["B"]}, "'answers' has 2 entries for 1 samples"),
    ({"answers": [3]}, "list of strings or nulls"),
    ({"answers": ["B"], "confidences": [0.5, 0.5]}, "'confidences' has 2 entries"),
])
def test_bad_answers_or_confidences_skip_the_problem_and_say_why(
        extra: dict[str, object], message: str) -> None:  # fmt: skip
    line = json.dumps({"id": "g1", "question": "Which?", "reference": "B", **extra})
    with pytest.raises(DatasetError, match=re.escape(message)):
        parse_lines([line], mode="text")


def test_the_gemma_converter_gives_ten_traces_a_question_with_confidences(
        tmp_path: Path) -> None:  # fmt: skip
    from ponder_tools.evaluation.trajectories import convert_gemma_thinking, load_gemma_traces

    require_data(DATA_DIR / "samples")
    traces = load_gemma_traces(DATA_DIR)
    assert len(traces) == 1500
    assert all(len(t.checkpoints) == 11 for t in traces)
    assert all(t.checkpoints[-1].fraction == 1.0 for t in traces)
    path = write_jsonl(convert_gemma_thinking(DATA_DIR), tmp_path / "gemma.jsonl")
    dataset = load_dataset(path, mode="text")
    assert len(dataset.problems) == 150
    assert dataset.has_confidences
    assert dataset.has_tokens
    assert all(p.sample_count == 10 for p in dataset.problems)
    # a trace's forced answer at a cap is the last checkpoint written within it
    trace = traces[0]
    assert trace.at_tokens(trace.tokens) == trace.final
    assert trace.at_tokens(0) == trace.checkpoints[0]
    # its checkpoints travel with the rows: the answer at a cap is the trace's own
    first = dataset.problems[0]
    assert first.checkpoints is not None
    forced = trace.at_tokens(trace.tokens // 2).answer
    assert first.answer_at(0, trace.tokens // 2) == answer_key(forced, "text")


def test_checkpoints_are_read_in_trace_order_with_answers_keyed() -> None:
    line = json.dumps({"id": "g1", "question": "Which?", "reference": "B", "answers": ["B"],
                       "checkpoints": [[[0, "a"], [50, None], [100, " B "]]]})  # fmt: skip
    problem = parse_lines([line], mode="text").problems[0]
    assert problem.checkpoints == (((0, "a"), (50, None), (100, "b")),)
    assert [problem.answer_at(0, cap) for cap in (0, 49, 50, 99, 100, 10**6)] == [
        "a", "a", None, None, "b", "b"]


@pytest.mark.parametrize("checkpoints", [
    [[[0, "A"]], [[0, "B"]]],  # two lists for one sample
    [[]],  # an empty trajectory
    [[[50, "A"], [10, "B"]]],  # out of order
    [[[-1, "A"]]],  # negative tokens
    [[["10", "A"]]],  # tokens not an integer
])  # fmt: skip
def test_bad_checkpoints_skip_the_problem_and_say_why(checkpoints: object) -> None:
    line = json.dumps({"id": "g1", "question": "Which?", "reference": "B", "answers": ["B"],
                       "checkpoints": checkpoints})  # fmt: skip
    with pytest.raises(DatasetError, match="checkpoints"):
        parse_lines([line], mode="text", strict=True)

"""Answer extraction and normalisation, checked on tables and on real model outputs."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any, get_args

import pytest
from pydantic import ValidationError

from components import require_data
from ponder_router.answers import (
    EXTRACTORS,
    MAX_SEARCHED_CHARS,
    AnswerFormat,
    EqualityMode,
    ExtractorName,
    answer_key,
    answers_equal,
    extract_answer,
    get_extractor,
    normalize_answer,
    numeric_value,
)
from ponder_router.errors import PolicyError, UnknownExtractorError
from ponder_tools.data import shared_data_dir

DATA_DIR = shared_data_dir()


def read_csv(path: Path) -> list[dict[str, str]]:
    require_data(path)
    with path.open(encoding="utf-8", newline="") as rows:
        return list(csv.DictReader(rows))


@pytest.mark.parametrize(
    ("extractor", "text", "expected"),
    [
        ("boxed", "so $x = \\boxed{\\frac{1}{\\sqrt{2}}}$.", "\\frac{1}{\\sqrt{2}}"),
        ("boxed", "first \\boxed{1}, then \\boxed{ 2 }", "2"),
        ("boxed", "nested \\boxed{\\{1, \\{2\\}\\}}", "\\{1, \\{2\\}\\}"),
        ("boxed", "\\fbox{7}", "7"),
        ("boxed", "bare \\boxed 5$", "5"),
        ("boxed", "cut off \\boxed{\\frac{1}{2", None),
        ("boxed", "no box", None),
        ("hash", "Natalia sold 48/2 = 24 clips.\n#### 72", "72"),
        ("hash", "#### 1,234\n", "1,234"),
        ("hash", "nothing", None),
        ("the-answer-is", "Thus the answer is $\\frac{3}{5}$. Done.", "\\frac{3}{5}"),
        ("the-answer-is", "Final Answer: 3.5 cm. Next", "3.5 cm"),
        ("the-answer-is", "The final answer is \\boxed{7}.", "7"),
        ("the-answer-is", "no phrase", None),
        ("last-number", "3 apples and 12.5 pears", "12.5"),
        ("last-number", "a total of -1,000,000 dollars", "-1,000,000"),
        ("last-number", "so 7/8 of it", "7/8"),
        ("last-number", "none at all", None),
        ("last-number", "A: 05/01/2021", None),  # a date is not a number, nor is its year
        ("last-number", "3 days before 2021-05-01", "3"),
        ("last-number", "by 1.5.2021 it had 12 rooms", "12"),
        ("choice", "The answer is (B).", "B"),
        ("choice", "Answer: C", "C"),
        ("choice", "Between (A) and (D), I pick (D)", "D"),
        ("choice", "A train leaves at noon, so E", "E"),  # never the article
        ("choice", "so the choice is \\boxed{C}", "C"),
        ("choice", "so it is \\boxed{42}", None),
        ("choice", "Answer: F", None),
        ("choice", "an answer without a letter", None),
        ("chain", "the answer is 4, i.e. \\boxed{5}", "5"),
        ("chain", "blah 3\n#### 12", "12"),
        ("chain", "So the answer is 9.", "9"),
        ("chain", "we get 10 then 11", "11"),
        ("chain", "we get 10 then \\boxed{\\frac{1}{", None),  # cut off: abstain, don't guess
        ("chain", "I am not sure.", None),
    ],
)
def test_extractors_find_the_final_answer(extractor: str, text: str, expected: str | None) -> None:
    assert extract_answer(text, extractor) == expected


def test_every_extractor_but_regex_has_a_name_in_the_registry() -> None:
    assert set(EXTRACTORS) == {"boxed", "hash", "the-answer-is", "last-number", "chain", "choice"}
    assert set(get_args(ExtractorName)) == {*EXTRACTORS, "regex"}


def test_an_unknown_extractor_name_lists_the_known_ones() -> None:
    with pytest.raises(UnknownExtractorError, match="boxed, chain, choice, hash") as caught:
        get_extractor("magic")
    assert isinstance(caught.value, PolicyError)


def test_a_custom_extractor_plugs_in_through_an_extended_registry() -> None:
    registry = {**EXTRACTORS, "last-line": lambda text: text.strip().splitlines()[-1]}
    assert get_extractor("last-line", registry)("work\nforty-two") == "forty-two"


@pytest.mark.parametrize(
    ("raw", "normalised"),
    [
        ("\\dfrac{1}{2}", "\\frac{1}{2}"),
        ("\\tfrac12", "\\frac{1}{2}"),
        ("\\frac1{2}", "\\frac{1}{2}"),
        ("1/2", "\\frac{1}{2}"),
        ("$\\frac{1}{2}$.", "\\frac{1}{2}"),
        ("\\boxed{3}", "3"),
        ("0.50", "0.5"),
        (".5", "0.5"),
        ("12.0", "12"),
        ("100.00", "100"),
        ("1,000", "1000"),
        ("(1, 2)", "(1,2)"),  # a tuple, not a thousands separator
        ("\\left( 1, 2 \\right)", "(1,2)"),
        ("\\!1\\,000", "1000"),
        ("90^\\circ", "90"),
        ("90^{\\circ}", "90"),
        ("50\\%", "50"),
        ("10 \\text{ cm}", "10"),
        ("5\\text{ cm}^2", "5"),
        ("12 inches", "12"),
        ("2m", "2m"),  # a variable, not metres
        ("\\text{(B)}", "(B)"),
        ("\\textbf{Monday}", "Monday"),
        ("x = 5", "5"),
        ("y = 2x + 3", "2x+3"),
        ("\\sqrt2/2", "\\frac{\\sqrt{2}}{2}"),
        ("x^{2}", "x^2"),
        ("\\displaystyle \\pi", "\\pi"),
    ],
)
def test_normalisation_gives_one_spelling_per_answer(raw: str, normalised: str) -> None:
    assert normalize_answer(raw) == normalised


@pytest.mark.parametrize(
    ("a", "b", "mode", "equal"),
    [
        ("\\frac{1}{2}", "\\dfrac12", "latex", True),
        ("\\frac{1}{2}", "0.5", "latex", False),
        ("\\frac{1}{2}", "0.5", "numeric", True),
        ("1/2", "0.50", "numeric", True),
        ("-\\frac{3}{4}", "\\frac{-3}{4}", "numeric", True),
        ("-0.75", "-\\frac{3}{4}", "numeric", True),
        ("0.333", "\\frac{1}{3}", "numeric", False),  # never equal by rounding
        ("3", "3.0", "numeric", True),
        ("3", "3.0", "exact", False),
        (" 3 ", "3", "exact", True),
        ("\\sqrt{2}", "\\sqrt2", "numeric", True),
        ("\\pi", "3.14159", "numeric", False),
        ("(1,2)", "(2,1)", "latex", False),
        ("1,000", "1000", "numeric", True),
        ("05/01/2021", "2021", "numeric", False),  # a date is text, never a fraction
        ("05/01/2021", "5/1/2021", "numeric", False),
        ("05/01/2021", "05/01/2021", "numeric", True),
        ('"Paris"', "paris.", "text", True),
        ("New   York", "new york", "text", True),
        ("\u201cdon\u2019t\u201d", "'Don't'", "text", True),  # curly quotes
        ("Paris", "Parris", "text", False),
        ("Paris", "paris", "exact", False),
    ],
)
def test_answers_compare_as_their_mode_says(
    a: str, b: str, mode: EqualityMode, equal: bool
) -> None:
    assert answers_equal(a, b, mode) is equal
    assert (answer_key(a, mode) == answer_key(b, mode)) is equal


@pytest.mark.parametrize(
    ("answer", "value"),
    [("7", 7), ("-2.50", -2.5), ("\\frac{3}{8}", 0.375), ("x+1", None), ("\\frac{1}{0}", None)],
)
def test_plain_numbers_have_an_exact_value(answer: str, value: float | None) -> None:
    got = numeric_value(answer)
    assert (None if got is None else float(got)) == value


def test_real_predictions_graded_correct_normalise_equal_to_the_reference() -> None:
    samples_dir = DATA_DIR / "samples"
    problems = {
        row["idx"]: row for row in read_csv(samples_dir / "qwen25math_math100_x8_problems.csv")
    }
    samples = read_csv(samples_dir / "qwen25math_math100_x8_samples.csv")
    correct = [s for s in samples if s["correct"] == "1"]
    wrong = [s for s in samples if s["correct"] == "0"]

    def agrees(sample: dict[str, str]) -> bool:
        return answers_equal(sample["pred_answer"], problems[sample["idx"]]["gt_answer"])

    agreement = sum(map(agrees, correct)) / len(correct)
    false_agreement = sum(map(agrees, wrong)) / len(wrong)
    assert agreement >= 0.99  # measured 728/728 = 1.0 (exact strings: 708/728)
    assert false_agreement <= 0.01  # measured 0/72


@pytest.mark.parametrize(
    ("pattern", "text", "expected"),
    [
        (r"A:\s*(\S+)", "Q: when? A: 05/01/2021", "05/01/2021"),
        (r"A:\s*(\S+)", "A: 1\nA: 2", "2"),  # the last match
        (r"Answer:\s*(.*)", "Answer:   ", None),  # an empty capture abstains
        (r"(?P<date>\d{4}-\d\d-\d\d)", "from 2020-01-01 to 2021-05-01", "2021-05-01"),
        (r"A:\s*(\S+)", "no answer line", None),
    ],
)
def test_a_regex_extractor_returns_the_capture_of_the_last_match(
    pattern: str, text: str, expected: str | None
) -> None:
    answers = AnswerFormat(extractor="regex", pattern=pattern)
    assert answers.extractor_function()(text) == expected


def test_a_regex_extractor_searches_only_the_end_of_a_long_completion() -> None:
    extract = AnswerFormat(extractor="regex", pattern=r"A:\s*(\d+)").extractor_function()
    early = "A: 1 " + "x" * MAX_SEARCHED_CHARS
    assert extract(early) is None
    assert extract(early + " A: 2") == "2"


def test_an_answer_format_without_settings_is_chain_and_numeric() -> None:
    answers = AnswerFormat()
    assert (answers.extractor, answers.pattern, answers.equality) == ("chain", None, "numeric")
    assert answers.extractor_function()("so \\boxed{7}") == "7"


@pytest.mark.parametrize(
    ("fields", "field", "fragment"),
    [
        ({"extractor": "magic"}, "extractor", "'chain'"),
        ({"equality": "fuzzy"}, "equality", "'text'"),
        ({"extractor": "regex"}, "pattern", "pattern is required with extractor regex"),
        ({"pattern": "(x)"}, "pattern", "pattern is required with extractor regex, and only"),
        ({"extractor": "regex", "pattern": "(unclosed"}, "pattern", "not a regular expression"),
        ({"extractor": "regex", "pattern": r"A:\s*\S+"}, "pattern",
         "exactly one capture group, around the answer (it has 0)"),
        ({"extractor": "regex", "pattern": r"(A):\s*(\S+)"}, "pattern", "(it has 2)"),
        ({"extractor": "regex", "pattern": r"(a+)+b"}, "pattern", "exponential"),
        ({"extractor": "regex", "pattern": r"([a-z]+)+?"}, "pattern", "exponential"),
        ({"extractor": "regex", "pattern": r"(?:\w*\s)*(\d+)"}, "pattern", "exponential"),
        ({"extractor": "regex", "pattern": "(" + "x" * 600 + ")"}, "pattern", "at most 512"),
    ],
)  # fmt: skip
def test_an_unusable_answer_format_is_refused_naming_the_field(
    fields: dict[str, Any], field: str, fragment: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        AnswerFormat.model_validate(fields)
    assert caught.value.errors()[0]["loc"] == (field,)
    assert fragment in caught.value.errors()[0]["msg"]


@pytest.mark.parametrize(
    "pattern",
    [r"(\d+)", r"\((\w)\)", r"[(]x[)]\s*(\S+)", r"(?:Answer|A)\s*:\s*(?i:(yes|no))",
     r"(\d+)(?=\s*$)", r"(\d+)\+\d+", r"([+*]+)x"],
)
def test_a_pattern_with_one_capture_group_is_accepted(pattern: str) -> None:
    assert AnswerFormat(extractor="regex", pattern=pattern).pattern == pattern

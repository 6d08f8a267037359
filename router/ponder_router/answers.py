"""Final answers out of completions, and when two answers are the same answer.

Role: the step between a finished sample and ``aggregate`` (which votes over the answers
found here). Extractors are plain functions ``text -> answer | None`` held in a read-only
registry by name; ``None`` means the sample abstains. Normalisation rewrites LaTeX answers
to one spelling so votes over ``\\dfrac{1}{2}``, ``\\frac12`` and ``1/2`` agree.

``AnswerFormat`` is how one service's model writes its answers: a named extractor (or a
user's ``regex`` with one capture group) and an equality mode. It is the router config's
``answers`` section and the ReasoningService CRD's ``spec.answers`` (the operator's API
imports it), so its CEL rules are the API server's half of the validators below.
Pure: no I/O, no clock, no logging.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from decimal import Decimal
from fractions import Fraction
from types import MappingProxyType
from typing import Literal, cast

from pydantic import BaseModel, ConfigDict, Field, JsonValue, ValidationInfo, field_validator
from pydantic.alias_generators import to_camel

from .errors import UnknownExtractorError

Extractor = Callable[[str], str | None]
"""Finds the final answer in a completion, or ``None`` when there is none."""

EqualityMode = Literal["exact", "latex", "numeric", "text"]
ExtractorName = Literal[
    "chain", "boxed", "hash", "the-answer-is", "last-number", "choice", "regex"
]

MAX_SEARCHED_CHARS = 8192
"""A ``regex`` extractor searches only the completion's last this many characters: the
answer is at the end, and a user's pattern never scans a 100,000-character trace."""
MAX_PATTERN_CHARS = 512

_BOXED = re.compile(r"\\(?:boxed|fbox)")
_HASH = re.compile(r"####\s*([^\n]+)")
_THE_ANSWER_IS = re.compile(
    r"(?:final answer|the answer)\s*(?:is|:)\s*:?\s*([^\n]+)", re.IGNORECASE
)
_DATE = re.compile(r"(?<![\d/.-])\d{1,4}([/.-])\d{1,2}\1\d{1,4}(?![\d/.-])")
_NUMBER = re.compile(r"-?\d{1,3}(?:,\d{3})+(?:\.\d+)?|-?\d+(?:\.\d+)?(?:/\d+)?|-?\.\d+")
_SPACING = re.compile(r"\\[!,;:> ]|\\q?quad|\\displaystyle|\\(?:left|right)(?![A-Za-z])")
_DEGREES = re.compile(r"\^\s*\{?\s*\\circ\s*\}?|\\circ|\\degree|°")
_WRAPPER = re.compile(r"^\\(?:text|textbf|mathrm|mathbf|mbox)\{([^{}]*)\}$")
_UNIT_TEXT = re.compile(
    r"(?<=\S)\s*\\(?:text|mbox|mathrm)\{\s*[A-Za-z][A-Za-z .]*\}(?:\^\{?[23]\}?)?$"
)
_UNIT_WORD = re.compile(
    r"(?<=\d)\s*(?:cm|mm|km|inches|inch|feet|foot|ft|meters|metres|units|degrees"
    r"|square units|sq units|dollars|cents|hours|minutes|seconds|days)(?:\^?\{?[23]\}?)?$"
)
_SHORT_FRACTION = re.compile(r"\\frac(\d)(\d)|\\frac(\d)(?=\{)|\\frac\{([^{}]+)\}(\d)")
_SHORT_SQRT = re.compile(r"\\sqrt(\w)")
_SHORT_POWER = re.compile(r"\^\{(\w)\}")
_DECIMAL = re.compile(r"(?<![\w.])(\d+\.\d+|\.\d+)(?![\d.])")
_THOUSANDS = re.compile(r"^-?\d{1,3}(?:,\d{3})+(?:\.\d+)?$")
_SIMPLE_SIDE = re.compile(r"^-?[\w\\{}^.]+$")
_LHS = re.compile(r"^[A-Za-z](?:_\{?\w\}?)?=(?!=)")
_FRACTION_VALUE = re.compile(r"^(-?)\\frac\{(-?\d+(?:\.\d+)?)\}\{(-?\d+(?:\.\d+)?)\}$")
_PLAIN_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


def extract_boxed(text: str) -> str | None:
    """The contents of the last ``\\boxed{...}`` (or ``\\fbox``), braces matched."""
    matches = list(_BOXED.finditer(text))
    if not matches:
        return None
    rest = text[matches[-1].end() :]
    if rest.startswith("{"):
        depth = 0
        for index, char in enumerate(rest):
            depth += (char == "{") - (char == "}")
            if depth == 0:
                return rest[1:index].strip()
        return None  # unbalanced: the completion was cut off inside the box
    bare = re.match(r"\s+([^\s$]+)", rest)  # \boxed 5
    return bare.group(1) if bare else None


def extract_hash(text: str) -> str | None:
    """The text after the last GSM8K-style ``####`` marker."""
    matches = _HASH.findall(text)
    if not matches:
        return None
    answer: str = matches[-1].strip()
    return answer or None


def extract_the_answer_is(text: str) -> str | None:
    """The answer after the last "the answer is" / "final answer:" phrase."""
    matches = _THE_ANSWER_IS.findall(text)
    if not matches:
        return None
    tail: str = matches[-1]
    boxed = extract_boxed(tail)
    if boxed is not None:
        return boxed
    answer = re.split(r"\.\s", tail, maxsplit=1)[0].strip().rstrip(".").strip("$ ")
    return answer or None


def extract_last_number(text: str) -> str | None:
    """The last number in the text (integer, decimal, ``a/b``, thousands separators).

    A date (``05/01/2021``, ``2021-05-01``, ``1.5.2021``) is not a number, nor are its parts.
    """
    matches = _NUMBER.findall(_DATE.sub(" ", text))
    return matches[-1] if matches else None


_CHOICE_AFTER_ANSWER = re.compile(
    r"answer\W{0,3}(?:is|:)?\W{0,3}(?:option\s+)?\(?([A-E])\)?(?![A-Za-z0-9])", re.IGNORECASE
)
_CHOICE_IN_PARENS = re.compile(r"\(([A-E])\)")
_CHOICE_STANDALONE = re.compile(r"(?<![A-Za-z0-9])([B-E]|A(?!\s+[a-z]))(?![A-Za-z0-9'\u2019])")


def extract_choice(text: str) -> str | None:
    """The chosen multiple-choice letter, A to E: ``\\boxed{C}``, else the last "answer: C"
    / "the answer is (C)", else the last "(C)", else the last standalone capital A to E
    (never the article in "A train leaves").
    """
    boxed = extract_boxed(text)
    if boxed is not None:
        letter = re.fullmatch(r"\(?([A-E])\)?", boxed.strip())
        return letter.group(1) if letter else None
    for pattern in (_CHOICE_AFTER_ANSWER, _CHOICE_IN_PARENS, _CHOICE_STANDALONE):
        matches = [m for m in pattern.findall(text) if m.isupper()]
        if matches:
            return str(matches[-1])
    return None


def regex_extractor(pattern: str) -> Extractor:
    """An extractor returning the capture group of ``pattern``'s last match.

    Only the last ``MAX_SEARCHED_CHARS`` characters are searched; an empty capture abstains.
    """
    compiled = re.compile(pattern)

    def extract(text: str) -> str | None:
        captured = [m.group(1) for m in compiled.finditer(text[-MAX_SEARCHED_CHARS:])]
        answer = (captured[-1] or "").strip() if captured else ""
        return answer or None

    return extract


def chain_extractors(*extractors: Extractor) -> Extractor:
    """An extractor that returns the first answer any of ``extractors`` finds."""

    def chained(text: str) -> str | None:
        for extractor in extractors:
            answer = extractor(text)
            if answer is not None:
                return answer
        return None

    return chained


_FALLBACKS = chain_extractors(extract_hash, extract_the_answer_is, extract_last_number)


def extract_chain(text: str) -> str | None:
    """``boxed``, then ``hash``, ``the-answer-is``, ``last-number``, first found wins.

    A completion cut off inside its ``\\boxed{`` abstains instead of falling back to a
    stray number from the unfinished reasoning.
    """
    boxed = extract_boxed(text)
    if boxed is not None:
        return boxed
    return None if _BOXED.search(text) else _FALLBACKS(text)


EXTRACTORS: Mapping[str, Extractor] = MappingProxyType(
    {
        "boxed": extract_boxed,
        "hash": extract_hash,
        "the-answer-is": extract_the_answer_is,
        "last-number": extract_last_number,
        "chain": extract_chain,
        "choice": extract_choice,
    }
)
"""Extractors by name; ``chain`` is the default. ``regex`` is not here: it needs a pattern
(``regex_extractor``, or ``AnswerFormat.extractor_function``)."""


def get_extractor(name: str, registry: Mapping[str, Extractor] = EXTRACTORS) -> Extractor:
    """The extractor called ``name``; pass ``{**EXTRACTORS, ...}`` to plug in more."""
    try:
        return registry[name]
    except KeyError as exc:
        raise UnknownExtractorError(
            f"unknown answer extractor {name!r}; known: {', '.join(sorted(registry))}"
        ) from exc


def extract_answer(text: str, extractor: str = "chain") -> str | None:
    """The final answer in ``text`` found by the extractor named ``extractor``."""
    return get_extractor(extractor)(text)


# A user's pattern is checked twice, as every rule of the CRD: by Python's ``re`` below and
# by the API server's CEL (RE2), which cannot compile a Python pattern, so it tokenises it:
# escapes and character classes are skipped, and the parentheses left are counted.
_TOKENS = r"\\.|\[\^?\]?(?:\\.|[^\]\\])*\]|\(\?P<|\(\?|\(|\)"
_BODY = r"(?:\\.|\[\^?\]?(?:\\.|[^\]\\])*\]|[^()\\\[])*"
_REPEAT = r"(?:[+*]|\{\d+,\})"
NESTED_REPEAT = re.compile(rf"\({_BODY}{_REPEAT}{_BODY}\){_REPEAT}")
"""A repeated group that repeats inside, such as ``(a+)+``: exponential on a near miss."""

PATTERN_RULES: tuple[tuple[str, str], ...] = (
    (f"self.findAll(r'{_TOKENS}').filter(t, t == '(' || t == '(?P<').size() == 1",
     "pattern must have exactly one capture group, around the answer"),
    (f"self.findAll(r'{_TOKENS}').filter(t, t.startsWith('(')).size() == "
     f"self.findAll(r'{_TOKENS}').filter(t, t == ')').size()",
     "pattern must be a regular expression with balanced parentheses"),
    (f"!self.matches(r'{NESTED_REPEAT.pattern}')",
     "pattern must not repeat a group that repeats inside, such as (a+)+: it can take "
     "exponential time"),
)
"""The API server's checks of ``spec.answers.pattern``, as CEL rule and message."""
PATTERN_IFF_REGEX = (
    "has(self.pattern) == (has(self.extractor) && self.extractor == 'regex')",
    "pattern is required with extractor regex, and only then",
)


class AnswerFormat(BaseModel):
    """How the model writes its final answer, and when two answers are the same.

    extractor picks the answer out of each sample: chain (boxed, then ####, then "the
    answer is", then the last number), one of those alone, choice (a multiple-choice
    letter A to E) or regex (the capture group of pattern's last match, searched in the
    last 8192 characters). equality says when two answers are one vote: numeric (0.5 =
    1/2 = \\frac{1}{2}), latex (normalised LaTeX), text (ignoring case, whitespace and
    quotes) or exact.
    """

    # Also the ReasoningService CRD's spec.answers (the operator's API imports it), so the
    # docstring and descriptions are what kubectl explain shows.

    model_config = ConfigDict(
        frozen=True, extra="forbid", alias_generator=to_camel, populate_by_name=True,
        json_schema_extra={"x-kubernetes-validations": [
            {"rule": PATTERN_IFF_REGEX[0], "message": PATTERN_IFF_REGEX[1],
             "fieldPath": ".pattern"}]},
    )  # fmt: skip

    extractor: ExtractorName = Field(
        default="chain", description="How the answer is found in a sample (see above).")
    pattern: str | None = Field(
        default=None, min_length=1, max_length=MAX_PATTERN_CHARS, validate_default=True,
        json_schema_extra={"x-kubernetes-validations": cast(JsonValue, [
            {"rule": rule, "message": message} for rule, message in PATTERN_RULES])},
        description="With extractor regex: a Python regular expression with exactly one "
                    "capture group, the answer, such as 'A:\\s*(\\S+)'.",
    )  # fmt: skip
    equality: EqualityMode = Field(
        default="numeric", description="When two answers are the same vote (see above).")

    @field_validator("pattern")
    @classmethod
    def _usable_pattern(cls, pattern: str | None, info: ValidationInfo) -> str | None:
        if (pattern is not None) != (info.data.get("extractor") == "regex"):
            raise ValueError(PATTERN_IFF_REGEX[1])
        if pattern is None:
            return None
        try:
            groups = re.compile(pattern).groups
        except re.error as exc:
            raise ValueError(f"pattern is not a regular expression: {exc}") from exc
        if groups != 1:
            raise ValueError(f"{PATTERN_RULES[0][1]} (it has {groups})")
        if NESTED_REPEAT.search(pattern):
            raise ValueError(PATTERN_RULES[2][1])
        return pattern

    def extractor_function(self) -> Extractor:
        """The extractor this format names (``regex``: one compiled from ``pattern``)."""
        if self.extractor == "regex" and self.pattern is not None:
            return regex_extractor(self.pattern)
        return get_extractor(self.extractor)


def normalize_answer(answer: str) -> str:
    """One spelling for a LaTeX answer (whitespace-free, no ``$``, units or trailing dot)."""
    text = answer.strip()
    boxed = extract_boxed(text)
    if boxed is not None and text.startswith(("\\boxed", "\\fbox")):
        text = boxed
    text = text.replace("$", "").replace("\n", " ")
    text = _SPACING.sub(" ", text)
    text = text.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
    text = _DEGREES.sub("", text).replace("\\%", "").replace("%", "")
    text = _UNIT_TEXT.sub("", text.strip())
    text = _UNIT_WORD.sub("", text)
    wrapped = _WRAPPER.match(text.strip())
    if wrapped:
        text = wrapped.group(1)
    text = re.sub(r"\s+", "", text).rstrip(".").rstrip("\\")
    text = _LHS.sub("", text) if text.count("=") == 1 else text
    if _THOUSANDS.match(text):
        text = text.replace(",", "")
    text = _SHORT_FRACTION.sub(_expand_fraction, text)
    text = _SHORT_SQRT.sub(r"\\sqrt{\1}", text)
    text = _SHORT_POWER.sub(r"^\1", text)
    text = _DECIMAL.sub(lambda m: _canonical_decimal(m.group(1)), text)
    if text.count("/") == 1 and "\\frac" not in text:
        numerator, denominator = text.split("/")
        if _SIMPLE_SIDE.match(numerator) and _SIMPLE_SIDE.match(denominator):
            text = f"\\frac{{{numerator}}}{{{denominator}}}"
    return text


def numeric_value(answer: str) -> Fraction | None:
    """The exact value of a plain numeric answer (integer, decimal, fraction), else ``None``."""
    text = normalize_answer(answer)  # normalisation writes a/b as \frac{a}{b}
    fraction = _FRACTION_VALUE.match(text)
    if fraction is None:
        return Fraction(Decimal(text)) if _PLAIN_NUMBER.fullmatch(text) else None
    sign, numerator, denominator = fraction.groups()
    if Decimal(denominator) == 0:
        return None
    value = Fraction(Decimal(numerator)) / Fraction(Decimal(denominator))
    return -value if sign else value


def text_key(answer: str) -> str:
    """``answer`` without case, runs of whitespace, surrounding quotes or a final stop."""
    text = answer.translate(_STRAIGHT_QUOTES).casefold()
    text = " ".join(text.split()).strip(_QUOTES + " ").rstrip(".").strip(_QUOTES + " ")
    return text


def answer_key(answer: str, mode: EqualityMode = "numeric") -> str:
    """A key equal for two answers exactly when ``answers_equal`` says they are equal.

    ``exact`` compares the stripped text; ``text`` ignores case, whitespace and quotes
    (``"Paris"`` = ``paris.``); ``latex`` compares the normalised text; ``numeric`` also
    maps plain numbers to their exact value (``0.5`` = ``1/2`` = ``\\frac{1}{2}``), never
    rounding (``0.333`` is not ``1/3``). A date is text, never a fraction.
    """
    if mode == "exact":
        return answer.strip()
    if mode == "text":
        return text_key(answer)
    if mode == "numeric":
        value = numeric_value(answer)
        if value is not None:
            return str(value)
    return normalize_answer(answer)


def answers_equal(a: str, b: str, mode: EqualityMode = "numeric") -> bool:
    """Whether ``a`` and ``b`` are the same answer under ``mode`` (see ``answer_key``)."""
    return answer_key(a, mode) == answer_key(b, mode)


_STRAIGHT_QUOTES = str.maketrans(  # curly and low quotes, and the backtick
    {"\u201c": '"', "\u201d": '"', "\u201e": '"', "\u2018": "'", "\u2019": "'", "`": "'"}
)
_QUOTES = "\"'"


def _expand_fraction(match: re.Match[str]) -> str:
    one, two, first, braced, last = match.groups()
    if one is not None:
        return f"\\frac{{{one}}}{{{two}}}"
    if first is not None:
        return f"\\frac{{{first}}}"
    return f"\\frac{{{braced}}}{{{last}}}"


def _canonical_decimal(token: str) -> str:
    return format(Decimal(token).normalize(), "f")

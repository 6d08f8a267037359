"""Final answers out of completions, and when two answers are the same answer.

Role: the step between a finished sample and ``aggregate`` (which votes over the answers
found here). Extractors are plain functions ``text -> answer | None`` held in a read-only
registry by name; ``None`` means the sample abstains. Normalisation rewrites LaTeX answers
to one spelling so votes over ``\\dfrac{1}{2}``, ``\\frac12`` and ``1/2`` agree.
Pure: no I/O, no clock, no logging.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from decimal import Decimal
from fractions import Fraction
from types import MappingProxyType
from typing import Literal

from .errors import UnknownExtractorError

Extractor = Callable[[str], str | None]
"""Finds the final answer in a completion, or ``None`` when there is none."""

EqualityMode = Literal["exact", "latex", "numeric"]

_BOXED = re.compile(r"\\(?:boxed|fbox)")
_HASH = re.compile(r"####\s*([^\n]+)")
_THE_ANSWER_IS = re.compile(
    r"(?:final answer|the answer)\s*(?:is|:)\s*:?\s*([^\n]+)", re.IGNORECASE
)
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
    """The last number in the text (integer, decimal, ``a/b``, thousands separators)."""
    matches = _NUMBER.findall(text)
    return matches[-1] if matches else None


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
    }
)
"""Extractors by name; ``chain`` is the default."""


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


def answer_key(answer: str, mode: EqualityMode = "numeric") -> str:
    """A key equal for two answers exactly when ``answers_equal`` says they are equal.

    ``exact`` compares the stripped text; ``latex`` the normalised text; ``numeric`` also
    maps plain numbers to their exact value (``0.5`` = ``1/2`` = ``\\frac{1}{2}``), never
    rounding (``0.333`` is not ``1/3``).
    """
    if mode == "exact":
        return answer.strip()
    if mode == "numeric":
        value = numeric_value(answer)
        if value is not None:
            return str(value)
    return normalize_answer(answer)


def answers_equal(a: str, b: str, mode: EqualityMode = "numeric") -> bool:
    """Whether ``a`` and ``b`` are the same answer under ``mode`` (see ``answer_key``)."""
    return answer_key(a, mode) == answer_key(b, mode)


def _expand_fraction(match: re.Match[str]) -> str:
    one, two, first, braced, last = match.groups()
    if one is not None:
        return f"\\frac{{{one}}}{{{two}}}"
    if first is not None:
        return f"\\frac{{{first}}}"
    return f"\\frac{{{braced}}}{{{last}}}"


def _canonical_decimal(token: str) -> str:
    return format(Decimal(token).normalize(), "f")

r"""Math answer verifier: is the last \boxed{} answer of a response equal to the ground truth?

    score_answer(response, ground_truth, timeout=DEFAULT_TIMEOUT_S) -> Verdict(correct, predicted, method, ms)

0. The ground truth must be an answer (`gold_answer`): a string, or a finite number written as
   text by `number_text` (an int, or an integral float up to 2**53, as its digits: 1000.0 ->
   "1000"; another finite float as the decimal, in positional notation, of at most 15 significant
   digits that reads back as the same float, else of its shortest round-trip repr: 1e20 ->
   "100000000000000000000", 1.5e-07 -> "0.00000015"; a Decimal or Fraction exactly). A string
   in a \boxed{} counts by its box's content. A ground truth that is None, NaN or infinite, a
   number of more than MAX_DIGITS digits, a bool, a dict, a list or array or any other type, or
   text that is empty after normalisation (blank, "\boxed{}", "$$", "\text{ }") is no answer:
   every response to it is wrong ("bad_ground_truth"), decided before anything else, so nothing
   (`\boxed{None}`, `\boxed{nan}`, `\boxed{}` included) can earn it. The same holds for the
   text a missing cell becomes when written as a string ("None", "nan", "null", "<NA>", "NaT",
   any case: MISSING_TEXT).
1. Extract the content of the last `\boxed{...}` (or `\fbox{...}`, or `\boxed x`) with brace
   matching; no box, or unbalanced braces, is wrong ("no_box"). A box that is empty after
   normalisation (`\boxed{}`, `\boxed{ }`, `\boxed{\text{}}`) is wrong whatever the ground truth
   ("empty_box").
2. Normalise both sides (spaces, `\left`/`\right`, `\dfrac`, degree signs, `\text{}` units,
   dollars, trailing dots, `\%`, thousands separators ...). Equal strings are right ("string").
3. Two plain numbers are decided here ("number" or "mismatch"), by this rule:
   - integers and exact fractions (a/b, \frac{a}{b}) are compared exactly: 3628801 != 3628800,
     \frac{1}{3} != \frac{333333}{1000000}; equal values are equal in any form (\frac{6}{4} = 1.5);
   - a tolerance applies only where a decimal is involved, because a decimal is a rounded value.
     A decimal matches another number when they differ by at most 1e-6 of their magnitude
     (6 significant digits, math-verify's float rounding; magnitudes below 1 count as 1) AND by
     at most half a unit in the decimal's last written digit (so 0.333333 = \frac{1}{3}, but
     0.3333 != \frac{1}{3}, and 3628800.5 != 3628801 although they agree to 6 digits). With two
     decimals the coarser one sets the half unit;
   - scientific notation (1e3, 1E3, 1.5e-3, 1e+20, 2\times10^{3}, 2\cdot10^3, 2*10^3, 2×10^3;
     an exponent of at most MAX_EXPONENT = 1000 in size) is read as the plain number it expands
     to, and that number follows the rules above: 1e3 and 1.5e3 are the integers 1000 and 1500
     (exact), 1.5e-3 is the decimal 0.0015 (its last digit, 10^-4, sets its half unit) and 1e-3
     the decimal 0.001.
4. Anything else goes to math-verify (equivalent forms: \frac{\sqrt{2}}{2} = \frac{1}{\sqrt{2}},
   intervals, sets, expressions) in a helper process that is killed when a comparison runs past
   its timeout: sympy can hang on adversarial LaTeX, and math-verify's own signal-based timeout
   only works on a main thread, which verl's reward workers do not offer.

The helper and its timeout: treerpo/reward/client.py (the client) and treerpo/reward/helper.py
(the server).

Outcomes without a verdict are "timeout" (the comparison ran past `timeout`) and
"helper_error" (the helper could not start or died); both count as wrong and neither is cached.
Definite math-verify verdicts are cached per (ground truth, answer). `verifier_stats()` gives
the process's counters (timeouts, helper errors, starts, ...); Verdict.ms is the call's latency.
Nothing here raises on bad input: every failure is a wrong answer.
"""

from __future__ import annotations

import math
import numbers
import re
import time
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from typing import Any, Optional

from treerpo.reward.client import (  # noqa: F401  (re-exported: the verifier's public API)
    DEFAULT_TIMEOUT_S, NoVerdict, _helper, math_verify_equivalent, start_helper, verifier_stats)

MAX_ANSWER_CHARS = 1000  # longer "answers" are not answers; never hand them to sympy
REL_TOL = Fraction(1, 10**6)
MAX_DIGITS = 4300  # a number with more digits (Python's own limit for int <-> str) is no usable answer
MAX_EXPONENT = 1000  # 1e999999999 is not expanded here (it would take gigabytes): math-verify's, with its timeout


@dataclass
class Verdict:
    correct: bool
    predicted: Optional[str]
    method: str  # "bad_ground_truth", "no_box", "empty_box", "string", "number", "math_verify", "mismatch",
    #              "timeout", "helper_error"
    ms: float = 0.0  # wall-clock latency of the score_answer call, milliseconds


# ---- extraction -----------------------------------------------------------------------------
def last_boxed(text: str) -> Optional[str]:
    r"""Content of the last \boxed{...} / \fbox{...} / `\boxed x` in `text`, or None."""
    if not isinstance(text, str):
        return None
    idx = max(text.rfind("\\boxed"), text.rfind("\\fbox"))
    if idx < 0:
        return None
    i = idx + (6 if text.startswith("\\boxed", idx) else 5)
    if i < len(text) and text[i] == " ":  # \boxed 5
        m = re.match(r" ([^\s$]+)", text[i:])
        return m.group(1) if m else None
    if i >= len(text) or text[i] != "{":
        return None
    depth, start = 0, i + 1
    for j in range(i, len(text)):
        c = text[j]
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return text[start:j]
    return None  # unbalanced


def gsm8k_answer(solution: str) -> Optional[str]:
    """The number after GSM8K's '####' marker."""
    m = re.search(r"####\s*([^\n]+)", solution or "")
    return m.group(1).strip().replace(",", "") if m else None


# ---- the ground truth ------------------------------------------------------------------------------
def number_text(x: Any, strict: bool = False) -> Optional[str]:
    """A finite number as the text of its value (see the module docstring, step 0); None for a
    non-number (bool included), NaN, an infinity, or more than MAX_DIGITS digits. `strict`: also None for a float that is not an
    integer up to 2**53 and not a decimal of at most 15 significant digits (0.1 + 0.2, 1/3: binary
    rounding noise, or more digits than a double keeps), instead of its shortest repr."""
    if isinstance(x, bool) or type(x).__name__ == "bool_":  # numpy's bool is no Integral, but say so
        return None
    try:
        if isinstance(x, numbers.Integral):
            return str(int(x))
        if isinstance(x, Fraction):
            return str(x)
    except ValueError:  # more digits than Python writes (4300): no answer anyone could match
        return None
    if isinstance(x, Decimal):
        return format(x, "f") if x.is_finite() and abs(x.adjusted()) <= MAX_DIGITS else None
    if not isinstance(x, numbers.Real):
        return None
    if getattr(getattr(x, "dtype", None), "itemsize", 8) < 8:  # numpy float16/32: their own shortest repr
        x = float(str(x))
    x = float(x)
    if not math.isfinite(x):
        return None
    if x.is_integer() and abs(x) <= 2**53:
        return str(int(x))
    text = f"{x:.15g}"
    if float(text) != x:
        if strict:
            return None
        text = repr(x)
    return format(Decimal(text), "f")


# What writing a missing cell as text gives (str(None), pandas' "nan", JSON's null): such a ground
# truth is a lost value, not an answer a policy should be paid for writing.
MISSING_TEXT = frozenset({"none", "nan", "null", "<na>", "nat"})


def gold_answer(ground_truth: Any) -> Optional[str]:
    r"""The answer a ground truth gives (a \boxed{} string counts by its content), or None where it
    gives none: see the module docstring, step 0."""
    if isinstance(ground_truth, str):
        text = ground_truth
    else:
        text = number_text(ground_truth)
        if text is None:
            return None
    boxed = last_boxed(text)
    gold = boxed if boxed is not None else text
    norm = normalize(gold)
    return gold if norm and norm.lower() not in MISSING_TEXT else None


# ---- normalisation ----------------------------------------------------------------------------
_TEXT_UNITS = re.compile(r"\\(?:text|textbf|mathrm|mbox)\{\s*([^{}]*)\}")
_UNIT_WORDS = (
    "degrees", "degree", "units", "unit", "cm", "meters", "meter", "inches", "inch", "feet", "foot",
    "dollars", "dollar", "cents", "cent", "hours", "hour", "minutes", "minute", "seconds", "second",
    "sq", "square", "km", "mph", "mm", "m", "kg", "g",
)


def normalize(ans: str) -> str:
    s = str(ans).strip()
    s = s.replace("\n", "").replace("\\!", "").replace("\\,", "").replace("\\;", "").replace("\\ ", "")
    s = s.replace("\\left", "").replace("\\right", "").replace("\\displaystyle", "")
    s = s.replace("dfrac", "frac").replace("tfrac", "frac")
    s = s.replace("^{\\circ}", "").replace("^\\circ", "").replace("°", "").replace("\\circ", "")
    s = s.replace("\\$", "").replace("$", "").replace("\\%", "").replace("%", "")
    s = _TEXT_UNITS.sub(lambda m: m.group(1), s)
    s = s.strip()
    for w in _UNIT_WORDS:  # a trailing unit word after a number: "5 cm" -> "5"
        s = re.sub(rf"(?<=[\d}}])\s*{w}$", "", s)
    s = s.replace(" ", "")
    s = re.sub(r"(?<=\d),(?=\d{3}(?!\d))", "", s)  # 1,000 -> 1000
    s = s.rstrip(".")
    if s.startswith("x=") or s.startswith("y=") or s.startswith("k="):  # "x=5" -> "5"
        s = s[2:]
    s = re.sub(r"\\frac(\d)(\d)", r"\\frac{\1}{\2}", s)  # \frac12 -> \frac{1}{2}
    s = re.sub(r"^0\.", ".", s) if re.fullmatch(r"0\.\d+", s) else s
    if re.fullmatch(r"-?\d+\.0+", s):
        s = s.split(".")[0]
    return s.lower() if re.fullmatch(r"[A-Za-z ]+", s) else s


# ---- plain numbers -------------------------------------------------------------------------------
_NUM = re.compile(r"-?\d+(?:\.\d+)?|-?\.\d+")
_SCI = re.compile(r"(-?)(\d+(?:\.\d+)?|\.\d+)"
                  r"(?:[eE]([+-]?\d+)|(?:\\times|\\cdot|\*|×)10\^(?:\{([+-]?\d+)\}|(\d)))")
_FRAC = re.compile(r"(-?)\\frac\{(-?\d+)\}\{(-?\d+)\}")
_SLASH = re.compile(r"(-?\d+)/(-?\d+)")


@dataclass(frozen=True)
class Number:
    """A plain number: its exact value, and for a decimal the count of digits after the point
    (None for integers and fractions, which are exact)."""

    value: Fraction
    places: Optional[int] = None


def as_number(s: str) -> Optional[Number]:
    """A normalised answer that is a plain number (int, decimal, a/b, \\frac{a}{b}, scientific
    notation), else None."""
    try:
        if _NUM.fullmatch(s):
            places = len(s.split(".")[1]) if "." in s else None
            return Number(Fraction(s), places)
        m = _SCI.fullmatch(s)
        if m:  # the plain number it expands to: 1.5e-3 is the decimal 0.0015, 1.5e3 the integer 1500
            exponent = int(m.group(3) or m.group(4) or m.group(5))
            if abs(exponent) > MAX_EXPONENT:
                return None
            mantissa = m.group(2)
            places = (len(mantissa.split(".")[1]) if "." in mantissa else 0) - exponent
            value = Fraction(mantissa) * Fraction(10) ** exponent
            return Number(-value if m.group(1) else value, places if places > 0 else None)
        m = _FRAC.fullmatch(s)
        if m:
            v = Fraction(int(m.group(2)), int(m.group(3)))
            return Number(-v if m.group(1) else v)
        m = _SLASH.fullmatch(s)
        if m:
            return Number(Fraction(int(m.group(1)), int(m.group(2))))
    except (ValueError, ZeroDivisionError):
        return None
    return None


def numbers_equal(a: Number, b: Number) -> bool:
    """Exact for integers and fractions; with a decimal, the tolerance of the module docstring:
    within 6 significant digits and within half a unit of the (coarser) decimal's last digit."""
    if a.value == b.value:
        return True
    decimal_places = [n.places for n in (a, b) if n.places is not None]
    if not decimal_places:
        return False
    half_unit = Fraction(1, 2 * 10 ** min(decimal_places))
    relative = REL_TOL * max(1, abs(a.value), abs(b.value))
    return abs(a.value - b.value) <= min(half_unit, relative)


# ---- the verdict -------------------------------------------------------------------------------------
def score_answer(response: str, ground_truth: Any, timeout: Optional[float] = DEFAULT_TIMEOUT_S,
                 use_math_verify: bool = True) -> Verdict:
    """The verdict on `response`'s last boxed answer. `timeout`: CPU seconds one math-verify
    comparison may use (None: no limit), helper start-up excluded; see the module docstring."""
    t0 = time.perf_counter()
    verdict = _decide(response, ground_truth, timeout, use_math_verify)
    verdict.ms = (time.perf_counter() - t0) * 1000.0
    return verdict


def _decide(response, ground_truth, timeout: Optional[float], use_math_verify: bool) -> Verdict:
    pred = last_boxed(response) if isinstance(response, str) else None
    gold = gold_answer(ground_truth)
    if gold is None:
        return Verdict(False, None if pred is None else pred[:MAX_ANSWER_CHARS], "bad_ground_truth")
    if pred is None:
        return Verdict(False, None, "no_box")
    if len(pred) > MAX_ANSWER_CHARS or len(gold) > MAX_ANSWER_CHARS:
        return Verdict(False, pred[:MAX_ANSWER_CHARS], "mismatch")
    norm_pred, norm_gold = normalize(pred), normalize(gold)
    if not norm_pred:
        return Verdict(False, pred, "empty_box")
    if norm_pred == norm_gold:
        return Verdict(True, pred, "string")
    num_pred, num_gold = as_number(norm_pred), as_number(norm_gold)
    if num_pred is not None and num_gold is not None:  # plain numbers: decided without sympy
        ok = numbers_equal(num_pred, num_gold)
        return Verdict(ok, pred, "number" if ok else "mismatch")
    if not use_math_verify:
        return Verdict(False, pred, "mismatch")
    try:
        ok = math_verify_equivalent(gold, pred, timeout)
    except NoVerdict as e:
        return Verdict(False, pred, e.reason)
    return Verdict(ok, pred, "math_verify" if ok else "mismatch")

r"""Math answer verifier: is the last \boxed{} answer of a response equal to the ground truth?

    score_answer(response, ground_truth) -> Verdict(correct, predicted, method)

1. Extract the content of the last `\boxed{...}` (or `\fbox{...}`, or `\boxed x`) with brace
   matching; no box, or unbalanced braces, is wrong.
2. Normalise both sides (spaces, `\left`/`\right`, `\dfrac`, degree signs, `\text{}` units,
   dollars, trailing dots, `\%`, thousands separators ...). Equal strings are right; two plain
   numbers (integers, decimals, a/b, \frac{a}{b}) are compared exactly, to 6 significant digits.
3. Otherwise ask math-verify (equivalent forms: 1/2 = 0.5 = \frac{1}{2}, intervals, sets ...)
   in a helper process with a hard wall-clock timeout: sympy can hang on adversarial LaTeX and
   math-verify's own signal-based timeout only works on a main thread, which verl's reward
   workers do not offer. A call that times out kills the helper (a fresh one starts on the next
   call) and counts as wrong. Each scoring process has its own helper, so the timeout holds
   when scoring runs in many processes.
Nothing here raises on bad input: every failure is a wrong answer.
"""

from __future__ import annotations

import multiprocessing as mp
import re
import threading
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache
from typing import Optional

MAX_ANSWER_CHARS = 1000  # longer "answers" are not answers; never hand them to sympy
DEFAULT_TIMEOUT_S = 3.0


@dataclass
class Verdict:
    correct: bool
    predicted: Optional[str]
    method: str  # "no_box", "string", "number", "math_verify", "timeout", "mismatch"


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


_NUM = re.compile(r"-?\d+(?:\.\d+)?|-?\.\d+")
_FRAC = re.compile(r"(-?)\\frac\{(-?\d+)\}\{(-?\d+)\}")
_SLASH = re.compile(r"(-?\d+)/(-?\d+)")


def as_number(s: str) -> Optional[Fraction]:
    """A normalised answer that is a plain number (int, decimal, a/b, \\frac{a}{b}), else None."""
    try:
        if _NUM.fullmatch(s):
            return Fraction(s)
        m = _FRAC.fullmatch(s)
        if m:
            v = Fraction(int(m.group(2)), int(m.group(3)))
            return -v if m.group(1) else v
        m = _SLASH.fullmatch(s)
        if m:
            return Fraction(int(m.group(1)), int(m.group(2)))
    except (ValueError, ZeroDivisionError):
        return None
    return None


def numbers_equal(a: Fraction, b: Fraction) -> bool:
    """Equal, or equal to 6 significant decimals (math-verify's default float rounding)."""
    return a == b or abs(a - b) <= Fraction(1, 10**6) * max(1, abs(a), abs(b))


# ---- math-verify in a killable helper process -----------------------------------------------------
def _helper_main(conn) -> None:  # runs in the helper process
    from math_verify import parse, verify

    while True:
        try:
            gold, pred = conn.recv()
        except EOFError:
            return
        try:
            g = parse(f"${gold}$")
            p = parse(f"${pred}$")
            ok = bool(g) and bool(p) and bool(verify(g, p))
        except Exception:
            ok = False
        conn.send(ok)


class _Helper:
    def __init__(self):
        self.lock = threading.Lock()
        self.proc = None
        self.conn = None

    def _start(self):
        ctx = mp.get_context("spawn")  # safe in threaded processes (Ray actors)
        parent, child = ctx.Pipe()
        self.proc = ctx.Process(target=_helper_main, args=(child,), daemon=True)
        self.proc.start()
        child.close()
        self.conn = parent

    def _kill(self):
        if self.proc is not None:
            self.proc.kill()
            self.proc.join(timeout=1)
        self.proc = self.conn = None

    def equivalent(self, gold: str, pred: str, timeout: float) -> Optional[bool]:
        """True/False, or None on timeout (the helper is killed and restarted next time)."""
        with self.lock:
            if self.proc is None or not self.proc.is_alive():
                self._start()
            try:
                self.conn.send((gold, pred))
                if self.conn.poll(timeout):
                    return bool(self.conn.recv())
            except (EOFError, OSError, BrokenPipeError):
                pass
            self._kill()
            return None


_helper = _Helper()


@lru_cache(maxsize=65536)
def _equivalent_cached(gold: str, pred: str, timeout: float) -> Optional[bool]:
    return _helper.equivalent(gold, pred, timeout)


# ---- the verdict -------------------------------------------------------------------------------------
def score_answer(response: str, ground_truth: str, timeout: float = DEFAULT_TIMEOUT_S,
                 use_math_verify: bool = True) -> Verdict:
    pred = last_boxed(response) if isinstance(response, str) else None
    if pred is None:
        return Verdict(False, None, "no_box")
    gold = last_boxed(ground_truth) or str(ground_truth)
    if len(pred) > MAX_ANSWER_CHARS or len(gold) > MAX_ANSWER_CHARS:
        return Verdict(False, pred[:MAX_ANSWER_CHARS], "mismatch")
    norm_pred, norm_gold = normalize(pred), normalize(gold)
    if norm_pred == norm_gold:
        return Verdict(True, pred, "string")
    num_pred, num_gold = as_number(norm_pred), as_number(norm_gold)
    if num_pred is not None and num_gold is not None:  # plain numbers: decided without sympy
        ok = numbers_equal(num_pred, num_gold)
        return Verdict(ok, pred, "number" if ok else "mismatch")
    if not use_math_verify:
        return Verdict(False, pred, "mismatch")
    ok = _equivalent_cached(gold, pred, timeout)
    if ok is None:
        return Verdict(False, pred, "timeout")
    return Verdict(ok, pred, "math_verify" if ok else "mismatch")

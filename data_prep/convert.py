"""Rows of a source dataset -> verl's RLHFDataset parquet rows, with every skip counted.

    {"data_source": "math500",
     "prompt": [{"role": "system", "content": <instruction>}, {"role": "user", "content": <question>}],
     "ability": "math",
     "reward_model": {"style": "rule", "ground_truth": "<answer>"},
     "extra_info": {"split": "test", "index": 0, "question": ..., "level": ..., "subject": ..., "id": ...},
     "agent_name": "single_turn_agent"}          # evaluation rows only: validation is sampled flat

Skip reasons, checked in this order (a row counts once, under the first that applies):
  missing_question       no question text
  bad_text               the question, subject or id holds text that is not valid Unicode (a lone
                         surrogate such as a JSON "\\ud800" escape), which parquet cannot store
  too_long               question over `max_question_chars`
  bad_answer_type:<type> the answer cell (or, where the ground truth comes from a solution, the
                         solution cell) is neither text nor a number: a bool, a dict (a JSON object,
                         a parquet struct), a list nested in a list, bytes, ... (<type> names it)
  non_finite_answer      the answer is an infinite number (NaN is a missing answer)
  float_answer           the answer is a float that is not an integer up to 2**53 and not a decimal
                         of at most 15 significant digits (0.1 + 0.2 = 0.30000000000000004, 1/3):
                         binary rounding noise, whose intended decimal cannot be known
  missing_answer         no ground truth found: a null, NaN or empty answer cell and no usable
                         solution
  bad_text               the ground truth is not valid Unicode (as above)
  too_long               ground truth over `max_answer_chars` (also a number with more digits than
                         the verifier writes, MAX_DIGITS)
  level_filtered         level not in `levels`
  conflicting_duplicate  the same normalised question more than once in the set with ground truths
                         that differ (compared as the verifier does without math-verify: equal
                         after its normalisation, or equal plain numbers): every row of that
                         question is skipped, the first included, since which answer is right is
                         unknown
  duplicate              the same normalised question earlier in the set, with the same answer
  contaminated:<set>     training question also in an evaluation set: same normalised text, or a
                         shared 13-word span

Answer cells are turned into text deliberately (`answer_value`): text is stripped; an int (or
integral float up to 2**53) becomes its digits, 17.0 -> "17"; another float becomes the decimal of
at most 15 significant digits that reads back as that same float, in positional notation
(0.1 -> "0.1", 1e20 -> "100000000000000000000", 1.5e-07 -> "0.00000015"), else it is skipped as
float_answer; a Decimal is written exactly; a list (OlympiadBench's final answers) has each of its
elements converted by these rules and joined with ", ".
"""

from __future__ import annotations

import math
import numbers
import re
from collections import Counter
from decimal import Decimal
from typing import Any, Iterable, Optional

import numpy as np
from tqdm import tqdm

from data_prep.sources import DEFAULT_INSTRUCTION, Source
from treerpo.reward.verifier import (MAX_ANSWER_CHARS, as_number, gsm8k_answer, last_boxed, normalize,
                                     number_text, numbers_equal)

NGRAM = 13
# Far beyond any question of the MATH family (the longest are a few thousand characters); the
# limit only keeps a pathological cell from costing minutes and gigabytes in the 13-gram check.
MAX_QUESTION_CHARS = 20_000
# The default limit on ground truths is the verifier's MAX_ANSWER_CHARS: it scores any longer
# answer as wrong, so a row with a longer ground truth could never be earned.


def norm_question(q: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"[^0-9a-z\\]+", " ", q.lower())).strip()


def ngrams(q: str, n: int = NGRAM) -> set:
    words = norm_question(q).split()
    return {" ".join(words[i : i + n]) for i in range(len(words) - n + 1)}


def is_missing(value: Any) -> bool:
    """A null cell: None, NaN (pandas/JSON), pd.NA, or blank text."""
    if value is None:
        return True
    if isinstance(value, float):
        return math.isnan(value)
    if isinstance(value, str):
        return not value.strip()
    if isinstance(value, (list, tuple, np.ndarray)):
        return all(is_missing(v) for v in value)
    try:
        return bool(value != value)  # pd.NA, NaT, numpy NaN scalars
    except (TypeError, ValueError):
        return False


def is_text(value: Any) -> bool:
    """Whether `value` (a string, or a list or dict of them) can be written as UTF-8: no lone surrogate."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return False
        return True
    if isinstance(value, dict):
        return all(is_text(v) for v in value.values())
    if isinstance(value, (list, tuple, np.ndarray)):
        return all(is_text(v) for v in value)
    return True


def type_name(value: Any) -> str:
    return "bool" if type(value).__name__ == "bool_" else type(value).__name__


def scalar_answer(value: Any) -> tuple[Optional[str], Optional[str]]:
    """(text, None), or (None, skip reason) for a non-null cell that is no answer; see the module docstring."""
    if isinstance(value, str):
        return value.strip(), None
    if isinstance(value, numbers.Number) and type_name(value) != "bool":
        text = number_text(value, strict=True)
        if text is not None:
            return text, None
        if isinstance(value, (numbers.Integral, Decimal)):  # an infinite Decimal, or thousands of digits
            return None, "too_long" if isinstance(value, numbers.Integral) or value.is_finite() else "non_finite_answer"
        if isinstance(value, numbers.Real):
            return None, "non_finite_answer" if not math.isfinite(float(value)) else "float_answer"
    return None, f"bad_answer_type:{type_name(value)}"


def answer_value(value: Any) -> tuple[Optional[str], Optional[str]]:
    """An answer cell as (text, None); (None, None) when it is null; (None, reason) when it is no
    answer (bad_answer_type:<type>, non_finite_answer, float_answer). OlympiadBench keeps final
    answers as a list: its elements are converted one by one and joined with ", "."""
    if is_missing(value):
        return None, None
    if isinstance(value, (list, tuple, np.ndarray)):
        parts = []
        for v in value:
            if is_missing(v):
                continue
            if isinstance(v, (list, tuple, np.ndarray, dict)):
                return None, f"bad_answer_type:{type_name(v)}"
            text, reason = scalar_answer(v)
            if reason:
                return None, reason
            parts.append(text)
        return (parts[0] if len(parts) == 1 else ", ".join(parts)), None
    return scalar_answer(value)


def ground_truth(row: dict, src: Source, cols: dict) -> tuple[Optional[str], Optional[str]]:
    """(the row's ground truth, None), or (None, skip reason): missing_answer where none is found,
    or the reason an answer or solution cell is no answer (`answer_value`)."""
    if src.truth == "answer" and cols.get("answer") in row:
        value, reason = answer_value(row[cols["answer"]])
        if reason:
            return None, reason
        if value:
            boxed = last_boxed(value)
            return (boxed if boxed is not None else value.strip("$ ")), None
    solution = row.get(cols.get("solution", ""), None)
    if is_missing(solution):
        return None, "missing_answer"
    if not isinstance(solution, str):
        return None, f"bad_answer_type:{type_name(solution)}"
    truth = gsm8k_answer(solution) if src.truth == "gsm8k" else last_boxed(solution)
    return (truth, None) if truth else (None, "missing_answer")


def same_answer(a: str, b: str) -> bool:
    """Whether two ground truths agree as the verifier compares them without math-verify: the
    same after its normalisation, or plain numbers that it calls equal."""
    na, nb = normalize(a), normalize(b)
    if na == nb:
        return True
    x, y = as_number(na), as_number(nb)
    return x is not None and y is not None and numbers_equal(x, y)


def level_of(row: dict, cols: dict) -> Optional[int]:
    raw = row.get(cols.get("level", ""), None)
    if is_missing(raw):
        return None
    m = re.search(r"\d+", str(raw))
    return int(m.group()) if m else None


def build_prompt(question: str, instruction: str, instruction_role: str) -> list[dict]:
    if instruction_role == "system":
        return [{"role": "system", "content": instruction}, {"role": "user", "content": question}]
    return [{"role": "user", "content": f"{question}\n{instruction}"}]


def columns_of(src: Source, overrides: Optional[dict] = None) -> dict:
    """Role -> column for `src`, with `--map` overrides applied."""
    return {**src.columns, **(overrides or {})}


def convert(
    rows: Iterable[dict],
    src: Source,
    split: str,
    columns: Optional[dict] = None,
    levels: Optional[set[int]] = None,
    instruction: str = DEFAULT_INSTRUCTION,
    instruction_role: str = "system",
    exclude: Optional[dict[str, tuple[set, set]]] = None,
    total: Optional[int] = None,
    max_question_chars: int = MAX_QUESTION_CHARS,
    max_answer_chars: int = MAX_ANSWER_CHARS,
) -> tuple[list[dict], Counter]:
    """Convert rows; returns (verl rows, skip counts). `exclude`: eval name -> (questions, 13-grams)."""
    cols = columns_of(src, columns)
    out: list[dict] = []
    skipped: Counter = Counter()
    # pass 1: the per-row checks; rows that pass them are candidates, grouped by normalised question
    candidates: list[tuple[int, str, str, Optional[int], dict, str]] = []
    first_truth: dict[str, str] = {}  # normalised question -> its first candidate's ground truth
    conflicting: set[str] = set()  # normalised questions with ground truths that differ
    bar = tqdm(rows, total=total, desc=f"{src.name}:{split}", unit="row", leave=False, disable=None)  # no bar off a tty
    for i, row in enumerate(bar):
        question = row.get(cols["question"])
        if not isinstance(question, str) or not question.strip():
            skipped["missing_question"] += 1
            continue
        labels = {role: str(row[cols[role]]) for role in ("subject", "id")
                  if cols.get(role) in row and not is_missing(row[cols[role]])}
        if not is_text(question) or not all(map(is_text, labels.values())):
            skipped["bad_text"] += 1
            continue
        if len(question) > max_question_chars:
            skipped["too_long"] += 1
            continue
        truth, reason = ground_truth(row, src, cols)
        if reason:
            skipped[reason] += 1
            continue
        if not is_text(truth):
            skipped["bad_text"] += 1
            continue
        if len(truth) > max_answer_chars:
            skipped["too_long"] += 1
            continue
        level = level_of(row, cols)
        if levels is not None and level not in levels:
            skipped["level_filtered"] += 1
            continue
        key = norm_question(question)
        if key not in first_truth:
            first_truth[key] = truth
        elif not same_answer(first_truth[key], truth):
            conflicting.add(key)
        candidates.append((i, question, truth, level, labels, key))
    # pass 2: one row per question (none where its answers conflict), then the contamination check
    seen: set[str] = set()
    for i, question, truth, level, labels, key in candidates:
        if key in conflicting:
            skipped["conflicting_duplicate"] += 1
            continue
        if key in seen:
            skipped["duplicate"] += 1
            continue
        seen.add(key)
        if exclude:
            grams = ngrams(question)
            hit = next((name for name, (qs, gs) in exclude.items() if key in qs or grams & gs), None)
            if hit:
                skipped[f"contaminated:{hit}"] += 1
                continue
        extra: dict[str, Any] = {"split": split, "index": len(out), "source_index": i, "question": question}
        if level is not None:
            extra["level"] = level
        extra.update(labels)
        record = {
            "data_source": src.name,
            "prompt": build_prompt(question.strip(), instruction, instruction_role),
            "ability": "math",
            "reward_model": {"style": "rule", "ground_truth": truth},
            "extra_info": extra,
        }
        if src.role == "eval":
            record["agent_name"] = "single_turn_agent"
        out.append(record)
    return out, skipped

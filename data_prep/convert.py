"""Rows of a source dataset -> verl's RLHFDataset parquet rows, with every skip counted.

    {"data_source": "math500",
     "prompt": [{"role": "system", "content": <instruction>}, {"role": "user", "content": <question>}],
     "ability": "math",
     "reward_model": {"style": "rule", "ground_truth": "<answer>"},
     "extra_info": {"split": "test", "index": 0, "question": ..., "level": ..., "subject": ..., "id": ...},
     "agent_name": "single_turn_agent"}          # evaluation rows only: validation is sampled flat

Skip reasons, checked in this order (a row counts once, under the first that applies):
missing_question (no question text), too_long (question over `max_question_chars`),
missing_answer (no ground truth found: a null, NaN or empty answer cell and no usable solution),
too_long (ground truth over `max_answer_chars`), level_filtered, duplicate (same normalised
question earlier in the set), contaminated:<set> (training question also in an evaluation set:
same normalised text, or a shared 13-word span).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from typing import Any, Iterable, Optional

import numpy as np
from tqdm import tqdm

from data_prep.sources import DEFAULT_INSTRUCTION, Source
from treerpo.reward.verifier import MAX_ANSWER_CHARS, gsm8k_answer, last_boxed

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


def answer_text(value: Any) -> Optional[str]:
    """An answer cell as text; None when it is null. OlympiadBench keeps final answers as a list."""
    if is_missing(value):
        return None
    if isinstance(value, (list, tuple, np.ndarray)):
        parts = [str(v).strip() for v in value if not is_missing(v)]
        return parts[0] if len(parts) == 1 else ", ".join(parts)
    return str(value).strip()


def ground_truth(row: dict, src: Source, cols: dict) -> Optional[str]:
    if src.truth == "answer" and cols.get("answer") in row:
        value = answer_text(row[cols["answer"]])
        if value:
            boxed = last_boxed(value)
            return boxed if boxed is not None else value.strip("$ ")
    solution = row.get(cols.get("solution", ""), None)
    if is_missing(solution) or not isinstance(solution, str):
        return None
    return gsm8k_answer(solution) if src.truth == "gsm8k" else last_boxed(solution)


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
    seen: set[str] = set()
    bar = tqdm(rows, total=total, desc=f"{src.name}:{split}", unit="row", leave=False, disable=None)  # no bar off a tty
    for i, row in enumerate(bar):
        question = row.get(cols["question"])
        if not isinstance(question, str) or not question.strip():
            skipped["missing_question"] += 1
            continue
        if len(question) > max_question_chars:
            skipped["too_long"] += 1
            continue
        truth = ground_truth(row, src, cols)
        if not truth:
            skipped["missing_answer"] += 1
            continue
        if len(truth) > max_answer_chars:
            skipped["too_long"] += 1
            continue
        level = level_of(row, cols)
        if levels is not None and level not in levels:
            skipped["level_filtered"] += 1
            continue
        key = norm_question(question)
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
        for role in ("subject", "id"):
            if cols.get(role) in row and not is_missing(row[cols[role]]):
                extra[role] = str(row[cols[role]])
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

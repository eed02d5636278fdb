"""Rows of a source dataset -> verl's RLHFDataset parquet rows, with every skip counted.

    {"data_source": "math500",
     "prompt": [{"role": "system", "content": <instruction>}, {"role": "user", "content": <question>}],
     "ability": "math",
     "reward_model": {"style": "rule", "ground_truth": "<answer>"},
     "extra_info": {"split": "test", "index": 0, "question": ..., "level": ..., "subject": ..., "id": ...},
     "agent_name": "single_turn_agent"}          # evaluation rows only: validation is sampled flat

Skip reasons: missing_question, missing_answer (no ground truth found), level_filtered,
duplicate (same normalised question earlier in the set), contaminated (training question also
in an evaluation set: same normalised text, or a shared 13-word span).
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any, Iterable, Optional

from tqdm import tqdm

from data_prep.sources import DEFAULT_INSTRUCTION, Source
from treerpo.verifier import gsm8k_answer, last_boxed

NGRAM = 13


def norm_question(q: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"[^0-9a-z\\]+", " ", q.lower())).strip()


def ngrams(q: str, n: int = NGRAM) -> set:
    words = norm_question(q).split()
    return {" ".join(words[i : i + n]) for i in range(len(words) - n + 1)}


def ground_truth(row: dict, src: Source, cols: dict) -> Optional[str]:
    if src.truth == "answer" and cols.get("answer") in row:
        value = row[cols["answer"]]
        if isinstance(value, (list, tuple)):  # OlympiadBench keeps final answers as a list
            value = value[0] if len(value) == 1 else ", ".join(str(v) for v in value)
        value = None if value is None else str(value).strip()
        if value:
            boxed = last_boxed(value)
            return boxed if boxed is not None else value.strip("$ ")
    solution = row.get(cols.get("solution", ""), None)
    if not solution:
        return None
    return gsm8k_answer(solution) if src.truth == "gsm8k" else last_boxed(solution)


def level_of(row: dict, cols: dict) -> Optional[int]:
    raw = row.get(cols.get("level", ""), None)
    if raw is None:
        return None
    m = re.search(r"\d+", str(raw))
    return int(m.group()) if m else None


def build_prompt(question: str, instruction: str, instruction_role: str) -> list[dict]:
    if instruction_role == "system":
        return [{"role": "system", "content": instruction}, {"role": "user", "content": question}]
    return [{"role": "user", "content": f"{question}\n{instruction}"}]


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
) -> tuple[list[dict], Counter]:
    """Convert rows; returns (verl rows, skip counts). `exclude`: eval name -> (questions, 13-grams)."""
    cols = {**src.columns, **(columns or {})}
    out: list[dict] = []
    skipped: Counter = Counter()
    seen: set[str] = set()
    for i, row in enumerate(tqdm(rows, total=total, desc=f"{src.name}:{split}", unit="row", leave=False)):
        question = row.get(cols["question"])
        if not isinstance(question, str) or not question.strip():
            skipped["missing_question"] += 1
            continue
        truth = ground_truth(row, src, cols)
        if not truth:
            skipped["missing_answer"] += 1
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
        if cols.get("subject") in row:
            extra["subject"] = str(row[cols["subject"]])
        if cols.get("id") in row:
            extra["id"] = str(row[cols["id"]])
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

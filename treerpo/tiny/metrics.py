"""Reading a run's metrics: verl's file logger (`VERL_FILE_LOGGER_PATH`), one JSON line per step.

Besides the raw rows: each validation's accuracy per set, and the cumulative compute a run had
spent when it validated (generated tokens, training seconds), the axes of the equal-compute
comparison (treerpo/tiny/report.py).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

from treerpo.tiny.task import DATA_SOURCE


def read_metrics(path: Path) -> list[dict]:
    """verl's file logger lines: {"step": k, "data": {...}}, several lines per step merged."""
    if not path.exists():
        return []
    steps: dict[int, dict] = {}
    for line in path.read_text().splitlines():
        if line.strip():
            rec = json.loads(line)
            steps.setdefault(int(rec["step"]), {}).update(rec["data"])
    return [{"step": k, **v} for k, v in sorted(steps.items())]


def read_run_metrics(out: Path) -> list[dict]:
    """All of a run's metrics: earlier parts kept by --resume, then the current metrics.jsonl."""
    parts = sorted(out.glob("metrics.*.jsonl")) + [out / "metrics.jsonl"]
    steps: dict[int, dict] = {}
    for part in parts:
        for row in read_metrics(part):
            steps.setdefault(row["step"], {}).update(row)
    return [steps[k] for k in sorted(steps)]


def val_key(rows: list[dict], metric: str = "acc") -> Optional[str]:
    """verl's validation key for the held-out accuracy, e.g. `val-core/arith/acc/mean@4`."""
    for r in rows:
        for k in r:
            if k.startswith(f"val-core/{DATA_SOURCE}/{metric}/mean@"):
                return k
    return None


def val_keys(rows: list[dict], metric: str = "acc") -> dict[str, str]:
    """{validation set (verl's data_source): its key}, e.g. {"chain3": "val-core/chain3/acc/mean@1"}."""
    out: dict[str, str] = {}
    for r in rows:
        for k in r:
            parts = k.split("/")
            if len(parts) == 4 and parts[0] == "val-core" and parts[2] == metric and parts[3].startswith("mean@"):
                out.setdefault(parts[1], k)
    return dict(sorted(out.items()))


def val_curve(rows: list[dict]) -> list[tuple[int, float]]:
    """(step, held-out accuracy) at each validation: the one set's, or the mean over the sets."""
    keys = val_keys(rows)
    return [(r["step"], sum(r[k] for k in keys.values()) / len(keys)) for r in rows
            if keys and all(k in r for k in keys.values())]


def step_tokens(row: dict, rows_per_step: int) -> float:
    """Tokens the rollout decoded in this step: `tree/generated_tokens` for tree runs (each shared
    segment once); for flat sampling every row's response, `response_length/mean` x rows."""
    if "tree/generated_tokens" in row:
        return float(row["tree/generated_tokens"])
    if "response_length/mean" not in row:
        raise ValueError(f"step {row['step']} has neither tree/generated_tokens nor response_length/mean: "
                         "its generated tokens are unknown")
    return float(row["response_length/mean"]) * rows_per_step


def validations(rows: list[dict], rows_per_step: int) -> list[dict]:
    """Per validation: step, accuracy per set and their mean, and what the run had spent by then:
    cumulative generated tokens and training seconds over the steps up to and including it. A
    step's seconds are verl's `timing_s/step` less its `timing_s/save_checkpoint` (verl saves
    inside the step timer; start-up and validation are outside it)."""
    keys = val_keys(rows)
    tokens = seconds = 0.0
    out = []
    for r in rows:
        if "critic/score/mean" in r:  # a training step
            tokens += step_tokens(r, rows_per_step)
            seconds += float(r.get("timing_s/step", 0.0)) - float(r.get("timing_s/save_checkpoint", 0.0))
        if keys and all(k in r for k in keys.values()):
            acc = {name: float(r[k]) for name, k in keys.items()}
            out.append({"step": r["step"], "acc": acc, "mean": sum(acc.values()) / len(acc),
                        "tokens": tokens, "seconds": round(seconds, 2)})
    return out

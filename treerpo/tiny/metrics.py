"""Reading a run's metrics: verl's file logger (`VERL_FILE_LOGGER_PATH`), one JSON line per step."""

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

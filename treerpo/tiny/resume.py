"""`treerpo train --resume`: continue a run from its last usable checkpoint, losing and repeating nothing.

verl saves a checkpoint inside a step, before that step's validation and metrics are logged
(verl/trainer/ppo/v1/trainer_base.py:480-514), and writes `latest_checkpointed_iteration.txt`
only once the checkpoint folder is complete (:1021). A run killed at any moment therefore leaves:

    checkpoints   complete ones (the tracker names the newest), maybe one half-written folder
    metrics       steps up to the kill; the newest checkpoint's step may lack its row
    trees.jsonl   trees up to the kill, the last step's maybe partly
    validation/, rollouts/   one file per step, up to the kill

`prepare` picks the step k to resume from: the newest complete checkpoint (`data.pt` written,
the last file verl saves before the tracker) whose step has its metrics row, so no step goes
missing; it points verl's tracker at it (written atomically); it keeps every record of steps
<= k and drops those after, which verl then produces again (one per step, in the order the
restored dataloader gives); and it returns the seconds the earlier parts of the run took
(`elapsed.json`, kept up to date while verl runs), so that the summary covers the whole run.
k = 0 means a fresh start (no checkpoint is usable).
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Optional

from treerpo.tiny.metrics import read_run_metrics
from treerpo.tree.record import keep_steps

TRACKER = "latest_checkpointed_iteration.txt"
ELAPSED = "elapsed.json"


def complete_checkpoints(ckpt_dir: Path) -> list[int]:
    """Steps of the checkpoints verl finished writing (their `data.pt` exists), ascending."""
    steps = []
    for d in Path(ckpt_dir).glob("global_step_*") if Path(ckpt_dir).is_dir() else []:
        m = re.fullmatch(r"global_step_(\d+)", d.name)
        if m and (d / "data.pt").is_file() and (d / "actor").is_dir() and any((d / "actor").iterdir()):
            steps.append(int(m.group(1)))
    return sorted(steps)


def write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def resume_step(out: Path) -> int:
    """The newest complete checkpoint whose step has its training metrics (0: none)."""
    trained = {r["step"] for r in read_run_metrics(out) if "critic/score/mean" in r}
    usable = [s for s in complete_checkpoints(out / "checkpoints") if s in trained]
    return usable[-1] if usable else 0


def read_elapsed(out: Path) -> float:
    try:
        return float(json.loads((Path(out) / ELAPSED).read_text())["seconds"])
    except (OSError, ValueError, KeyError):
        return 0.0


def write_elapsed(out: Path, seconds: float) -> None:
    write_atomic(Path(out) / ELAPSED, json.dumps({"seconds": round(seconds, 1)}))


def consolidate_metrics(out: Path, last: Optional[int] = None) -> None:
    """All metric parts merged into `metrics.jsonl`, one line per step (steps <= last only)."""
    rows = [r for r in read_run_metrics(out) if last is None or r["step"] <= last]
    text = "".join(json.dumps({"step": r["step"], "data": {k: v for k, v in r.items() if k != "step"}}) + "\n"
                   for r in rows)
    parts = sorted(Path(out).glob("metrics.*.jsonl"))
    write_atomic(Path(out) / "metrics.jsonl", text)
    for p in parts:
        p.unlink()


def prepare(out: Path, tree_dump: Optional[Path] = None, log=print) -> tuple[int, float]:
    """Make `out` resumable from its last usable step; returns (that step, seconds spent so far)."""
    out = Path(out)
    k = resume_step(out)
    tracker = out / "checkpoints" / TRACKER
    if k:
        write_atomic(tracker, str(k))
    elif tracker.exists():
        tracker.unlink()  # verl starts from the beginning
    consolidate_metrics(out, last=k)
    if not k:  # nothing trained survives: the earlier part's metrics are dropped too
        (out / "metrics.jsonl").write_text("")
    if tree_dump is not None:
        keep_steps(str(tree_dump), k)
    for folder in ("validation", "rollouts"):
        for f in (out / folder).glob("*.jsonl") if (out / folder).is_dir() else []:
            if f.stem.isdigit() and int(f.stem) > k:
                f.unlink()
    for d in (out / "checkpoints").glob("global_step_*") if (out / "checkpoints").is_dir() else []:
        m = re.fullmatch(r"global_step_(\d+)", d.name)
        if m and int(m.group(1)) > k:
            shutil.rmtree(d)  # half-written, or saved after the step k the run goes on from
    seconds = read_elapsed(out)
    log(f"resuming {out} from step {k}" + (" (no usable checkpoint: from the start)" if not k else "")
        + f"; {seconds:.0f} s spent before")
    return k, seconds

"""The starting checkpoint of a miniature run: one supervised warm-up per seed, made once and kept.

A run starts from `<out>/../base-seed<k>/`: kept if a warm-up of the same config is already
there, else copied from the warm-up the project ships for that seed (examples/tiny/), else made
by `treerpo.tiny.warmup.warm_up` (about 75-110 s on 2 cores).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

from treerpo.tiny.recipe import TinyRun

# Warm-ups the project ships (examples/tiny/base-seed<k>/, made by `treerpo warmup --seed k --out
# examples/tiny/base-seed<k>`): a run whose warm-up config equals a shipped one's starts from it
# instead of spending ~2 minutes on the warm-up. Absent from a non-editable install: then it warms up.
SHIPPED_BASES = Path(__file__).resolve().parents[2] / "examples" / "tiny"


def _made_with(path: Path) -> dict:
    """warmup.json of a checkpoint; a config without `task` was made on the `arith` task, the
    only one its WarmupConfig knew."""
    marker = path / "warmup.json"
    made = json.loads(marker.read_text()) if marker.exists() else {}
    if "config" in made:
        made["config"] = {"task": "arith", **made["config"]}
    return made


def config_of(run: TinyRun) -> dict:
    """The run's warm-up config as warmup.json stores it."""
    from dataclasses import asdict

    return json.loads(json.dumps(asdict(run.warmup_config())))


def shipped_base(run: TinyRun) -> Optional[Path]:
    """The shipped warm-up of this run's seed, if it was made with exactly this run's warm-up config."""
    path = SHIPPED_BASES / f"base-seed{run.seed}"
    return path if _made_with(path).get("config") == config_of(run) else None


def base_model(run: TinyRun, log=print) -> Path:
    """The warmed-up starting checkpoint of this seed, in `run.base_dir`: kept if there already
    (and its held-out set covers `val_problems`, so no validation problem was trained on), else
    copied from the shipped warm-up of the same config, else made by a supervised warm-up."""
    import shutil

    from treerpo.tiny.warmup import warm_up

    path = run.base_dir
    made = _made_with(path)
    config = made.get("config", {})
    if config.get("task") == "arith" == run.task and config.get("seed") == run.seed \
            and config.get("held_out", config.get("eval_problems", 0)) >= run.val_problems \
            and config.get("held_out_distinct", False) \
            and config.get("task_steps", 2) == run.task_steps:  # it kept every validation problem out, same task
        log(f"base model: {path} (warm-up done before, {made['held_out_acc']:.1%} held-out)")
        return path
    if run.task != "arith" and config == config_of(run):  # the same warm-up, made before
        log(f"base model: {path} (warm-up done before, {made['held_out_acc']:.1%} held-out)")
        return path
    shipped = shipped_base(run)
    if shipped is not None:
        if path.exists():
            shutil.rmtree(path)
        shutil.copytree(shipped, path)
        log(f"base model: {path} (the shipped warm-up {shipped}, {_made_with(path)['held_out_acc']:.1%} greedy "
            "held-out accuracy)")
        return path
    log("base model: supervised warm-up of a tiny Qwen2 on worked solutions ...")
    _, _, acc = warm_up(run.warmup_config(), out=path)
    log(f"base model: {path} ({acc:.1%} greedy held-out accuracy)")
    return path

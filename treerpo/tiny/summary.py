"""One run's outcome: its learning curve, `summary.json` and the lines `treerpo train` prints."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Optional

from treerpo.tiny.metrics import val_curve, val_keys
from treerpo.tiny.recipe import TinyRun


def plot(rows: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = val_keys(rows)
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    train = [(r["step"], r["critic/score/mean"]) for r in rows if "critic/score/mean" in r]
    if train:
        ax.plot(*zip(*train), color="C0", alpha=0.5, label="train reward (mean over leaves)")
    for i, (name, key) in enumerate(keys.items()):
        val = [(r["step"], r[key]) for r in rows if key in r]
        label = f"held-out accuracy ({key.rsplit('/', 1)[-1]})" if len(keys) == 1 else f"{name} ({key.rsplit('/', 1)[-1]})"
        ax.plot(*zip(*val), "o-", color=f"C{i + 1}", label=label)
    ax.set_xlabel("verl training step")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def summarize(run: TinyRun, rows: list[dict], seconds: float, val_dir: Optional[Path] = None) -> dict:
    from treerpo.tiny.val_dump import run_change

    keys = val_keys(rows)
    key = next(iter(keys.values())) if len(keys) == 1 else ("mean of " + ", ".join(keys) if keys else None)
    val = val_curve(rows)
    return {
        "estimator": run.estimator,
        "seed": run.seed,
        "steps": max((r["step"] for r in rows if "critic/score/mean" in r), default=0),
        "val_metric": key,
        "val_acc_start": val[0][1] if val else None,
        "val_acc_final": val[-1][1] if val else None,
        "val_curve": val,
        # problems gained / lost from the first validation to the last, and the sign test's p
        "val_paired": run_change(val_dir) if val_dir is not None else None,
        "train_reward_first": next((r["critic/score/mean"] for r in rows if "critic/score/mean" in r), None),
        "train_reward_last": next((r["critic/score/mean"] for r in reversed(rows) if "critic/score/mean" in r), None),
        "seconds": round(seconds, 1),
    }


def report(summary: dict) -> str:
    a, b = summary["val_acc_start"], summary["val_acc_final"]
    lines = [f"{summary['estimator']} seed {summary['seed']}: {summary['steps']} verl steps in {summary['seconds']:.0f} s"]
    if a is not None and b is not None and not (math.isnan(a) or math.isnan(b)):
        lines.append(f"held-out accuracy ({summary['val_metric']}): {a:.1%} before RL -> {b:.1%} after "
                     f"({100 * (b - a):+.1f} points)")
    paired = summary.get("val_paired")
    if paired:
        lines.append(f"  problem by problem (step {paired['from_step']} -> {paired['to_step']}, "
                     f"{paired['problems']} problems): {paired['gained']} gained, {paired['lost']} lost; "
                     f"sign test p = {paired['p_value']:.2g}")
    return "\n".join(lines)

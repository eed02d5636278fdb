"""`treerpo train`: warm-up, data, then verl 0.9.1's own trainer in a subprocess, on this machine's CPU.

    treerpo train                                   # TreeRPO, seed 0, runs/tiny/treerpo-seed0/
    treerpo train --estimator grpo --steps 60 actor_rollout_ref.actor.optim.lr=5e-5

The run's settings are `treerpo.tiny.recipe.TinyRun` (what differs from the GPU scripts, and why).
Writes to --out: `data/` (train and val parquet), `command.txt`, `train.log` (verl's whole
output), `metrics.jsonl` (verl's file logger), `tensorboard/`, `checkpoints/` (verl's),
`validation/` (verl's per-sample validation dumps), `trees.jsonl` (tree runs),
`learning_curve.png` and `summary.json`. The warm-up checkpoint is shared by every run of the
same seed (`<out>/../base-seed<k>/`, treerpo/tiny/base.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

from treerpo.tiny.base import base_model
from treerpo.tiny.data import write_data
from treerpo.tiny.metrics import read_metrics, read_run_metrics, val_curve
from treerpo.tiny.recipe import TinyRun
from treerpo.tiny.summary import plot, summarize


def launch_env(run: TinyRun) -> dict:
    out = Path(run.out).resolve()
    return {
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        "VERL_FILE_LOGGER_PATH": str(out / "metrics.jsonl"),  # verl/utils/tracking.py FileLogger
        "TENSORBOARD_DIR": str(out / "tensorboard"),
        "HYDRA_FULL_ERROR": "1",
    }


OUTPUTS = ("checkpoints", "tensorboard", "metrics.jsonl", "metrics.*.jsonl", "trees.jsonl", "train.log", "learning_curve.png",
           "summary.json", "rollouts", "validation")


def clear_outputs(out: Path, log=print) -> None:
    """A fresh run: remove what an earlier run left in `out` (verl would resume from its checkpoints)."""
    import shutil

    old = [p for name in OUTPUTS for p in sorted(out.glob(name))]
    if old:
        log(f"removing the previous run's outputs in {out} ({', '.join(p.name for p in old)}); --resume keeps them")
    for p in old:
        shutil.rmtree(p) if p.is_dir() else p.unlink()


def train(run: TinyRun, verbose: bool = False, resume: bool = False, log=print,
          timeout: Optional[float] = None) -> dict:
    """Warm-up (once per seed), data, then verl's trainer in a subprocess; returns the summary.

    Without `resume`, outputs of an earlier run in `run.out` are removed first; with it, verl
    resumes from the last checkpoint there (its `trainer.resume_mode=auto`). With `timeout`
    (seconds), a verl run that takes longer is ended and reported as failed."""
    t0 = time.perf_counter()
    out = Path(run.out)
    out.mkdir(parents=True, exist_ok=True)
    if not resume:
        clear_outputs(out, log)
    model = base_model(run, log)
    write_data(run, out / "data")
    metrics_path = out / "metrics.jsonl"
    if resume and metrics_path.exists():  # verl's file logger truncates its file: keep the earlier part
        metrics_path.rename(out / f"metrics.{int(time.time())}.jsonl")
    cmd = [sys.executable, "-m", "verl_ext.main", *run.overrides(str(model.resolve()), str((out / "data").resolve()))]
    (out / "command.txt").write_text(" ".join(cmd) + "\n")
    log(f"verl: python -m verl_ext.main +preset=cpu ... ({run.estimator}, {run.steps} steps); "
        f"full command in {out / 'command.txt'}, output in {out / 'train.log'}")
    rc = _run_verl(cmd, run, out / "train.log", metrics_path, verbose, log, timeout)
    rows = read_run_metrics(out)
    if rc != 0:
        tail = (out / "train.log").read_text(errors="replace").splitlines()[-40:]
        raise RuntimeError(f"verl's trainer exited with {rc}; last lines of {out / 'train.log'}:\n" + "\n".join(tail))
    plot(rows, out / "learning_curve.png", f"{run.estimator}, seed {run.seed} (verl on CPU, tiny Qwen2)")
    summary = summarize(run, rows, time.perf_counter() - t0, out / "validation")
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def _run_verl(cmd: list[str], run: TinyRun, log_path: Path, metrics_path: Path, verbose: bool, log,
              timeout: Optional[float] = None) -> int:
    """Run verl, its output to `log_path` (and the terminal with `verbose`); a progress bar over
    training steps, fed by verl's file logger."""
    from tqdm import tqdm

    bar = tqdm(total=run.steps, desc=f"verl {run.estimator} (start-up ~4 min)", unit="step", disable=verbose)
    seen, start = 0, time.monotonic()
    restore = _stop_on_sigterm()
    with open(log_path, "w") as logf:
        proc = subprocess.Popen(cmd, env=launch_env(run), stdout=subprocess.PIPE if verbose else logf,
                                stderr=subprocess.STDOUT, text=True)
        try:
            while proc.poll() is None:
                if timeout is not None and time.monotonic() - start > timeout:
                    log(f"verl ran past {timeout:.0f} s: ending it")
                    proc.terminate()
                    try:
                        proc.wait(timeout=60)
                    except subprocess.TimeoutExpired:
                        proc.kill()
                    return -1
                if verbose:
                    line = proc.stdout.readline()
                    if line:
                        sys.stdout.write(line)
                        logf.write(line)
                    continue
                time.sleep(2)
                rows = read_metrics(metrics_path)
                steps = [r for r in rows if "critic/score/mean" in r]
                if len(steps) > seen:
                    bar.set_description(f"verl {run.estimator}")
                    bar.update(len(steps) - seen)
                    seen = len(steps)
                    post = {"reward": f"{steps[-1]['critic/score/mean']:.2f}"}
                    curve = val_curve(rows)
                    if curve:
                        post["val_acc"] = f"{curve[-1][1]:.3f}"
                    bar.set_postfix(post)
            if verbose and proc.stdout:
                rest = proc.stdout.read()
                sys.stdout.write(rest)
                logf.write(rest)
        except KeyboardInterrupt:
            proc.terminate()
            proc.wait(timeout=60)
            raise
        finally:
            bar.close()
            restore()
    return proc.returncode


def _stop_on_sigterm():
    """While verl runs, a SIGTERM to this command (a job scheduler, `kill`) stops verl too, as Ctrl-C
    does: it is raised here as KeyboardInterrupt, and `_run_verl` ends its child. Without it verl
    (and its Ray cluster) outlived the command. Returns the function that puts the old handler back."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGTERM, interrupt)
    return lambda: signal.signal(signal.SIGTERM, old)


def check(run: TinyRun, dump_config: Optional[str] = None, quiet: bool = False) -> int:
    """Compose and validate this run's config exactly as the launch would (verl_ext.check)."""
    env = dict(launch_env(run))
    if dump_config:
        env["TREERPO_DUMP_CONFIG"] = dump_config
    model = str(run.base_dir.resolve())
    cmd = [sys.executable, "-m", "verl_ext.check", *run.overrides(model, str((Path(run.out) / "data").resolve()))]
    out = subprocess.run(cmd, env=env, capture_output=quiet, text=True)
    if quiet and out.returncode != 0:
        sys.stderr.write(out.stderr[-3000:])
    return out.returncode

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
           "summary.json", "rollouts", "validation", "elapsed.json")
STALL_TIMEOUT = 900.0  # seconds without a new metrics line (a step or a validation) before the run is ended


class RunFailed(RuntimeError):
    """verl's run ended without finishing: an error, a dead engine or worker, a stall, a timeout."""


def clear_outputs(out: Path, log=print) -> None:
    """A fresh run: remove what an earlier run left in `out` (verl would resume from its checkpoints)."""
    import shutil

    old = [p for name in OUTPUTS for p in sorted(out.glob(name))]
    if old:
        log(f"removing the previous run's outputs in {out} ({', '.join(p.name for p in old)}); --resume keeps them")
    for p in old:
        shutil.rmtree(p) if p.is_dir() else p.unlink()


def train(run: TinyRun, verbose: bool = False, resume: bool = False, log=print,
          timeout: Optional[float] = None, stall_timeout: float = STALL_TIMEOUT) -> dict:
    """Warm-up (once per seed), data, then verl's trainer in a subprocess; returns the summary.

    Without `resume`, outputs of an earlier run in `run.out` are removed first; with it, the run
    continues from its last usable checkpoint (treerpo/tiny/resume.py). The folder is locked while
    the run lives (a second launcher on it raises guard.RunInUse). verl's processes end with this
    call, however it ends (treerpo/tiny/guard.py). Raises RunFailed, naming the cause, when verl
    exits with an error, a vLLM engine or Ray worker dies, no step or validation is logged for
    `stall_timeout` seconds, or the run takes longer than `timeout`."""
    from treerpo.tiny import guard, resume as resume_mod

    t0 = time.perf_counter()
    out = Path(run.out)
    out.mkdir(parents=True, exist_ok=True)
    lock = guard.RunLock(out)
    lock.acquire()
    try:
        before = 0.0
        if resume:
            _, before = resume_mod.prepare(out, out / "trees.jsonl", log)
        else:
            clear_outputs(out, log)
        model = base_model(run, log)
        write_data(run, out / "data")
        metrics_path = out / "metrics.jsonl"
        if metrics_path.exists() and metrics_path.stat().st_size:  # verl's file logger truncates its file
            metrics_path.rename(out / f"metrics.{int(time.time())}.jsonl")
        cmd = [sys.executable, "-m", "verl_ext.main",
               *run.overrides(str(model.resolve()), str((out / "data").resolve()))]
        (out / "command.txt").write_text(" ".join(cmd) + "\n")
        log(f"verl: python -m verl_ext.main +preset=cpu ... ({run.estimator}, {run.steps} steps); "
            f"full command in {out / 'command.txt'}, output in {out / 'train.log'}")
        spent = lambda: before + time.perf_counter() - t0  # noqa: E731
        _run_verl(cmd, run, out / "train.log", metrics_path, verbose, log, timeout, stall_timeout, lock, spent)
        resume_mod.consolidate_metrics(out)
        rows = read_run_metrics(out)
        plot(rows, out / "learning_curve.png", f"{run.estimator}, seed {run.seed} (verl on CPU, tiny Qwen2)")
        summary = summarize(run, rows, spent(), out / "validation")
        resume_mod.write_elapsed(out, spent())
        (out / "summary.json").write_text(json.dumps(summary, indent=2))
        return summary
    finally:
        lock.release()


def _run_verl(cmd: list[str], run: TinyRun, log_path: Path, metrics_path: Path, verbose: bool, log,
              timeout: Optional[float] = None, stall_timeout: float = STALL_TIMEOUT, lock=None,
              spent=None) -> None:
    """Run verl in a session of its own, its output to `log_path` (and the terminal with `verbose`),
    a progress bar over training steps fed by verl's file logger; every process of the session is
    ended on the way out. Raises RunFailed (see `train`)."""
    import threading

    from tqdm import tqdm

    from treerpo.tiny import guard, resume as resume_mod

    bar = tqdm(total=run.steps, desc=f"verl {run.estimator} (start-up ~4 min)", unit="step", disable=verbose)
    seen, start, last_change, size = 0, time.monotonic(), time.monotonic(), -1
    watch = guard.LogWatch(log_path)
    stop_echo = threading.Event()
    proc = reaper = None
    restore = _stop_on_sigterm()
    with open(log_path, "w") as logf:
        try:
            proc = guard.start_session(cmd, env=launch_env(run), stdout=logf, stderr=subprocess.STDOUT)
            if lock is not None:
                lock.record(session=proc.pid)
            reaper = guard.start_reaper(proc.pid)  # ends the session if this process dies
            if verbose:
                threading.Thread(target=_echo, args=(log_path, stop_echo), daemon=True).start()
            while proc.poll() is None:
                time.sleep(2)
                now = time.monotonic()
                if spent is not None:
                    resume_mod.write_elapsed(metrics_path.parent, spent())
                rows = read_metrics(metrics_path)
                steps = [r for r in rows if "critic/score/mean" in r]
                done = bool(steps) and steps[-1]["step"] >= run.steps
                fatal = watch.fatal()
                if fatal and not done:  # after the last step only shutdown noise remains
                    what, line, match = fatal
                    raise RunFailed(f"{what} died ({match} at {log_path}:{line}): the run was ended; "
                                    f"verl would have waited for it forever")
                cur = metrics_path.stat().st_size if metrics_path.exists() else 0
                if cur != size:
                    size, last_change = cur, now
                elif now - last_change > stall_timeout:
                    raise RunFailed(f"verl logged no step or validation for {stall_timeout:.0f} s "
                                    f"(last lines in {log_path}): the run was ended")
                if timeout is not None and now - start > timeout:
                    raise RunFailed(f"verl ran past {timeout:.0f} s: the run was ended")
                if len(steps) > seen:
                    bar.set_description(f"verl {run.estimator}")
                    bar.update(len(steps) - seen)
                    seen = len(steps)
                    post = {"reward": f"{steps[-1]['critic/score/mean']:.2f}"}
                    curve = val_curve(rows)
                    if curve:
                        post["val_acc"] = f"{curve[-1][1]:.3f}"
                    bar.set_postfix(post)
            if proc.returncode != 0:
                tail = log_path.read_text(errors="replace").splitlines()[-40:]
                raise RunFailed(f"verl's trainer exited with {proc.returncode}; last lines of {log_path}:\n"
                                + "\n".join(tail))
        finally:
            bar.close()
            stop_echo.set()
            if proc is not None:
                guard.end_session(proc.pid)
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    pass
            if reaper is not None:
                reaper.stdin.close()  # the session is gone: the reaper finds nothing and exits
            restore()


def _echo(path: Path, stop) -> None:
    """--verbose: copy verl's output to the terminal as it is written to its log."""
    with open(path, errors="replace") as f:
        while not stop.is_set():
            chunk = f.read()
            if chunk:
                sys.stdout.write(chunk)
                sys.stdout.flush()
            else:
                time.sleep(0.5)
        sys.stdout.write(f.read())


def _stop_on_sigterm():
    """While verl runs, a SIGTERM to this command (a job scheduler, `kill`) stops verl too, as Ctrl-C
    does: it is raised here as KeyboardInterrupt, and `_run_verl` ends verl's session on the way
    out. Returns the function that puts the old handler back."""
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

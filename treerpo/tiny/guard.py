"""A verl run that ends with its launcher, refuses a second launcher, and never hangs on a dead engine.

verl starts about 36 processes on one machine (its driver, Ray's head processes, Ray's workers,
vLLM's engine and workers). `treerpo train` starts verl's driver in a session of its own
(`start_session`), so that every one of them can be found and ended together: Ray gives its
workers their own process groups but they stay in the session (`session_pids`).

However the launcher ends, the session ends with it:
  - normal exit, an error, Ctrl-C or SIGTERM: `end_session` (SIGTERM, a grace period, SIGKILL);
  - SIGKILL of the launcher alone: verl's driver gets SIGKILL from the kernel (PR_SET_PDEATHSIG)
    and a reaper (`start_reaper`, a small process in a session of its own) sees the launcher's
    pipe close and ends the whole session;
  - SIGKILL of the launcher's whole process group: the reaper and verl's session are outside that
    group, so the reaper still ends verl's session.

`RunLock` holds `<out>/.run.lock` (an flock, released by the kernel when the launcher dies) and
records the session: a second `treerpo train` on the same folder refuses with one line while
the launcher or any process of its session is alive.

`LogWatch` reads verl's output as it grows and names the first fatal line. verl does not fail on
a dead rollout engine: its agent-loop worker turns the engine's error into a "failure" status of
the prompt (verl/trainer/ppo/v1/agent_loop_tq.py:133-141) and the sync replay buffer refills
failed prompts forever (replay_buffer.py:463-465, inside the `while True` of :449), so the run
waits with no end. The launcher ends it instead, within one poll of vLLM's report.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

# (pattern in verl's output, what died): the first match ends the run
FATAL = [
    (re.compile(r"EngineDeadError|EngineCore encountered a fatal error|Engine core proc\w* .*died|"
                r"engine core exited unexpectedly"),
     "verl's vLLM engine"),
    (re.compile(r"ActorDiedError|RayActorError|The actor died unexpectedly|Worker unexpectedly exits"),
     "a Ray worker of verl"),
    (re.compile(r"RaySystemError|GcsUnavailable|Failed to connect to GCS"), "Ray's cluster"),
]


class RunInUse(RuntimeError):
    """Another launcher, or processes it started, hold the run folder."""


def _parent_death_signal():
    """A function for the child to run before exec: SIGKILL when the launcher (its parent) dies
    (Linux prctl PR_SET_PDEATHSIG). libc is loaded here, in the parent: between fork and exec the
    child may only call what is already loaded. None where there is no such call (not Linux): the
    reaper still ends the session."""
    try:
        import ctypes

        prctl = ctypes.CDLL("libc.so.6", use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    return lambda: prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG = 1


def start_session(cmd: list[str], **popen) -> subprocess.Popen:
    """Start `cmd` as the leader of a new session; it gets SIGKILL if the launcher dies."""
    return subprocess.Popen(cmd, start_new_session=True, preexec_fn=_parent_death_signal(), **popen)


def session_pids(sid: int) -> list[int]:
    """Every live process whose session id is `sid` (field 6 of /proc/<pid>/stat)."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path("/proc", entry, "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2:].split()  # after "pid (comm) "
        if len(fields) > 3 and int(fields[3]) == sid and fields[0] != "Z":
            out.append(int(entry))
    return out


def end_session(sid: int, grace: float = 10.0) -> int:
    """SIGTERM every process of session `sid`, SIGKILL what is left after `grace` seconds.
    Returns how many processes had to be killed."""
    for pid in session_pids(sid):
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and session_pids(sid):
        time.sleep(0.2)
    left = session_pids(sid)
    for pid in left:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return len(left)


REAPER = """
import sys
sys.path[:0] = {path!r}
sys.stdin.read()  # returns when the launcher's end of the pipe closes: it exited or was killed
from treerpo.tiny.guard import end_session
end_session({sid}, grace=5.0)
"""


def start_reaper(sid: int) -> subprocess.Popen:
    """A process outside both the launcher's group and verl's session that ends the session once the
    launcher is gone. The launcher keeps the pipe open and never writes to it."""
    code = REAPER.format(path=[str(Path(__file__).resolve().parents[2])], sid=sid)
    return subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


class RunLock:
    """`<out>/.run.lock`: held while a launcher runs, naming its pid and verl's session."""

    def __init__(self, out: Path):
        self.path = Path(out) / ".run.lock"
        self.fd: Optional[int] = None

    def holder(self) -> dict:
        try:
            return json.loads(self.path.read_text() or "{}")
        except (OSError, ValueError):
            return {}

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            h = self.holder()
            raise RunInUse(f"{self.path.parent} is in use by a running `treerpo train` (pid {h.get('pid', '?')}); "
                           "wait for it to end or stop it first") from None
        h = self.holder()
        sid = h.get("session")
        if sid and session_pids(int(sid)):  # the launcher died but its run is still ending
            os.close(fd)
            raise RunInUse(f"{self.path.parent} is in use: {len(session_pids(int(sid)))} processes of an earlier "
                           f"run (session {sid}) are still alive; they end within seconds of their launcher")
        self.fd = fd
        self.record(session=None)

    def record(self, session: Optional[int]) -> None:
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, json.dumps({"pid": os.getpid(), "session": session, "started": time.time()}).encode(), 0)

    def release(self) -> None:
        if self.fd is not None:
            os.ftruncate(self.fd, 0)
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None


class LogWatch:
    """Reads a growing log from where it stopped; `fatal()` gives (what died, line number, line)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.offset = 0
        self.lines = 0
        self.partial = ""

    def fatal(self) -> Optional[tuple[str, int, str]]:
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                chunk = f.read()
        except OSError:
            return None
        self.offset += len(chunk)
        text = self.partial + chunk.decode("utf-8", errors="replace")
        lines = text.split("\n")
        self.partial = lines.pop()  # an unfinished last line waits for the next read
        for line in lines:
            self.lines += 1
            for pattern, what in FATAL:
                m = pattern.search(line)
                if m:
                    return what, self.lines, m.group(0)
        return None

"""math-verify for the verifier: the client of this process's warm, killable helper.

    math_verify_equivalent(gold, pred, timeout) -> bool      (NoVerdict when there is none)

The helper (treerpo/reward/helper.py) is a fresh interpreter running a small dedicated module,
started once per scoring process and kept warm; it never imports the caller's `__main__`, so it
starts the same way under a Ray worker, pytest, or a script without a `__main__` guard. It is a
server that forks its warm self into a worker which does the comparisons. The timeout covers the
comparison only, never start-up: a call first waits (up to HELPER_START_TIMEOUT_S) for the
server to say it is ready, then its own `timeout` starts. The timeout is a budget of CPU seconds
for the comparison (a loaded machine stretches a 100 ms comparison to seconds of wall time, which
must not become a wrong reward), with a wall-clock backstop of WALL_FACTOR times it. A
comparison that runs past it gets its worker killed and replaced by a fresh fork of the warm
server (milliseconds, charged to no call). One helper serves a process; calls from several
threads take turns, and the wait for a turn is not charged either.

Only definite verdicts are cached, per (ground truth, answer); a timeout or a helper error
raises NoVerdict and is never stored. `verifier_stats()` gives this process's counters.
"""

from __future__ import annotations

import atexit
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter, OrderedDict
from pathlib import Path
from typing import Optional

from treerpo.reward.helper import WALL_FACTOR, LineReader

DEFAULT_TIMEOUT_S = 3.0  # CPU seconds per math-verify comparison, start-up excluded
HELPER_START_TIMEOUT_S = 120.0  # a helper that is not ready by then is a helper_error
HELPER_RETRY_S = 10.0  # after a failed start, calls fail fast for this long before a new try
HELPER_GRACE_S = 10.0  # the server reports a timeout by itself; this is only a backstop
CACHE_SIZE = 65536


_STATS = Counter()  # this process's counters, see verifier_stats()
_STATS_LOCK = threading.Lock()


def _count(key: str, n: float = 1) -> None:
    with _STATS_LOCK:
        _STATS[key] += n


def verifier_stats() -> dict:
    """This process's counters: math_verify_calls (sent to the helper), cache_hits, timeouts,
    helper_errors, helper_starts, helper_start_s (total seconds helpers took to get ready)."""
    with _STATS_LOCK:
        keys = ("math_verify_calls", "cache_hits", "timeouts", "helper_errors", "helper_starts")
        return {**{k: int(_STATS[k]) for k in keys}, "helper_start_s": float(_STATS["helper_start_s"])}


class NoVerdict(Exception):
    """math-verify gave no verdict; `reason` is "timeout" or "helper_error"."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


_PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])  # where `treerpo` is importable from


class _Helper:
    """This process's math-verify helper (`python -m treerpo.reward.helper`), one request at a time.

    The helper is a warm server that relays each request to a forked worker and enforces the
    request's timeout itself, replacing a worker that ran over by a fresh fork (milliseconds).
    This side only starts and stops the server, and waits WALL_FACTOR x `timeout` +
    HELPER_GRACE_S for its reply; a server that misses that (it never should) is killed and
    restarted in the background.
    """

    def __init__(self):
        self._reset()

    def _reset(self) -> None:
        self.lock = threading.Lock()
        self.proc: Optional[subprocess.Popen] = None
        self.reader: Optional[LineReader] = None
        self.ready = False
        self.launched_at = 0.0
        self.retry_after = 0.0

    def forget_after_fork(self) -> None:
        """In a forked child: the parent's helper and lock are not ours; start afresh."""
        if self.proc is not None:
            for f in (self.proc.stdin, self.proc.stdout):
                try:
                    f.close()  # our copies only; the parent keeps its own
                except OSError:
                    pass
        self._reset()

    # -- lifecycle (callers hold the lock, or are alone) --
    def launch(self) -> None:
        """Start a server without waiting for it; in its own session, so a terminal's Ctrl-C
        does not reach it and stop() can kill it together with its worker."""
        self.ready, self.launched_at = False, time.monotonic()
        path = os.pathsep.join(p for p in (_PACKAGE_ROOT, os.environ.get("PYTHONPATH")) if p)
        self.proc = subprocess.Popen([sys.executable, "-m", "treerpo.reward.helper"], cwd=_PACKAGE_ROOT,
                                     env={**os.environ, "PYTHONPATH": path}, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, start_new_session=True)
        self.reader = LineReader(self.proc.stdout.fileno())
        _count("helper_starts")

    def stop(self) -> None:
        """Kill the server and its worker (their process group), and reap the server."""
        if self.proc is not None:
            if self.proc.returncode is None:  # unreaped, so the group id is still ours to kill
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except OSError:
                    pass
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
            for f in (self.proc.stdin, self.proc.stdout):
                try:
                    f.close()
                except OSError:
                    pass
        self.proc, self.reader, self.ready = None, None, False

    def restart(self) -> None:
        """Replace a server that failed; the new one warms up while the caller goes on."""
        self.stop()
        try:
            self.launch()
        except OSError:
            self.retry_after = time.monotonic() + HELPER_RETRY_S

    def fail(self, reason: str) -> NoVerdict:
        _count("timeouts" if reason == "timeout" else "helper_errors")
        return NoVerdict(reason)

    def ensure_ready(self) -> None:
        """Have a live, warm server, waiting for its start-up if needed (no call's budget runs yet)."""
        if self.proc is not None and self.proc.poll() is not None:  # died while idle
            self.stop()
        if self.proc is None:
            if time.monotonic() < self.retry_after:
                raise self.fail("helper_error")
            try:
                self.launch()
            except OSError:
                self.retry_after = time.monotonic() + HELPER_RETRY_S
                raise self.fail("helper_error") from None
        if self.ready:
            return
        try:
            line = self.reader.read_line(HELPER_START_TIMEOUT_S)
            ready = line is not None and json.loads(line) == {"ready": True}
        except (EOFError, ValueError):
            ready = False
        if not ready:
            self.stop()
            self.retry_after = time.monotonic() + HELPER_RETRY_S
            raise self.fail("helper_error")
        self.ready = True
        _count("helper_start_s", time.monotonic() - self.launched_at)

    # -- one request --
    def equivalent(self, gold: str, pred: str, timeout: Optional[float]) -> bool:
        """math-verify's verdict, or NoVerdict. The budget starts once the server is ready."""
        with self.lock:
            self.ensure_ready()
            _count("math_verify_calls")
            try:
                self.proc.stdin.write(json.dumps({"gold": gold, "pred": pred, "timeout": timeout}).encode() + b"\n")
                self.proc.stdin.flush()
                line = self.reader.read_line(None if timeout is None else WALL_FACTOR * timeout + HELPER_GRACE_S)
                reply = None if line is None else json.loads(line)
            except (OSError, EOFError, ValueError):
                reply = None
            if isinstance(reply, dict) and "ok" in reply:
                return bool(reply["ok"])
            if isinstance(reply, dict) and reply.get("timeout"):
                raise self.fail("timeout")  # the server has replaced its worker already
            if not isinstance(reply, dict) or "error" not in reply:  # the server itself failed
                self.restart()
            raise self.fail("helper_error")

    def start(self, wait: bool) -> None:
        """Start the server now (optionally waiting until it is warm), if it is not running."""
        with self.lock:
            if wait:
                try:
                    self.ensure_ready()
                except NoVerdict:
                    pass
            elif self.proc is None and time.monotonic() >= self.retry_after:
                try:
                    self.launch()
                except OSError:
                    self.retry_after = time.monotonic() + HELPER_RETRY_S


_helper = _Helper()
atexit.register(_helper.stop)
if hasattr(os, "register_at_fork"):  # POSIX
    os.register_at_fork(after_in_child=_helper.forget_after_fork)


def start_helper(wait: bool = False) -> None:
    """Start this process's math-verify helper ahead of need (score_answer does it lazily)."""
    _helper.start(wait)


class _VerdictCache:
    """A thread-safe LRU map (ground truth, answer) -> definite math-verify verdict."""

    def __init__(self, maxsize: int):
        self.maxsize, self.data, self.lock = maxsize, OrderedDict(), threading.Lock()

    def get(self, key) -> Optional[bool]:
        with self.lock:
            if key not in self.data:
                return None
            self.data.move_to_end(key)
            return self.data[key]

    def put(self, key, ok: bool) -> None:
        with self.lock:
            self.data[key] = ok
            if len(self.data) > self.maxsize:
                self.data.popitem(last=False)


_cache = _VerdictCache(CACHE_SIZE)


def math_verify_equivalent(gold: str, pred: str, timeout: Optional[float] = DEFAULT_TIMEOUT_S) -> bool:
    """math-verify's verdict through the helper and the cache of definite verdicts; NoVerdict if none."""
    cached = _cache.get((gold, pred))
    if cached is not None:
        _count("cache_hits")
        return cached
    ok = _helper.equivalent(gold, pred, timeout)
    _cache.put((gold, pred), ok)
    return ok

"""The math-verify helper, run by treerpo.reward.verifier as `python -m treerpo.reward.helper`.

A module of its own, started as a fresh interpreter (not through multiprocessing), so it never
imports the caller's `__main__`: it starts the same way whatever started it (a Ray worker, a
script that imports torch at top level, a script without an `if __name__ == "__main__"` guard,
pytest), and it imports nothing but math-verify.

Two processes:
- the *server* (this module's main) imports math-verify, warms it up, forks a *worker*, says it
  is ready, then relays each request to the worker and enforces the request's timeout;
- the *worker* (a fork of the warm server) does the comparisons. When one runs past its timeout,
  the server kills the worker and forks a fresh one from itself: already warm, ready in
  milliseconds, so a timeout costs the caller no start-up. The server itself never runs sympy
  after warm-up, so it cannot hang.

The timeout is a budget of CPU seconds for one comparison, read from /proc: a busy machine
(other jobs, four reward workers on two cores) stretches a 100 ms comparison to seconds of wall
time, and a wall-clock limit would turn such answers into timeouts, i.e. wrong rewards. A
comparison that hangs burns CPU and is stopped at its budget; one that gets no CPU at all is
stopped after WALL_FACTOR times the budget in wall time. Without /proc the budget is wall time.

Protocol with the caller, one JSON object per line (ASCII):
    server -> caller   {"ready": true}                                once, when warm
    caller -> server   {"gold": "...", "pred": "...", "timeout": s}   CPU seconds; null: no limit
    server -> caller   {"ok": true|false} | {"timeout": true} | {"error": "..."}
End of input ends the server and its worker. math-verify's own signal-based timeouts are off
here: a verdict that comes back was reached, never cut short.
"""

from __future__ import annotations

import gc
import json
import logging
import os
import select
import signal
import sys
import time
from typing import Optional

# Compared once at start-up so sympy's and latex2sympy's lazy imports and caches are loaded
# before the server says it is ready (and before it forks workers), not during a call.
WARM_UP = [("\\frac{1}{2}", "0.5"), ("2\\sqrt{2}", "\\sqrt{8}"), ("[1, 2)", "[1,2)"),
           ("\\{1, 2\\}", "\\{2, 1\\}"), ("(x+1)^2", "x^2+2x+1")]

WALL_FACTOR = 10.0  # a comparison may take this many times its CPU budget in wall-clock time
MIN_WAIT_S = 0.01  # /proc counts CPU time in clock ticks (10 ms)
CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


class LineReader:
    """Lines from a pipe, waiting at most a given time for each (used on both ends)."""

    def __init__(self, fd: int):
        self.fd, self.buf = fd, b""
        self.poller = select.poll()  # not select.select: fds above 1024 are common in Ray workers
        self.poller.register(fd, select.POLLIN)

    def read_line(self, timeout: Optional[float]) -> Optional[bytes]:
        """The next line; None if none came within `timeout` s (None: wait forever); EOFError at end."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while b"\n" not in self.buf:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not self.poller.poll(None if left is None else left * 1000):
                return None
            chunk = os.read(self.fd, 1 << 16)
            if not chunk:
                raise EOFError
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\n")
        return line


def write_line(fd: int, obj) -> None:
    """One JSON line to `fd`, all of it."""
    data = (json.dumps(obj) + "\n").encode("ascii")
    while data:
        data = data[os.write(fd, data):]


def equivalent(gold: str, pred: str) -> bool:
    """math-verify's verdict on `pred` against `gold`; any error is a wrong answer."""
    from math_verify import parse, verify

    try:
        g = parse(f"${gold}$", parsing_timeout=None)
        p = parse(f"${pred}$", parsing_timeout=None)
        return bool(g) and bool(p) and bool(verify(g, p, timeout_seconds=None))
    except Exception:  # sympy's odd errors, RecursionError ...: all wrong
        return False


# ---- the worker: a fork of the warm server ---------------------------------------------------------
class Worker:
    """A forked comparison process and the server's ends of its two pipes."""

    def __init__(self, close_in_child: tuple):
        req_r, self.req_w = os.pipe()
        self.rep_r, rep_w = os.pipe()
        self.pid, self.reaped = os.fork(), False
        if self.pid == 0:  # the worker: never returns into the server's code
            try:
                for fd in (*close_in_child, self.req_w, self.rep_r):
                    os.close(fd)
                serve_worker(req_r, rep_w)
            finally:
                os._exit(0)
        os.close(req_r)
        os.close(rep_w)
        self.reader = LineReader(self.rep_r)

    def cpu_s(self) -> Optional[float]:
        """CPU seconds the worker has used (Linux /proc), None where that cannot be read."""
        try:
            with open(f"/proc/{self.pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()  # fields after the command name
            return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime + stime
        except (OSError, ValueError, IndexError):
            return None

    def reply(self, timeout: Optional[float]) -> Optional[bytes]:
        """The worker's reply line; None once it has spent `timeout` CPU-seconds on the request
        without one, or WALL_FACTOR x `timeout` wall seconds (None: wait forever)."""
        if timeout is None:
            return self.reader.read_line(None)
        start, cpu0 = time.monotonic(), self.cpu_s()
        while True:
            wall, now = time.monotonic() - start, self.cpu_s()
            cpu = wall if cpu0 is None or now is None else now - cpu0  # no /proc: wall clock
            left = min(timeout - cpu, WALL_FACTOR * timeout - wall)
            if left <= 0:
                return None
            # CPU time never runs faster than the wall clock, so waiting `left` cannot overshoot
            line = self.reader.read_line(max(left, MIN_WAIT_S))
            if line is not None:
                return line

    def alive(self) -> bool:
        if not self.reaped and os.waitpid(self.pid, os.WNOHANG) != (0, 0):
            self.reaped = True
        return not self.reaped

    def kill(self) -> None:
        """Kill and reap it (only while unreaped: its pid is ours until then), close our pipe ends."""
        if not self.reaped:
            os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
            self.reaped = True
        os.close(self.req_w)
        os.close(self.rep_r)


def serve_worker(req_fd: int, rep_fd: int) -> None:
    reader = LineReader(req_fd)
    while True:
        try:
            line = reader.read_line(None)
        except EOFError:
            return
        request = json.loads(line)
        write_line(rep_fd, {"ok": equivalent(str(request["gold"]), str(request["pred"]))})


# ---- the server -------------------------------------------------------------------------------------
def answer(worker: Worker, request: dict) -> tuple[dict, bool]:
    """The worker's reply to `request` within its timeout, and whether the worker must be replaced."""
    try:
        write_line(worker.req_w, {"gold": request["gold"], "pred": request["pred"]})
        line = worker.reply(request.get("timeout"))
    except (OSError, EOFError):
        return {"error": "worker died"}, True
    if line is None:
        return {"timeout": True}, True
    return json.loads(line), False


def main() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the caller's business; EOF ends us
    logging.disable(logging.CRITICAL)  # math-verify warns on every call that its timeouts are off
    out = os.dup(1)  # the protocol's own fd; fd 1 then points at stderr, so a library that
    os.dup2(2, 1)  # prints cannot corrupt the answers
    sys.stdout = sys.stderr
    for gold, pred in WARM_UP:
        equivalent(gold, pred)
    gc.freeze()  # the warm objects are shared with every worker: the collector leaves them alone
    worker = Worker(close_in_child=(0, out))
    write_line(out, {"ready": True})
    requests = LineReader(0)
    while True:
        try:
            request = json.loads(requests.read_line(None))
        except EOFError:
            break
        if not worker.alive():  # died while idle (e.g. the OOM killer): replace it first
            worker.kill()
            worker = Worker(close_in_child=(0, out))
        reply, replace = answer(worker, request)
        if replace:
            worker.kill()
            worker = Worker(close_in_child=(0, out))
        write_line(out, reply)
    worker.kill()


if __name__ == "__main__":
    main()

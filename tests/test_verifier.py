"""The math verifier: table-driven equivalences, exact numbers, the math-verify helper (timeouts,
start-up, caching, callers without a `__main__` guard), adversarial input, a timed fuzz run."""

import json
import os
import random
import signal
import string
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import treerpo
import verl_ext.reward as reward_module
from treerpo.reward import verifier
from treerpo.reward.verifier import gsm8k_answer, last_boxed, score_answer
from verl_ext.reward import compute_score

ROOT = Path(treerpo.__file__).resolve().parent.parent  # the tree under test, also for subprocesses
HANG = ("\\boxed{9^{9^{9^{9^{9}}}}}", "10^{10^{10^{10}}}")  # sympy runs for minutes on this pair

RIGHT = [
    ("\\boxed{\\frac{1}{2}}", "0.5"),
    ("\\boxed{0.5}", "\\frac{1}{2}"),
    ("\\boxed{1/2}", "\\frac12"),
    ("\\boxed{\\dfrac{1}{2}}", "\\frac{1}{2}"),
    ("\\boxed{[1, 2)}", "[1,2)"),
    ("\\boxed{(-\\infty, 3]}", "(-\\infty,3]"),
    ("\\boxed{90^\\circ}", "90"),
    ("\\boxed{90^{\\circ}}", "90°"),
    ("\\boxed{5\\text{ cm}}", "5"),
    ("\\boxed{\\$18.90}", "18.90"),
    ("\\boxed{1,000}", "1000"),
    ("\\boxed{\\text{Monday}}", "\\text{Monday}"),
    ("\\boxed{\\text{(C)}}", "\\text{(C)}"),
    ("\\boxed{x=5}", "5"),
    ("\\boxed{2\\sqrt{2}}", "\\sqrt{8}"),
    ("\\boxed{\\left( 3, \\frac{\\pi}{2} \\right)}", "\\left( 3, \\frac{\\pi}{2} \\right)"),
    ("first \\boxed{7} then \\boxed{8}", "8"),  # the last box counts
    ("\\boxed 5", "5"),
    ("\\boxed{\\{1,2\\}}", "\\{1,2\\}"),
    ("\\fbox{42}", "42"),
]
WRONG = [
    ("\\boxed{3}", "4"),
    ("\\boxed{\\frac{1}{3}}", "0.5"),
    ("\\boxed{[1, 2]}", "[1,2)"),
    ("\\boxed{\\text{Tuesday}}", "\\text{Monday}"),
    ("the answer is 4", "4"),  # no box
    ("\\boxed{4", "4"),  # unbalanced
    ("", "4"),
    ("\\boxed{}", "4"),
]


@pytest.mark.parametrize("response, truth", RIGHT)
def test_equivalent_answers_are_right(response, truth):
    assert score_answer(response, truth).correct


@pytest.mark.parametrize("response, truth", WRONG)
def test_wrong_answers_are_wrong(response, truth):
    assert not score_answer(response, truth).correct


def test_extraction():
    assert last_boxed("a \\boxed{\\frac{a}{b}} b") == "\\frac{a}{b}"
    assert last_boxed("\\boxed{{{x}}}") == "{{x}}"
    assert last_boxed("\\boxed{x") is None
    assert gsm8k_answer("blah\n#### 1,234") == "1234"


REWARD_KEYS = {"score", "acc", "pred", "verify_method", "verify_ms", "verify_timeout", "verify_timeouts_total",
               "bad_ground_truth", "reward_error"}


def test_reward_function_shape():
    out = compute_score("math500", "so \\boxed{0.5}", "\\frac12")
    assert set(out) == REWARD_KEYS
    assert {k: out[k] for k in ("score", "acc", "pred", "verify_method")} == {
        "score": 1.0, "acc": True, "pred": "0.5", "verify_method": "number"}
    assert isinstance(out["verify_ms"], float) and out["verify_ms"] >= 0
    assert out["verify_timeout"] == 0 and isinstance(out["verify_timeouts_total"], int)
    assert compute_score("x", "\\boxed{3}", "4", incorrect_score=-1.0)["score"] == -1.0
    assert set(compute_score("x", "no box", "4")) == REWARD_KEYS  # the same keys on every path
    assert set(compute_score("x", "\\boxed{4}", None)) == REWARD_KEYS
    assert out["bad_ground_truth"] == 0 and out["reward_error"] == 0


def test_a_reward_function_error_is_a_counted_logged_zero(monkeypatch, caplog):
    """A sample whose scoring raises scores incorrect_score with reward_error=1 and the same keys;
    the run goes on (verl would drop the sample and refill it, forever if every one raised)."""
    import verl_ext.reward as reward

    def boom(*a, **k):
        raise TypeError("unexpected input")

    monkeypatch.setattr(reward, "score_answer", boom)
    monkeypatch.setattr(reward, "_errors", 0)
    with caplog.at_level("ERROR", logger="verl_ext.reward"):
        out = [reward.compute_score("x", "\\boxed{4}", "4", incorrect_score=-1.0) for _ in range(3)]
    assert all(set(o) == REWARD_KEYS and o["score"] == -1.0 and o["reward_error"] == 1 for o in out)
    assert out[0]["verify_method"] == "reward_error"
    assert sum("reward function raised" in r.message for r in caplog.records) == 1  # logged once


def test_reward_extra_info_reports_latency_and_timeouts():
    """verl turns the extra keys into reward_extra_info: scalars only, a timeout visible in them."""
    ok = compute_score("x", "\\boxed{\\frac{\\sqrt{6}}{6}}", "\\frac{1}{\\sqrt{6}}", timeout=30.0)
    assert ok["acc"] and ok["verify_method"] == "math_verify" and ok["verify_timeout"] == 0
    before = ok["verify_timeouts_total"]
    hung = compute_score("x", *HANG, timeout=1.0)
    assert hung["verify_method"] == "timeout" and hung["verify_timeout"] == 1 and hung["score"] == 0.0
    assert hung["verify_timeouts_total"] == before + 1
    assert hung["verify_ms"] >= 1000.0
    for out in (ok, hung):
        assert all(isinstance(v, (bool, int, float, str)) for v in out.values())


ADVERSARIAL = [
    "\\boxed{" + "{" * 5000 + "}" * 4999,  # unbalanced, deep
    "\\boxed{" + "9^{" * 50 + "9" + "}" * 50 + "}",  # a tower sympy would try to evaluate
    "\\boxed{" + "1" * 999 + "}",
    "x" * (1 << 20) + "\\boxed{1}",  # 1 MB string
    "\\boxed{\\frac{\\frac{\\frac{1}{2}}{3}}{" * 200,
    "\\boxed{\\sqrt[" + "9" * 300 + "]{2}}",
    "\\boxed{}}}}}",
    "\\boxed{\\begin{pmatrix}" + "1&" * 400 + "1\\end{pmatrix}}",
    "\x00\\boxed{\x00}",
    "\\boxed{\\int_0^\\infty e^{-x^{" + "9" * 40 + "}} dx}",
]


def _bound(timeout: float) -> float:
    """The most a call may take by design: the budget is CPU seconds, stopped at WALL_FACTOR x it
    in wall time, plus the client's grace for the reply. On a loaded machine a fixed bound near the
    budget fails although nothing hangs (seen at load 5-8: 22 s for a 2 s budget)."""
    from treerpo.reward.client import HELPER_GRACE_S
    from treerpo.reward.helper import WALL_FACTOR

    return WALL_FACTOR * timeout + HELPER_GRACE_S


def test_adversarial_inputs_score_zero_fast():
    for s in ADVERSARIAL:
        t0 = time.perf_counter()
        v = score_answer(s, "2", timeout=2.0)
        assert time.perf_counter() - t0 < _bound(2.0)
        assert v.correct is False


def test_hang_is_cut_by_hard_timeout():
    t0 = time.perf_counter()
    v = score_answer(*HANG, timeout=1.0)
    assert not v.correct
    assert time.perf_counter() - t0 < _bound(1.0)
    assert score_answer("\\boxed{0.25}", "\\frac14").correct  # the helper restarts afterwards


def test_fuzz_1000_random_and_adversarial_strings_within_budget():
    rng = random.Random(0)
    alphabet = string.printable + "\\{}^_$°√∞"
    pieces = ["\\boxed{", "}", "{", "\\frac", "\\sqrt", "^", "_", "\\left(", "\\right)", "\\text{", "9", "x", "=",
              "\\infty", "[", ")", "\\pi", ",", "."]
    inputs = []
    for i in range(1000):
        if i % 3 == 0:
            s = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 200)))
        else:
            s = "".join(rng.choice(pieces) for _ in range(rng.randint(1, 60)))
        inputs.append(s)
    inputs += ADVERSARIAL
    truths = ["\\frac{1}{2}", "3", "x^2", "[1,2)", "\\text{yes}"]
    t0 = time.perf_counter()
    for i, s in enumerate(inputs):
        v = score_answer(s, truths[i % len(truths)], timeout=1.0)
        assert isinstance(v.correct, bool)
    assert time.perf_counter() - t0 < 240  # budget: well under the per-call timeout x calls


# ---- plain numbers: exact unless a decimal is involved ----------------------------------------------
EXACT_WRONG = [
    ("\\boxed{3628801}", "3628800"),  # 10! + 1: a relative tolerance would call these equal
    ("\\boxed{1000001}", "1000000"),
    ("\\boxed{-3628801}", "-3628800"),
    ("\\boxed{123456789012345678}", "123456789012345679"),
    ("\\boxed{\\frac{333333}{1000000}}", "\\frac{1}{3}"),  # fractions are exact too
    ("\\boxed{1000001/1000000}", "1"),
    ("\\boxed{\\frac{3628801}{2}}", "\\frac{3628800}{2}"),
]
DECIMAL_RIGHT = [  # a decimal is a rounded value: 6 significant digits, within its last digit
    ("\\boxed{0.333333}", "\\frac{1}{3}"),
    ("\\boxed{\\frac{2}{3}}", "0.666667"),
    ("\\boxed{3.1415927}", "3.14159265"),
    ("\\boxed{1.5000001}", "1.5"),
    ("\\boxed{\\frac{6}{4}}", "1.5"),  # equal values are equal in any form
    ("\\boxed{2.50}", "\\frac{5}{2}"),
]
DECIMAL_WRONG = [
    ("\\boxed{0.3333}", "\\frac{1}{3}"),  # off in the 5th digit
    ("\\boxed{3.1416}", "3.14159265"),
    ("\\boxed{3628800.5}", "3628801"),  # 6 digits agree, but .5 is not a rounding of 3628801
    ("\\boxed{2.0000001}", "2"),  # its last digit says it is not 2
]


@pytest.mark.parametrize("response, truth", EXACT_WRONG)
def test_integers_and_fractions_compare_exactly(response, truth):
    v = score_answer(response, truth, use_math_verify=False)
    assert (v.correct, v.method) == (False, "mismatch")


@pytest.mark.parametrize("response, truth", DECIMAL_RIGHT)
def test_decimals_match_within_tolerance(response, truth):
    v = score_answer(response, truth, use_math_verify=False)
    assert (v.correct, v.method) == (True, "number")


@pytest.mark.parametrize("response, truth", DECIMAL_WRONG)
def test_decimals_outside_tolerance_are_wrong(response, truth):
    assert not score_answer(response, truth, use_math_verify=False).correct


def test_random_distinct_integers_never_match():
    rng = random.Random(0)
    for _ in range(2000):
        a = rng.randint(-10**12, 10**12)
        b = a + rng.choice([-1, 1]) * rng.randint(1, 10)
        assert not score_answer(f"\\boxed{{{a}}}", str(b), use_math_verify=False).correct
        assert score_answer(f"\\boxed{{{a}}}", f"{a}.000", use_math_verify=False).correct


# ---- the math-verify helper ------------------------------------------------------------------------
def run_script(tmp_path: Path, code: str, timeout: float = 180.0) -> list:
    """Run `code` as a script file (its own __main__) against the tree under test; its last stdout line, as JSON."""
    script = tmp_path / "caller.py"
    script.write_text(code)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=timeout)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


NO_GUARD = r'''
import json
from treerpo.reward.verifier import score_answer

# no `if __name__ == "__main__":` guard: a helper that re-imports this file would run this again
v = score_answer(r"\boxed{\frac{\sqrt{2}}{2}}", r"\frac{1}{\sqrt{2}}", timeout=3.0)
print(json.dumps([v.method, v.correct]))
'''


def test_script_without_main_guard_gets_math_verify_verdicts(tmp_path):
    assert run_script(tmp_path, NO_GUARD) == ["math_verify", True]


HEAVY_CALLER = r'''
import json
import torch  # a heavy top-level import, as in verl's workers: must not slow the helper's start

from treerpo.reward.verifier import score_answer

if __name__ == "__main__":
    # each budget is far below the helper's start-up, so start-up must not be charged to any call
    first = score_answer(r"\boxed{\frac{\sqrt{2}}{2}}", r"\frac{1}{\sqrt{2}}", timeout=2.0)
    hang = score_answer(r"\boxed{9^{9^{9^{9^{9}}}}}", "10^{10^{10^{10}}}", timeout=1.0)
    after = score_answer(r"\boxed{2\sqrt{5}}", r"\sqrt{20}", timeout=2.0)  # helper restarted meanwhile
    print(json.dumps([first.method, hang.method, after.method]))
'''


def test_timeout_covers_the_comparison_not_helper_startup(tmp_path):
    assert run_script(tmp_path, HEAVY_CALLER) == ["math_verify", "timeout", "math_verify"]


def proc_stat(pid: int):
    """(state, parent pid) of a live process, or None."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return fields[0], int(fields[1])


def comparing_process(helper_pid: int) -> int:
    """The process that runs the comparisons: the helper's child if it has one, else the helper."""
    stats = {int(d): proc_stat(int(d)) for d in os.listdir("/proc") if d.isdigit()}
    children = [pid for pid, stat in stats.items() if stat and stat[1] == helper_pid]
    assert len(children) <= 1
    return children[0] if children else helper_pid


def test_timed_out_verdict_is_not_cached():
    """A pair that once timed out (here: its process frozen) is compared afresh next time, same arguments."""
    assert score_answer("\\boxed{2\\sqrt{3}}", "\\sqrt{12}", timeout=60.0).correct  # a warm helper
    frozen = comparing_process(verifier._helper.proc.pid)
    parent = proc_stat(frozen)[1]
    os.kill(frozen, signal.SIGSTOP)  # it can no longer answer
    try:
        pair = ("\\boxed{\\frac{\\sqrt{3}}{3}}", "\\frac{1}{\\sqrt{3}}")
        first = score_answer(*pair, timeout=0.5)
    finally:
        if proc_stat(frozen) == ("T", parent):  # still there, still frozen: the verifier did not kill it
            os.kill(frozen, signal.SIGKILL)
    assert first.method == "timeout" and not first.correct
    second = score_answer(*pair, timeout=0.5)
    assert (second.method, second.correct) == ("math_verify", True)


def test_timeout_is_counted_and_costs_no_restart():
    """After a timeout the next comparison is served at once: the warm helper forks a new worker."""
    assert score_answer("\\boxed{\\{5, 1\\}}", "\\{1, 5\\}", timeout=60.0).correct  # a warm helper
    before = verifier.verifier_stats()
    hung = score_answer(*HANG, timeout=0.5)
    assert hung.method == "timeout" and 500 <= hung.ms < 8000  # 0.5 CPU-s; wall backstop 5 s
    t0 = time.perf_counter()
    assert score_answer("\\boxed{\\{3, 1\\}}", "\\{1, 3\\}", timeout=30.0).correct
    assert time.perf_counter() - t0 < 5  # no interpreter start-up, no math-verify import
    after = verifier.verifier_stats()
    assert after["timeouts"] == before["timeouts"] + 1
    assert after["helper_starts"] == before["helper_starts"]  # the same server throughout
    assert after["helper_errors"] == before["helper_errors"]


def test_starved_comparison_is_not_a_timeout():
    """The budget is CPU time: a comparison that gets no CPU for a while (a busy machine, here
    its process frozen for 2 s) still gets its verdict within a 1 s budget."""
    assert score_answer("\\boxed{3\\sqrt{7}}", "\\sqrt{63}", timeout=60.0).correct  # a warm helper
    frozen = comparing_process(verifier._helper.proc.pid)
    parent = proc_stat(frozen)[1]

    def thaw():
        if proc_stat(frozen) == ("T", parent):
            os.kill(frozen, signal.SIGCONT)

    os.kill(frozen, signal.SIGSTOP)
    timer = threading.Timer(2.0, thaw)
    timer.start()
    try:
        v = score_answer("\\boxed{\\frac{\\sqrt{7}}{7}}", "\\frac{1}{\\sqrt{7}}", timeout=1.0)
    finally:
        timer.join()
        thaw()
    assert (v.method, v.correct) == ("math_verify", True)
    assert v.ms >= 1900


def test_threads_share_the_helper():
    """verl's reward loop calls compute_score from executor threads: they take turns, all verdicts right."""
    pairs = [(f"\\boxed{{{k}\\sqrt{{{p}}}}}", f"\\sqrt{{{k * k * p}}}") for k in range(2, 6) for p in (2, 3, 5, 7)]
    results = [None] * len(pairs)

    def score(i):
        results[i] = score_answer(*pairs[i], timeout=30.0)

    threads = [threading.Thread(target=score, args=(i,)) for i in range(len(pairs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [(v.method, v.correct) for v in results] == [("math_verify", True)] * len(pairs)


def test_forked_child_gets_its_own_helper():
    """A process forked after the helper started (e.g. a fork-based pool) must not share its pipes."""
    assert score_answer("\\boxed{8\\sqrt{3}}", "\\sqrt{192}", timeout=60.0).correct  # parent's helper warm
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report and leave without running pytest's teardown
        try:
            v = score_answer("\\boxed{7\\sqrt{2}}", "\\sqrt{98}", timeout=30.0)  # not cached anywhere
            os.write(w, json.dumps([v.method, v.correct]).encode())
        finally:
            os._exit(0)
    os.close(w)
    with os.fdopen(r) as f:
        out = f.read()
    os.waitpid(pid, 0)
    assert out and json.loads(out) == ["math_verify", True]
    assert score_answer("\\boxed{6\\sqrt{2}}", "\\sqrt{72}", timeout=30.0).correct  # the parent's still works


# ---- ground truths that are no answer; empty boxes; scientific notation ------------------------------
NAN, INF = float("nan"), float("inf")
BAD_TRUTHS = [  # (a response that would match the ground truth taken as text, the ground truth)
    ("\\boxed{None}", None),
    ("\\boxed{nan}", NAN),
    ("\\boxed{NaN}", np.float64("nan")),
    ("\\boxed{}", ""),
    ("\\boxed{}", "   "),
    ("\\boxed{ }", "\t\n"),
    ("\\boxed{}", "\\boxed{}"),
    ("\\boxed{}", "\\text{}"),
    ("\\boxed{}", "$ $"),
    ("\\boxed{True}", True),
    ("\\boxed{True}", np.bool_(True)),
    ("\\boxed{inf}", INF),
    ("\\boxed{-inf}", -INF),
    ("\\boxed{{'value': '3'}}", {"value": "3"}),
    ("\\boxed{[1]}", [1]),
    ("\\boxed{['1']}", np.array(["1"])),
    ("\\boxed{None}", "None"),  # a missing cell written as text (str(None), pandas' astype(str))
    ("\\boxed{nan}", "nan"),
    ("\\boxed{NULL}", "null"),
    ("\\boxed{<NA>}", "<NA>"),
    ("\\boxed{None}", "\\boxed{None}"),
]


@pytest.mark.parametrize("response, truth", BAD_TRUTHS)
def test_a_ground_truth_that_is_no_answer_never_matches(response, truth):
    v = score_answer(response, truth, use_math_verify=False)
    assert (v.correct, v.method) == (False, "bad_ground_truth")
    v = score_answer(response, truth, timeout=10.0)  # math-verify never gets to judge it either
    assert (v.correct, v.method) == (False, "bad_ground_truth")


EMPTY_BOXES = ["\\boxed{}", "\\boxed{ }", "\\boxed{\\text{}}", "\\boxed{\\$}", "so \\boxed{4} or rather \\boxed{}"]


@pytest.mark.parametrize("response", EMPTY_BOXES)
@pytest.mark.parametrize("truth", ["\\text{ }", "$$", "\\%"])
def test_an_empty_box_never_earns_a_ground_truth_that_normalises_to_nothing(response, truth):
    v = score_answer(response, truth, timeout=10.0)
    assert (v.correct, v.method) == (False, "bad_ground_truth")


@pytest.mark.parametrize("response", EMPTY_BOXES)
@pytest.mark.parametrize("truth", ["4", "{}", "\\{\\}", "\\emptyset", "\\text{no solution}"])
def test_an_empty_box_is_wrong_before_any_comparison(response, truth):
    v = score_answer(response, truth, timeout=10.0)
    assert (v.correct, v.method) == (False, "empty_box")


@pytest.mark.parametrize("response, truth", [
    ("\\boxed{1000}", 1000),
    ("\\boxed{1000}", 1000.0),
    ("\\boxed{1000}", np.int64(1000)),
    ("\\boxed{1000}", np.float64(1000.0)),
    ("\\boxed{-3}", -3.0),
    ("\\boxed{100000000000000000000}", 1e20),
    ("\\boxed{0.1}", 0.1),
    ("\\boxed{0.5}", np.float32(0.5)),
    ("\\boxed{0.3}", 0.1 + 0.2),
    ("\\boxed{0.00000015}", 1.5e-7),
])
def test_a_finite_number_ground_truth_is_its_value(response, truth):
    v = score_answer(response, truth, use_math_verify=False)
    assert v.correct, v


@pytest.mark.parametrize("response, truth", [("\\boxed{1001}", 1000.0), ("\\boxed{1000.5}", 1000),
                                             ("\\boxed{99999999999999999999}", 1e20)])
def test_a_number_ground_truth_keeps_the_exact_rules(response, truth):
    assert not score_answer(response, truth, use_math_verify=False).correct


SCI_RIGHT = [
    ("\\boxed{1e3}", "1000"),
    ("\\boxed{1E3}", "1000"),
    ("\\boxed{1e+3}", "1000"),
    ("\\boxed{1000}", "1e3"),  # the ground truth in scientific notation
    ("\\boxed{1.5e-3}", "0.0015"),
    ("\\boxed{1.5e-3}", "\\frac{3}{2000}"),
    ("\\boxed{-2.5e2}", "-250"),
    ("\\boxed{2\\times10^{3}}", "2000"),
    ("\\boxed{2 \\times 10^{3}}", "2000"),
    ("\\boxed{2 \\cdot 10^3}", "2000"),
    ("\\boxed{2*10^3}", "2000"),
    ("\\boxed{2×10^3}", "2000"),
    ("\\boxed{3.0\\times10^{-2}}", "0.03"),
    ("\\boxed{1e20}", "100000000000000000000"),
    ("\\boxed{3.14159e0}", "3.14159265"),  # a decimal: 6 significant digits, within its last digit
]
SCI_WRONG = [
    ("\\boxed{1e3}", "1001"),  # 1e3 is exactly 1000
    ("\\boxed{1.5e3}", "1499"),  # 1.5e3 is the integer 1500, not a rounding
    ("\\boxed{1e20}", "100000000000000000001"),
    ("\\boxed{1.5e-3}", "0.00151"),  # 0.0015 is off by 1e-5 > the 6-digit tolerance
    ("\\boxed{1e-3}", "0.0012"),
    ("\\boxed{2\\times10^{3}}", "20000"),
    ("\\boxed{3.1416e0}", "3.14159265"),  # off in the 5th digit, as 3.1416 is
    ("\\boxed{1e999999999}", "1"),  # too big an exponent to expand: not a plain number, and quick
]


@pytest.mark.parametrize("response, truth", SCI_RIGHT)
def test_scientific_notation_is_a_number(response, truth):
    v = score_answer(response, truth, use_math_verify=False)
    assert (v.correct, v.method) == (True, "number"), v


@pytest.mark.parametrize("response, truth", SCI_WRONG)
def test_scientific_notation_keeps_the_exact_and_decimal_rules(response, truth):
    t0 = time.perf_counter()
    assert not score_answer(response, truth, use_math_verify=False).correct
    assert time.perf_counter() - t0 < 1.0


@pytest.fixture
def fresh_warnings(monkeypatch, caplog):
    """compute_score's once-per-value warnings, reset for this test, and captured."""
    monkeypatch.setattr(reward_module, "_warned", set())
    caplog.set_level("WARNING", logger="verl_ext.reward")
    return caplog


def test_reward_for_a_bad_ground_truth_is_a_counted_logged_zero(fresh_warnings):
    outs = [compute_score("src_a", "\\boxed{None}", None, incorrect_score=-1.0),
            compute_score("src_a", "\\boxed{None}", None, incorrect_score=-1.0),  # the same value: not logged again
            compute_score("src_a", "\\boxed{nan}", NAN, incorrect_score=-1.0),
            compute_score("src_a", "\\boxed{nan}", float("nan"), incorrect_score=-1.0),  # another NaN object, same repr
            compute_score("src_b", "\\boxed{}", "", incorrect_score=-1.0),
            compute_score("src_b", "no box at all", "  ", incorrect_score=-1.0)]
    for out in outs:
        assert set(out) == REWARD_KEYS
        assert (out["score"], out["acc"], out["verify_method"], out["bad_ground_truth"]) == (
            -1.0, False, "bad_ground_truth", 1)
    good = compute_score("src_a", "\\boxed{4}", "4", incorrect_score=-1.0)
    assert (good["score"], good["bad_ground_truth"]) == (1.0, 0)
    messages = [r.getMessage() for r in fresh_warnings.records if r.name == "verl_ext.reward"]
    assert len(messages) == 4, messages  # None@src_a, nan@src_a, ''@src_b, '  '@src_b
    assert "None" in messages[0] and "'src_a'" in messages[0]
    assert "nan" in messages[1] and "'src_a'" in messages[1]
    assert "''" in messages[2] and "'src_b'" in messages[2]


def test_bad_ground_truth_warnings_are_capped(fresh_warnings, monkeypatch):
    monkeypatch.setattr(reward_module, "MAX_BAD_TRUTH_WARNINGS", 2)
    for k in range(5):
        assert compute_score("s", "\\boxed{1}", {"k": k})["bad_ground_truth"] == 1
    messages = [r.getMessage() for r in fresh_warnings.records if r.name == "verl_ext.reward"]
    assert len(messages) == 3 and "later ones are counted" in messages[2], messages

"""Verifier throughput in one process, with the math-verify helper warm (its start-up is timed
separately: it is charged to no call).

1. The mix: --n distinct answers (no cache hits): 40% string-equal after normalisation, 25%
   equivalent forms (half plain fractions/decimals, decided exactly without math-verify, half
   sqrt forms that need math-verify), 20% wrong numbers, 10% no box, 5% adversarial.
   Target: >= 500 answers/s overall, 0 timeouts. Baseline, same run: the same mix with
   math-verify switched off (the fast paths alone).
2. The math-verify path alone: --n-mv distinct answers that only math-verify can decide
   (rationalised and simplified roots, intervals, sets, polynomials; a third of them wrong),
   through score_answer (helper, pipes, timeout). Baseline, same run: the same comparisons made
   by math-verify inside this process, with no helper; the ratio is the helper's overhead.

    python -m benchmarks.bench_verifier [--n 10000] [--n-mv 200] [--timeout 3]
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import time
from collections import Counter
from pathlib import Path

from treerpo.reward import verifier
from treerpo.reward.cases import math_verify_cases
from treerpo.reward.helper import WARM_UP, equivalent
from treerpo.reward.verifier import score_answer, start_helper, verifier_stats


def make_cases(n: int, seed: int = 0):
    rng = random.Random(seed)
    cases = []
    for i in range(n):
        a, b = rng.randint(1, 10**6), rng.randint(2, 999)
        r = rng.random()
        if r < 0.40:
            cases.append((f"Thus the answer is \\boxed{{{a}}}.", f"{a}"))
        elif r < 0.65:
            if rng.random() < 0.5:
                cases.append((f"\\boxed{{\\frac{{{a}}}{{{b}}}}}", f"{a / b:.12g}" if (a / b) * 1e6 % 1 == 0
                              else f"\\dfrac{{{2 * a}}}{{{2 * b}}}"))
            else:
                cases.append((f"\\boxed{{{a}\\sqrt{{{b}}}}}", f"\\sqrt{{{a * a * b}}}"))
        elif r < 0.85:
            cases.append((f"\\boxed{{{a}}}", f"{a + b}"))
        elif r < 0.95:
            cases.append((f"I think it is {a}.", f"{a}"))
        else:
            cases.append(("\\boxed{" + "{" * (a % 500) + f"{a}", f"{a}"))
    return cases


def helper_cpu_s() -> float:
    """CPU seconds used so far by the helper's processes (its server and worker), from /proc."""
    def stat(pid):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return 0, 0.0
        return int(fields[1]), (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    server = verifier._helper.proc.pid
    pids = [server] + [int(d) for d in os.listdir("/proc") if d.isdigit() and stat(int(d))[0] == server]
    return sum(stat(pid)[1] for pid in pids)


def timed_scores(cases, timeout: float, use_math_verify: bool = True):
    """(verdicts, wall seconds, CPU seconds of this process and the helper, timeouts during the run)."""
    before = verifier_stats()["timeouts"]
    cpu0, t0 = time.process_time() + helper_cpu_s(), time.perf_counter()
    verdicts = [score_answer(r, g, timeout=timeout, use_math_verify=use_math_verify) for r, g in cases]
    wall, cpu = time.perf_counter() - t0, time.process_time() + helper_cpu_s() - cpu0
    return verdicts, wall, cpu, verifier_stats()["timeouts"] - before


def in_process_rates(cases) -> tuple[float, float]:
    """Answers per second and per CPU-second of the same comparisons by math-verify in this
    process (no helper, no timeout)."""
    for gold, pred in WARM_UP:  # as the helper does before it says it is ready
        equivalent(gold, pred)
    cpu0, t0 = time.process_time(), time.perf_counter()
    for response, gold in cases:
        equivalent(gold, response[len("\\boxed{"):-1])
    return len(cases) / (time.perf_counter() - t0), len(cases) / (time.process_time() - cpu0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=10_000, help="answers in the mix")
    ap.add_argument("--n-mv", type=int, default=200, help="answers on the math-verify path alone")
    ap.add_argument("--timeout", type=float, default=3.0)
    args = ap.parse_args()
    logging.disable(logging.CRITICAL)  # math-verify's "timeout is disabled" warning, in-process baseline

    t0 = time.perf_counter()
    start_helper(wait=True)
    print(f"helper start-up: {time.perf_counter() - t0:.2f} s (once per process, charged to no call)")

    cases = make_cases(args.n)
    verdicts, secs, cpu, timeouts = timed_scores(cases, args.timeout)
    _, fast_secs, _, _ = timed_scores(cases, args.timeout, use_math_verify=False)
    rate, fast_rate = args.n / secs, args.n / fast_secs
    met = "met" if rate >= 500 and timeouts == 0 else "NOT met"
    print(f"mix: {args.n} answers in {secs:.2f} s: {rate:.0f} answers/s, timeouts {timeouts} "
          f"(target >= 500 answers/s, 0 timeouts: {met})")
    print(f"  CPU {cpu:.2f} s (this process + helper): {args.n / cpu:.0f} answers per CPU-second, "
          f"the rate on idle cores (caller and helper take turns, so wall = CPU there)")
    print("  by path:", dict(Counter(v.method for v in verdicts)), f"correct {sum(v.correct for v in verdicts)}")
    print(f"  baseline, same mix without math-verify: {fast_rate:.0f} answers/s; "
          f"mix / baseline = {rate / fast_rate:.3f}x")

    mv_cases = [(f"\\boxed{{{pred}}}", gold) for gold, pred, _ in math_verify_cases(args.n_mv, seed=1)]
    mv_verdicts, mv_secs, mv_cpu, mv_timeouts = timed_scores(mv_cases, args.timeout)
    mv_rate = args.n_mv / mv_secs
    ms = sorted(v.ms for v in mv_verdicts)
    print(f"math-verify path alone: {args.n_mv} answers in {mv_secs:.2f} s: {mv_rate:.1f} answers/s, "
          f"timeouts {mv_timeouts}, latency median {ms[len(ms) // 2]:.0f} ms, max {ms[-1]:.0f} ms")
    print(f"  CPU {mv_cpu:.2f} s: {args.n_mv / mv_cpu:.1f} answers per CPU-second;",
          "by path:", dict(Counter(v.method for v in mv_verdicts)))
    base, base_cpu = in_process_rates(mv_cases)
    print(f"  baseline, same comparisons by math-verify in this process: {base:.1f} answers/s, "
          f"{base_cpu:.1f} per CPU-second; helper / baseline = {mv_rate / base:.2f}x wall, "
          f"{args.n_mv / mv_cpu / base_cpu:.2f}x CPU")
    stats = verifier_stats()
    print(f"helper totals: {stats['timeouts']} timeouts, {stats['helper_errors']} errors, "
          f"{stats['helper_starts']} start(s), {stats['math_verify_calls']} comparisons")


if __name__ == "__main__":
    main()

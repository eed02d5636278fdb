"""Verifier throughput on 10,000 mixed, distinct answers (no cache hits), one process.

Mix: 40% string-equal after normalisation, 25% equivalent forms that need math-verify
(fractions vs decimals, sqrt forms), 20% wrong answers, 10% no box, 5% adversarial.

    python -m benchmarks.bench_verifier [--n 10000]
"""

from __future__ import annotations

import argparse
import random
import time
from collections import Counter

from treerpo.verifier import score_answer


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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--timeout", type=float, default=3.0)
    args = ap.parse_args()
    cases = make_cases(args.n)
    score_answer("\\boxed{1/2}", "0.5")  # start the math-verify helper outside the timing
    t0 = time.perf_counter()
    verdicts = [score_answer(r, g, timeout=args.timeout) for r, g in cases]
    secs = time.perf_counter() - t0
    methods = Counter(v.method for v in verdicts)
    print(f"{args.n} answers in {secs:.2f} s: {args.n / secs:.0f} answers/s (target >= 500)")
    print("by path:", dict(methods), f"correct {sum(v.correct for v in verdicts)}")


if __name__ == "__main__":
    main()

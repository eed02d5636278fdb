"""Answers only math-verify can judge, with their true verdicts: the verifier's load test
(tests/test_verifier_load.py) and benchmark (benchmarks/bench_verifier.py) both score them.

Five forms, in turn: a rationalised root, a simplified root, an interval, a set, a polynomial.
Neither the string comparison nor the exact-number path decides any of them, so every answer
reaches math-verify; a third of them (every third case) are wrong. All pairs are distinct, so no
verdict comes from the verifier's cache.
"""

from __future__ import annotations

import random

ROOTS = [2, 3, 5, 6, 7, 10, 11, 13, 14, 15, 17, 19, 21, 22, 23]  # square-free


def math_verify_cases(n: int, seed: int = 0) -> list[tuple[str, str, bool]]:
    """`n` distinct (gold, answer, is the answer right) triples, drawn from `seed`."""
    rng = random.Random(seed)
    cases, seen = [], set()
    while len(cases) < n:
        i = len(cases)
        a, c, b = rng.randint(2, 999), rng.randint(2, 999), rng.choice(ROOTS)
        kind = i % 5
        if kind == 0:
            gold = f"\\frac{{{a}\\sqrt{{{b}}}}}{{{b}}}"
            right, wrong = f"\\frac{{{a}}}{{\\sqrt{{{b}}}}}", f"\\frac{{{a + 1}}}{{\\sqrt{{{b}}}}}"
        elif kind == 1:
            gold, right, wrong = f"\\sqrt{{{a * a * b}}}", f"{a}\\sqrt{{{b}}}", f"{a + 1}\\sqrt{{{b}}}"
        elif kind == 2:
            gold = f"[\\frac{{1}}{{{c}}}, {a})"
            right, wrong = f"\\left[\\frac{{2}}{{{2 * c}}}, {a}\\right)", f"[\\frac{{1}}{{{c}}}, {a}]"
        elif kind == 3:
            gold = f"\\{{{a}, {c}, {a + c}\\}}"
            right, wrong = f"\\{{{a + c}, {a}, {c}\\}}", f"\\{{{a}, {c}, {a + c + 1}\\}}"
        else:
            gold, right, wrong = f"(x+{a})^2", f"x^2+{2 * a}x+{a * a}", f"x^2+{a}x+{a * a}"
        is_right = i % 3 != 0
        pred = right if is_right else wrong
        if (gold, pred) not in seen:
            seen.add((gold, pred))
            cases.append((gold, pred, is_right))
    return cases

r"""A synthetic multi-step arithmetic task for the local CPU mode, with a verifiable answer.

A problem is a start number and a chain of operations; the answer is the value after all of
them, so every intermediate result matters (a wrong step makes every later one wrong):

    prompt    "7 +5 *3 -4"
    solution  "7+5=12\n12*3=36\n36-4=32\n\boxed{32}"      (one line per step, then the box)

Problems are drawn from a seeded generator; a step's operand is 1-9 and intermediate values
stay in 0..99 (an operation that would leave that range is redrawn).
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    start: int
    ops: tuple[tuple[str, int], ...]

    @property
    def prompt(self) -> str:
        return " ".join([str(self.start)] + [f"{op}{v}" for op, v in self.ops])

    def steps(self) -> list[tuple[int, str, int, int]]:
        out, x = [], self.start
        for op, v in self.ops:
            y = apply(x, op, v)
            out.append((x, op, v, y))
            x = y
        return out

    @property
    def answer(self) -> str:
        return str(self.steps()[-1][3] if self.ops else self.start)

    @property
    def solution(self) -> str:
        lines = [f"{x}{op}{v}={y}" for x, op, v, y in self.steps()]
        return "\n".join(lines + [f"\\boxed{{{self.answer}}}"])


def apply(x: int, op: str, v: int) -> int:
    return x + v if op == "+" else x - v if op == "-" else x * v


def make_problem(rng: random.Random, n_steps: int = 2) -> Problem:
    x = rng.randint(1, 9)
    start, ops = x, []
    while len(ops) < n_steps:
        op, v = rng.choice("+-*"), rng.randint(1, 9)
        y = apply(x, op, v)
        if 0 <= y <= 99:
            ops.append((op, v))
            x = y
    return Problem(start, tuple(ops))


def problems(seed: int, n: int, n_steps: int = 2, exclude: frozenset[str] | set[str] = frozenset(),
             distinct: bool = False) -> list[Problem]:
    """`n` problems from a seeded stream, skipping any whose prompt is in `exclude` (e.g. a held-out
    set) and, with `distinct`, any already drawn (a held-out set counts each problem once)."""
    rng = random.Random(seed)
    out: list[Problem] = []
    seen: set[str] = set()
    while len(out) < n:
        p = make_problem(rng, n_steps)
        if p.prompt not in exclude and not (distinct and p.prompt in seen):
            out.append(p)
            seen.add(p.prompt)
    return out


DATA_SOURCE = "arith"


def verl_row(p: Problem, split: str, index: int, agent_name: str | None = None) -> dict:
    """One row in verl's RLHFDataset format (the shape `data_prep` writes for MATH)."""
    row = {
        "data_source": DATA_SOURCE,
        "prompt": [{"role": "user", "content": p.prompt}],
        "ability": "math",
        "reward_model": {"style": "rule", "ground_truth": p.answer},
        "extra_info": {"split": split, "index": index},
    }
    if agent_name is not None:
        row["agent_name"] = agent_name
    return row

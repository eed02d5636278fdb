r"""A synthetic multi-step arithmetic task for the local CPU mode, with a verifiable answer.

A problem is a start number and a chain of operations; the answer is the value after all of
them, so every intermediate result matters (a wrong step makes every later one wrong):

    prompt    "7 +5 *3 -4"
    solution  "7+5=12\n12*3=36\n36-4=32\n\boxed{32}"      (one line per step, then the box)

Problems are drawn from a seeded generator; a step's operand is 1-9 and intermediate values
stay in 0..99 (an operation that would leave that range is redrawn). A problem's number of
operations is fixed (`n_steps=2`) or drawn uniformly from a range (`n_steps=(3, 5)`).

Two tasks use it (`TASKS`):

    arith   2 operations: the quickstart's task (`treerpo train`), one held-out set `arith`
    chains  3-5 operations, each line one decision: the miniature reproduction's task. Its
            validation sets rise in difficulty, `chain3`, `chain4`, `chain5`, and `chain6` has
            longer chains than any training problem (out of distribution)
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


def make_problem(rng: random.Random, n_steps: int | tuple[int, int] = 2) -> Problem:
    if not isinstance(n_steps, int):
        n_steps = rng.randint(*n_steps)
    x = rng.randint(1, 9)
    start, ops = x, []
    while len(ops) < n_steps:
        op, v = rng.choice("+-*"), rng.randint(1, 9)
        y = apply(x, op, v)
        if 0 <= y <= 99:
            ops.append((op, v))
            x = y
    return Problem(start, tuple(ops))


def problems(seed: int, n: int, n_steps: int | tuple[int, int] = 2, exclude: frozenset[str] | set[str] = frozenset(),
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


@dataclass(frozen=True)
class ValSet:
    """A held-out validation set: verl's `data_source` (so verl reports `val-core/<name>/acc/...`),
    the operations per problem, the number of problems, and its stream's seed offset."""

    name: str
    ops: int
    size: int

    def problems(self, seed: int) -> list[Problem]:
        """The set's problems for a run seed: a seeded stream of distinct prompts of its own."""
        return problems(VAL_SEED + 1000 * self.ops + seed, self.size, self.ops, distinct=True)


VAL_SEED = 50_000  # validation streams: apart from the warm-up's (10_000 + seed) and RL's (20_000 + seed)


@dataclass(frozen=True)
class Task:
    """What a run trains on and validates on."""

    name: str
    train_ops: int | tuple[int, int]  # operations per training problem (warm-up and RL)
    val_sets: tuple[ValSet, ...] = ()  # the reproduction's sets; empty: one set `arith` (warmup.held_out_problems)
    max_response_tokens: int = 40  # enough for the longest worked solution of any set, with EOS


TASKS = {
    "arith": Task("arith", 2),
    "chains": Task("chains", (3, 5), (ValSet("chain3", 3, 128), ValSet("chain4", 4, 128), ValSet("chain5", 5, 128),
                                       ValSet("chain6", 6, 128)), max_response_tokens=64),
}
OOD_SETS = {"chain6"}  # validation sets with longer chains than any training problem


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

"""Per-problem validation outcomes from verl's dumps, and the paired change between two validations.

With `trainer.validation_data_dir=DIR`, verl writes every validation's samples to
`DIR/<step>.jsonl`, one line per sample: `input` (the prompt as text), `output`, `gts`, `score`
(verl/trainer/ppo/v1/trainer_base.py, `_write_generations`). Two validations of the same
problems can then be compared problem by problem rather than by their means:

    gained  problems wrong at the first validation and right at the last
    lost    problems right at the first and wrong at the last

Under "the policy did not change its chance on any problem", each changed problem is a gain or
a loss with probability 1/2, so the exact two-sided sign test (McNemar's test) gives

    p = min(1, 2 * P[Binomial(gained + lost, 1/2) <= min(gained, lost)])

the probability of a split at least this lopsided from resampling alone. With the tiny run's
seeded validation (verl_ext.seeded_agent) an unchanged policy resamples the same answers, so
problems change only where the policy's probabilities moved.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Optional


def outcomes(path: Path) -> dict[str, float]:
    """{prompt text: mean score over its samples} of one validation dump."""
    scores: dict[str, list[float]] = {}
    for line in Path(path).read_text().splitlines():
        if line.strip():
            rec = json.loads(line)
            scores.setdefault(rec["input"], []).append(float(rec["score"]))
    return {k: sum(v) / len(v) for k, v in scores.items()}


def sign_test_p(gained: int, lost: int) -> float:
    """Exact two-sided sign test of `gained` against `lost` changed pairs (1.0 when none changed)."""
    n = gained + lost
    tail = sum(math.comb(n, k) for k in range(min(gained, lost) + 1)) / 2**n
    return min(1.0, 2 * tail)


def paired_change(first: dict[str, float], last: dict[str, float], right: float = 0.5) -> dict:
    """Problems gained and lost between two validations of the same problems (a problem counts as
    right where its mean score exceeds `right`), and the sign test's p-value."""
    missing = first.keys() ^ last.keys()
    if missing:
        raise ValueError(f"the two validations hold different problems ({len(missing)} in one only), "
                         f"e.g. {sorted(missing)[0]!r}")
    gained = sum(first[k] <= right < last[k] for k in first)
    lost = sum(last[k] <= right < first[k] for k in first)
    return {"problems": len(first), "gained": gained, "lost": lost, "p_value": sign_test_p(gained, lost)}


def run_change(val_dir: Path) -> Optional[dict]:
    """The paired change from a run's first validation dump to its last (None with fewer than two)."""
    dumps = sorted(Path(val_dir).glob("*.jsonl"), key=lambda p: int(p.stem)) if Path(val_dir).is_dir() else []
    if len(dumps) < 2:
        return None
    change = paired_change(outcomes(dumps[0]), outcomes(dumps[-1]))
    return {"from_step": int(dumps[0].stem), "to_step": int(dumps[-1].stem), **change}

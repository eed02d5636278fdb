"""The miniature's data: verl parquet files of the bundled arithmetic task for one run."""

from __future__ import annotations

from pathlib import Path

from treerpo.tiny.recipe import SEEDED_AGENT, TinyRun
from treerpo.tiny.task import problems, verl_row


def write_data(run: TinyRun, data_dir: Path) -> None:
    """train.parquet: enough problems for every step (held-out prompts excluded); val.parquet: the
    `val_problems` held-out problems (the warm-up never trained on them either), sampled flat by
    every estimator, each with its own fixed vLLM seed (`seeded_single_turn_agent`, verl's
    single-turn agent plus the seed: every validation of the run draws the same random numbers
    for a problem, so the curve shows the policy's change rather than resampling noise)."""
    import pandas as pd

    from treerpo.tiny.warmup import held_out_problems

    data_dir.mkdir(parents=True, exist_ok=True)
    held_out = held_out_problems(run.warmup_config())
    exclude = frozenset(p.prompt for p in held_out)
    train = problems(20_000 + run.seed, run.steps * run.prompts_per_step, run.task_steps, exclude=exclude)
    pd.DataFrame([verl_row(p, "train", i) for i, p in enumerate(train)]).to_parquet(data_dir / "train.parquet")
    pd.DataFrame([verl_row(p, "test", i, agent_name=SEEDED_AGENT) for i, p in enumerate(held_out)]).to_parquet(
        data_dir / "val.parquet")

"""The miniature's data: verl parquet files of the bundled arithmetic task for one run.

    train.parquet   enough problems for every step, drawn from the seed's training stream with
                    every held-out prompt left out (the warm-up never trained on those either)
    val.parquet     `arith`: the `val_problems` held-out problems (data_source `arith`)
    <set>.parquet   `chains`: one file per validation set (chain3 ... chain6), data_source = the
                    set's name, so verl reports `val-core/<set>/acc/mean@1` for each

Validation rows are sampled flat by every estimator, each with its own fixed vLLM seed
(`seeded_single_turn_agent`, verl's single-turn agent plus the seed): every validation of a run
draws the same random numbers for a problem, so the curve shows the policy's change rather than
resampling noise.
"""

from __future__ import annotations

from pathlib import Path

from treerpo.tiny.recipe import SEEDED_AGENT, TinyRun
from treerpo.tiny.task import problems, verl_row


def write_data(run: TinyRun, data_dir: Path) -> None:
    import pandas as pd

    from treerpo.tiny.warmup import excluded_prompts, held_out_problems, train_ops, val_sets

    data_dir.mkdir(parents=True, exist_ok=True)
    cfg = run.warmup_config()
    train = problems(20_000 + run.seed, run.steps * run.prompts_per_step, train_ops(cfg),
                     exclude=excluded_prompts(cfg))
    pd.DataFrame([verl_row(p, "train", i) for i, p in enumerate(train)]).to_parquet(data_dir / "train.parquet")
    sets = val_sets(cfg) or {"val": held_out_problems(cfg)}
    for name, probs in sets.items():
        rows = [verl_row(p, "test", i, agent_name=SEEDED_AGENT) for i, p in enumerate(probs)]
        if name != "val":
            rows = [{**r, "data_source": name} for r in rows]
        pd.DataFrame(rows).to_parquet(data_dir / f"{name}.parquet")

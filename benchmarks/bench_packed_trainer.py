"""Packed vs unpacked training inside verl's own trainer on CPU, from the same trees.

    python -m benchmarks.bench_packed_trainer [--steps 4 --hidden 256 --layers 4 --ranks 1]
    python -m benchmarks.bench_packed_trainer --ranks 1 2      # also the packed run on 2 data-parallel ranks

Runs `python -m verl_ext.main +preset=cpu` (verl's Ray trainer, FSDP2, verl's vLLM server) twice
on one random-init model, `tree.train.pack=false` then `true`, with `tree.rollout.seeded_segments`
so that both runs sample the same trees at step 1 (later steps start from slightly different
weights). Printed, packed / unpacked from this one invocation: verl's `timing_s/update_actor`,
`timing_s/old_log_prob` and `timing_s/ref` (medians over steps 2..N, step 1 alone too), the
actor tokens packed / unpacked (`actor/tree_pack/packed_over_unpacked_tokens`), and the step-1
agreement of `actor/pg_loss`, `actor/grad_norm`, `actor/kl_loss`.

The shape makes compute dominate `update_actor`: a Qwen2 of hidden 256, 4 layers (8 heads of
32, the smallest head vLLM's CPU attention takes), prompts of 92-95 tokens (a system instruction
before each `chains` problem), TreeRPO N=3 D=3 with 32-token segments (27 leaves a tree, 39
segments: a row is 96 response tokens, the tree packed 95 + 39 x 32 = 1,343 tokens against
27 x 191 = 5,157 unpacked, 0.26 of them, for a full tree; a random model draws its EOS now and
then, so some paths stop early). 4 prompts a step, 2 actor updates a step.

`--updates 1` makes one update a step, so that step 1's gradient is computed at the same weights
in every run and its norm must agree. verl's `pg_loss` and `kl_loss` metrics are means over
micro-batches of partial sums: they differ when the runs cut different micro-batches, while the
loss they sum to is the same. The micro-batch budget is the same number of tokens for both runs
(8192); the packed run counts packed tokens (treerpo/training/microbatch.py), verl unpacked ones.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
INSTRUCTION = "One line per operation, then the answer in a box. "  # prompts of 92-95 tokens
KEYS = ("timing_s/update_actor", "timing_s/old_log_prob", "timing_s/ref")


def write_data(folder: Path, prompts: int, seed: int = 0) -> None:
    import pandas as pd

    from treerpo.tiny.task import problems, verl_row

    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for i, p in enumerate(problems(seed, prompts, (3, 5))):
        row = verl_row(p, "train", i)
        row["prompt"] = [{"role": "system", "content": INSTRUCTION}, *row["prompt"]]
        rows.append(row)
    pd.DataFrame(rows).to_parquet(folder / "train.parquet")


def overrides(args, model: Path, data: Path, out: Path, pack: bool, ranks: int) -> list[str]:
    from treerpo.tiny.recipe import RECIPE  # the GPU scripts' common settings, as `treerpo train` passes them

    return [
        "+preset=cpu", *RECIPE,
        "algorithm.adv_estimator=treerpo", "tree.rollout.method=treerpo",
        "tree.rollout.branching=3", "tree.rollout.depth=3", f"tree.rollout.step_tokens={args.seg}",
        "tree.rollout.seeded_segments=true", "tree.rollout.seed=1", f"tree.train.pack={str(pack).lower()}",
        f"tree.rollout.dump_path={out / 'trees.jsonl'}",
        f"actor_rollout_ref.model.path={model}", "actor_rollout_ref.model.enable_gradient_checkpointing=False",
        f"data.train_files={data / 'train.parquet'}", f"data.val_files={data / 'train.parquet'}",
        f"data.train_batch_size={args.prompts}", "data.max_prompt_length=160", "data.shuffle=False",
        f"data.max_response_length={3 * args.seg}", f"actor_rollout_ref.rollout.response_length={3 * args.seg}",
        f"actor_rollout_ref.actor.ppo_mini_batch_size={args.prompts // args.updates}",
        "actor_rollout_ref.actor.use_dynamic_bsz=True", f"actor_rollout_ref.actor.ppo_max_token_len_per_gpu={args.budget}",
        "actor_rollout_ref.rollout.log_prob_use_dynamic_bsz=True",
        f"actor_rollout_ref.rollout.log_prob_max_token_len_per_gpu={args.budget}",
        "actor_rollout_ref.ref.log_prob_use_dynamic_bsz=True",
        f"actor_rollout_ref.ref.log_prob_max_token_len_per_gpu={args.budget}",
        "actor_rollout_ref.actor.use_kl_loss=True", "actor_rollout_ref.actor.kl_loss_type=low_var_kl",
        "actor_rollout_ref.actor.optim.lr=1e-5",
        f"reward.custom_reward_function.path={ROOT / 'tests' / 'reward_fixture.py'}",
        "reward.custom_reward_function.name=compute_score",
        f"trainer.total_training_steps={args.steps}", "trainer.total_epochs=100", "trainer.save_freq=-1",
        "trainer.test_freq=-1", "trainer.val_before_train=False", "trainer.logger=[console,file]",
        f"trainer.n_gpus_per_node={ranks}", f"trainer.default_local_dir={out / 'checkpoints'}",
    ]


def run_verl(args, model, data, out: Path, pack: bool, ranks: int) -> list[dict]:
    from treerpo.tiny import guard
    from treerpo.tiny.metrics import read_metrics

    out.mkdir(parents=True, exist_ok=True)
    metrics = out / "metrics.jsonl"
    env = {**os.environ, "VERL_FILE_LOGGER_PATH": str(metrics), "PYTHONUNBUFFERED": "1", "HYDRA_FULL_ERROR": "1"}
    cmd = [sys.executable, "-m", "verl_ext.main", *overrides(args, model, data, out, pack, ranks)]
    t0 = time.monotonic()
    with open(out / "train.log", "w") as log:
        proc = guard.start_session(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
        try:
            rc = proc.wait(timeout=args.timeout)
        except subprocess.TimeoutExpired:
            rc = -1
        finally:
            guard.end_session(proc.pid)
    rows = [r for r in read_metrics(metrics) if "actor/pg_loss" in r]
    print(f"  {'packed' if pack else 'unpacked'} on {ranks} rank(s): {len(rows)} steps in "
          f"{time.monotonic() - t0:.0f} s (exit {rc}), log {out / 'train.log'}", flush=True)
    if rc != 0 or len(rows) < args.steps:
        raise SystemExit(f"verl's run did not finish; see {out / 'train.log'}")
    return rows


def step1_trees(out: Path) -> list:
    recs = [json.loads(x) for x in (out / "trees.jsonl").read_text().splitlines()]
    return sorted((r["prompt"], [n["token_ids"] for n in r["nodes"]]) for r in recs if r["step"] == 1)


def med(rows, key, first=False):
    vals = [r[key] for r in rows if key in r]
    return vals[0] if first else statistics.median(vals[1:] or vals)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="runs/bench_packed_trainer")
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--prompts", type=int, default=4)
    ap.add_argument("--seg", type=int, default=32, help="TreeRPO L_step")
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--budget", type=int, default=8192, help="micro-batch token budget, both runs")
    ap.add_argument("--updates", type=int, default=2, help="actor updates a step (1: step 1's gradient is "
                    "the same computation in every run, so its norm must agree)")
    ap.add_argument("--ranks", type=int, nargs="+", default=[1], help="1, and 2 for a 2-rank packed run")
    ap.add_argument("--timeout", type=float, default=1500)
    args = ap.parse_args(argv)
    from treerpo.tiny.model import save_tiny

    out = Path(args.out).resolve()
    model = save_tiny(out / "model", seed=0, hidden=args.hidden, layers=args.layers, heads=args.hidden // 32,
                      kv_heads=2, intermediate=3 * args.hidden)
    write_data(out / "data", args.prompts * args.steps)
    print(f"verl on CPU, Qwen2 hidden {args.hidden} x {args.layers} layers (random init), TreeRPO N=3 D=3 "
          f"L={args.seg}, {args.prompts} prompts a step, {args.steps} steps, budget {args.budget} tokens", flush=True)
    unpacked = run_verl(args, model, out / "data", out / "unpacked", False, 1)
    packed = run_verl(args, model, out / "data", out / "packed", True, 1)
    same = step1_trees(out / "unpacked") == step1_trees(out / "packed")
    print(f"\nstep-1 trees identical in both runs: {same}")
    print(f"actor tokens packed / unpacked: {med(packed, 'actor/tree_pack/packed_over_unpacked_tokens'):.3f}")
    print("\n| timing (s) | unpacked | packed | packed / unpacked | step 1: unpacked | packed |\n|---|---|---|---|---|---|")
    for key in KEYS:
        u, p = med(unpacked, key), med(packed, key)
        print(f"| `{key}` | {u:.2f} | {p:.2f} | **{p / u:.3f}** | {med(unpacked, key, True):.2f} | "
              f"{med(packed, key, True):.2f} |")
    print("\n| step 1 | unpacked | packed | relative difference |\n|---|---|---|---|")
    for key in ("actor/pg_loss", "actor/grad_norm", "actor/kl_loss"):
        u, p = unpacked[0].get(key), packed[0].get(key)
        if u is not None and p is not None:
            print(f"| `{key}` | {u:.6g} | {p:.6g} | {abs(p - u) / max(abs(u), 1e-12):.2e} |")
    if 2 in args.ranks:
        two = run_verl(args, model, out / "data", out / "packed-2ranks", True, 2)
        same2 = step1_trees(out / "packed") == step1_trees(out / "packed-2ranks")
        print(f"\n2 data-parallel ranks, packed (step-1 trees identical to the 1-rank runs: {same2})")
        print("| step 1 | 1 rank | 2 ranks | relative difference |\n|---|---|---|---|")
        for key in ("actor/pg_loss", "actor/grad_norm", "actor/kl_loss"):
            u, p = packed[0].get(key), two[0].get(key)
            if u is not None and p is not None:
                print(f"| `{key}` | {u:.6g} | {p:.6g} | {abs(p - u) / max(abs(u), 1e-12):.2e} |")
        for key in ("tree/padding_rows_for_ranks", "global_seqlen/minmax_diff"):
            if key in two[0]:
                print(f"`{key}` at step 1: {two[0][key]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

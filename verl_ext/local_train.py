"""Local CPU mode: the whole loop on one machine with a tiny model (`treerpo train`).

    treerpo train --estimator treerpo --out runs/local        # or grpo / treepo

1. A tiny Qwen2-architecture model and a byte-level tokenizer, built in code (treerpo.tiny).
2. Supervised warm-up on worked solutions of the bundled arithmetic task (treerpo.arith_task)
   until greedy accuracy on held-out problems reaches `warm_min` (10%), checked every
   `warm_eval_every` steps, so RL starts from a policy that is right sometimes but not often.
3. RL: per step, `prompts_per_step` problems; samples come from the tree sampler on the local
   engine (treerpo.sampler; flat sampling for grpo), rewards from the math verifier, advantages
   from verl's registry by name (`get_adv_estimator_fn`), the loss from verl's own policy loss
   (`get_policy_loss_fn("vanilla")`, clipped PPO) aggregated by verl's `agg_loss` (token-mean).
   Runs until `token_budget` generated tokens (or `max_rl_steps`).
Writes metrics.csv, learning_curve.png, and checkpoints (HF format + trainer_state.json).
"""

from __future__ import annotations

import asyncio
import csv
import json
import math
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from omegaconf import OmegaConf
from tqdm import tqdm

from treerpo.arith_task import Problem, problems
from treerpo.local_engine import LocalEngine
from treerpo.options import RolloutOptions
from treerpo.rows import leaf_rows
from treerpo.sampler import sample_tree
from treerpo.segments import SegmentSource
from treerpo.tiny import build_model, build_tokenizer
from treerpo.verifier import score_answer


@dataclass
class LocalConfig:
    estimator: str = "treerpo"  # grpo | treerpo | treepo (looked up in verl's registry)
    seed: int = 0
    out: str = "runs/local"
    task_steps: int = 2  # operations per problem
    # model (tiny Qwen2)
    hidden: int = 96
    layers: int = 3
    heads: int = 4
    kv_heads: int = 2
    intermediate: int = 256
    # supervised warm-up
    warm_lr: float = 3e-3
    warm_batch: int = 64
    warm_min: float = 0.25  # stop the warm-up once greedy accuracy reaches this (checked every warm_eval_every)
    warm_max_steps: int = 1500
    warm_eval_every: int = 50
    # RL
    prompts_per_step: int = 16
    leaves: int = 8  # samples per prompt: grpo n, TreePO w; TreeRPO uses branching**depth
    branching: int = 2
    depth: int = 3
    step_tokens: int = 8
    segment_tokens: int = 8
    max_segments: int = 4
    max_response: int = 32
    temperature: float = 0.7
    rl_lr: float = 1e-4
    mini_batches: int = 2
    clip_low: float = 0.2
    clip_high: float = 0.28
    token_budget: int = 150_000
    max_rl_steps: int = 500
    eval_every: int = 5
    eval_problems: int = 256
    save_every: int = 50
    tree_advantage: dict = field(default_factory=dict)  # tree.advantage options
    init_from: Optional[str] = None  # a warm-up checkpoint: skip the warm-up, start RL from it

    def rollout_options(self) -> RolloutOptions:
        method = "treepo" if self.estimator == "treepo" else "treerpo"
        return RolloutOptions(method=method, branching=self.branching, depth=self.depth, step_tokens=self.step_tokens,
                              leaves=self.leaves, branch=2, segment_tokens=self.segment_tokens,
                              max_segments=self.max_segments, init_branches=2, seed=self.seed)


# ---- helpers -----------------------------------------------------------------------------------
def encode_prompt(tok, p: Problem) -> list[int]:
    return tok.apply_chat_template([{"role": "user", "content": p.prompt}], add_generation_prompt=True,
                                   tokenize=True)["input_ids"]


def sequence_logprobs(model, prompts: list[list[int]], responses: list[list[int]], pad: int,
                      temperature: float = 1.0) -> torch.Tensor:
    """(B, T) log softmax(logits / temperature) of each response token given its prefix (as verl's
    actor computes old_log_prob and log_prob), right-padded (0 past each response)."""
    seqs = [p + r for p, r in zip(prompts, responses)]
    length = max(map(len, seqs))
    t_resp = max(map(len, responses))
    ids = torch.full((len(seqs), length), pad, dtype=torch.long)
    attn = torch.zeros_like(ids)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = torch.tensor(s)
        attn[i, : len(s)] = 1
    logp = torch.log_softmax(model(input_ids=ids, attention_mask=attn).logits.float() / temperature, dim=-1)
    pos = torch.tensor([[len(p) - 1 + t for t in range(t_resp)] for p in prompts]).clamp(max=length - 1)
    tgt = torch.full((len(seqs), t_resp), pad, dtype=torch.long)
    for i, r in enumerate(responses):
        tgt[i, : len(r)] = torch.tensor(r)
    out = logp.gather(1, pos[:, :, None].expand(-1, -1, logp.shape[-1]))
    return out.gather(2, tgt[:, :, None]).squeeze(2)


def greedy_accuracy(engine: LocalEngine, tok, probs: list[Problem], max_tokens: int) -> tuple[float, float]:
    async def run():
        return await asyncio.gather(*(engine.generate("eval", prompt_ids=encode_prompt(tok, p), sampling_params={
            "max_tokens": max_tokens, "temperature": 0.0}) for p in probs))

    outs = asyncio.run(run())
    correct = [score_answer(tok.decode(o.token_ids, skip_special_tokens=True), p.answer).correct
               for o, p in zip(outs, probs)]
    return float(np.mean(correct)), float(np.mean([len(o.token_ids) for o in outs]))


class LocalTrainer:
    def __init__(self, cfg: LocalConfig, model=None, tokenizer=None):
        from verl.trainer.ppo.core_algos import get_adv_estimator_fn, get_policy_loss_fn

        import verl_ext.estimators  # noqa: F401  (the plugin does this in verl runs)

        self.cfg = cfg
        torch.manual_seed(cfg.seed)
        self.rng = random.Random(cfg.seed)
        self.tok = tokenizer or build_tokenizer()
        self.model = model or build_model(len(self.tok), seed=cfg.seed, hidden=cfg.hidden, layers=cfg.layers,
                                          heads=cfg.heads, kv_heads=cfg.kv_heads, intermediate=cfg.intermediate)
        self.engine = LocalEngine(self.model, self.tok.eos_token_id, self.tok.pad_token_id, seed=cfg.seed)
        self.adv_fn = get_adv_estimator_fn(cfg.estimator)
        self.loss_fn = get_policy_loss_fn("vanilla")
        self.run_config = OmegaConf.create({
            "algorithm": {"adv_estimator": cfg.estimator, "norm_adv_by_std_in_grpo": True},
            "tree": {"advantage": dict(cfg.tree_advantage)},
            "actor": {"clip_ratio": cfg.clip_low, "clip_ratio_low": cfg.clip_low, "clip_ratio_high": cfg.clip_high,
                      "clip_ratio_c": 3.0, "global_batch_info": {}},
        })
        self.eval_set = problems(10_000 + cfg.seed, cfg.eval_problems, cfg.task_steps)
        self.step = 0
        self.generated_tokens = 0
        self.out = Path(cfg.out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.metrics_path = self.out / "metrics.csv"
        self.rows: list[dict] = []
        self.t0 = time.perf_counter()

    # ---- logging ---------------------------------------------------------------------------------
    def log(self, **row) -> None:
        row = {"elapsed_s": round(time.perf_counter() - self.t0, 2), **row}
        self.rows.append(row)
        fields = ["phase", "step", "generated_tokens", "eval_acc", "train_reward", "loss", "mean_response_len",
                  "elapsed_s"]
        with open(self.metrics_path, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
            w.writeheader()
            w.writerows(self.rows)

    def evaluate(self) -> float:
        self.model.eval()
        acc, _ = greedy_accuracy(self.engine, self.tok, self.eval_set, self.cfg.max_response)
        return acc

    # ---- supervised warm-up ---------------------------------------------------------------------------
    def warm_up(self) -> float:
        cfg = self.cfg
        opt = torch.optim.AdamW(self.model.parameters(), lr=cfg.warm_lr)
        train_rng = random.Random(cfg.seed + 1)
        acc = self.evaluate()
        bar = tqdm(range(1, cfg.warm_max_steps + 1), desc="warm-up", unit="step")
        for step in bar:
            batch = [problems(train_rng.randrange(10**9), 1, cfg.task_steps)[0] for _ in range(cfg.warm_batch)]
            prompts = [encode_prompt(self.tok, p) for p in batch]
            targets = [self.tok.encode(p.solution, add_special_tokens=False) + [self.tok.eos_token_id] for p in batch]
            self.model.train()
            logp = sequence_logprobs(self.model, prompts, targets, self.tok.pad_token_id)
            mask = torch.zeros_like(logp)
            for i, t in enumerate(targets):
                mask[i, : len(t)] = 1
            loss = -(logp * mask).sum() / mask.sum()
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
            opt.step()
            if step % cfg.warm_eval_every == 0:
                acc = self.evaluate()
                bar.set_postfix(loss=f"{loss.item():.3f}", acc=f"{acc:.2f}")
                self.log(phase="warmup", step=step, generated_tokens=0, eval_acc=acc, loss=loss.item())
                if acc >= cfg.warm_min:
                    break
        bar.close()
        return acc

    # ---- RL ----------------------------------------------------------------------------------------------
    def sample(self, batch: list[Problem]):
        """One row per sample: (uid, prompt_ids, response_ids, response_mask)."""
        cfg = self.cfg
        params = {"temperature": cfg.temperature}
        prompts = [encode_prompt(self.tok, p) for p in batch]
        uids = [f"s{self.step}p{i}" for i in range(len(batch))]

        src = SegmentSource(self.engine, params, self.tok.eos_token_id)

        async def flat():  # `leaves` independent samples per prompt, one segment of max_response each
            segs = await asyncio.gather(*(src.continue_(u, p, cfg.max_response)
                                          for u, p in zip(uids, prompts) for _ in range(cfg.leaves)))
            return [(uids[k // cfg.leaves], k // cfg.leaves, s.token_ids, [1] * len(s.token_ids))
                    for k, s in enumerate(segs)]

        async def trees():
            opts = cfg.rollout_options()
            ts = await asyncio.gather(*(sample_tree(p, u, src, opts, cfg.max_response) for u, p in zip(uids, prompts)))
            return [(r.uid, i, r.response_ids, r.response_mask) for i, t in enumerate(ts) for r in leaf_rows(t)]

        rows = asyncio.run(flat() if cfg.estimator == "grpo" else trees())
        return prompts, rows

    def rl_step(self, batch: list[Problem]) -> dict:
        cfg = self.cfg
        self.model.eval()
        before = self.engine.stats["generated_tokens"]
        prompts, rows = self.sample(batch)
        self.generated_tokens += self.engine.stats["generated_tokens"] - before
        texts = [self.tok.decode(r[2], skip_special_tokens=True) for r in rows]
        rewards = [float(score_answer(t, batch[r[1]].answer).correct) for t, r in zip(texts, rows)]
        t_resp = max(len(r[2]) for r in rows)
        mask = torch.zeros(len(rows), t_resp)
        token_rewards = torch.zeros(len(rows), t_resp)
        for i, (_, _, resp, m) in enumerate(rows):
            mask[i, : len(m)] = torch.tensor(m, dtype=torch.float32)
            token_rewards[i, len(resp) - 1] = rewards[i]
        index = np.array([r[0] for r in rows], dtype=object)
        adv, _ = self.adv_fn(token_level_rewards=token_rewards, response_mask=mask, index=index,
                             config=self.run_config.algorithm)
        row_prompts = [prompts[r[1]] for r in rows]
        responses = [r[2] for r in rows]
        with torch.no_grad():
            old_logp = sequence_logprobs(self.model, row_prompts, responses, self.tok.pad_token_id, cfg.temperature)
        self.model.train()
        order = list(range(len(rows)))
        self.rng.shuffle(order)
        losses = []
        for chunk in np.array_split(np.array(order), cfg.mini_batches):
            idx = chunk.tolist()
            if not idx or mask[idx].sum() == 0:
                continue
            logp = sequence_logprobs(self.model, [row_prompts[i] for i in idx], [responses[i] for i in idx],
                                     self.tok.pad_token_id, cfg.temperature)
            w = logp.shape[1]
            loss, _ = self.loss_fn(old_logp[idx, :w], logp, adv[idx, :w], mask[idx, :w], "token-mean",
                                   self.run_config.actor)
            self.opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
            self.opt.step()
            losses.append(loss.item())
        return {"train_reward": float(np.mean(rewards)), "loss": float(np.mean(losses)) if losses else 0.0,
                "mean_response_len": float(np.mean([len(r) for r in responses]))}

    def save(self, tag: str) -> Path:
        path = self.out / "checkpoints" / tag
        self.model.save_pretrained(path)
        self.tok.save_pretrained(path)
        (path / "trainer_state.json").write_text(json.dumps(
            {"step": self.step, "generated_tokens": self.generated_tokens, "config": asdict(self.cfg)}, indent=2))
        if hasattr(self, "opt"):
            torch.save(self.opt.state_dict(), path / "optimizer.pt")
        return path

    def train(self) -> dict:
        cfg = self.cfg
        if cfg.init_from:
            self.model.load_state_dict(load_checkpoint(cfg.init_from)[0].state_dict())
            warm_acc = self.evaluate()
        else:
            warm_acc = self.warm_up()
            self.save("warmup")
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=cfg.rl_lr)
        train_rng = random.Random(cfg.seed + 2)
        acc = self.evaluate()
        self.log(phase="rl", step=0, generated_tokens=0, eval_acc=acc)
        bar = tqdm(total=cfg.token_budget, desc=f"rl ({cfg.estimator})", unit="tok")
        while self.generated_tokens < cfg.token_budget and self.step < cfg.max_rl_steps:
            self.step += 1
            batch = [problems(train_rng.randrange(10**9), 1, cfg.task_steps)[0] for _ in range(cfg.prompts_per_step)]
            before = self.generated_tokens
            m = self.rl_step(batch)
            bar.update(min(self.generated_tokens, cfg.token_budget) - min(before, cfg.token_budget))
            row = {"phase": "rl", "step": self.step, "generated_tokens": self.generated_tokens, **m}
            if self.step % cfg.eval_every == 0:
                acc = self.evaluate()
                row["eval_acc"] = acc
                bar.set_postfix(acc=f"{acc:.2f}", reward=f"{m['train_reward']:.2f}")
            self.log(**row)
            if self.step % cfg.save_every == 0:
                self.save(f"step_{self.step}")
        bar.close()
        if self.step % cfg.eval_every != 0:
            acc = self.evaluate()
            self.log(phase="rl", step=self.step, generated_tokens=self.generated_tokens, eval_acc=acc)
        self.save("final")
        plot_curves({cfg.estimator: [self.rows]}, self.out / "learning_curve.png")
        summary = {"estimator": cfg.estimator, "seed": cfg.seed, "warmup_acc": warm_acc, "final_acc": acc,
                   "generated_tokens": self.generated_tokens, "rl_steps": self.step,
                   "mean_response_len": float(np.mean([r["mean_response_len"] for r in self.rows
                                                       if r.get("mean_response_len") is not None] or [math.nan])),
                   "seconds": round(time.perf_counter() - self.t0, 1)}
        (self.out / "summary.json").write_text(json.dumps(summary, indent=2))
        return summary


def plot_curves(runs: dict[str, list[list[dict]]], path: Path) -> None:
    """Eval accuracy against generated RL tokens; one line per run, one colour per estimator."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    for k, (name, seeds) in enumerate(runs.items()):
        for j, rows in enumerate(seeds):
            pts = [(r["generated_tokens"], r["eval_acc"]) for r in rows if r.get("phase") == "rl"
                   and r.get("eval_acc") is not None]
            if pts:
                xs, ys = zip(*pts)
                ax.plot(xs, ys, color=f"C{k}", alpha=0.8, label=name if j == 0 else None)
    ax.set_xlabel("generated tokens (RL)")
    ax.set_ylabel("greedy accuracy, held-out problems")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def load_checkpoint(path: str | Path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return AutoModelForCausalLM.from_pretrained(path).eval(), AutoTokenizer.from_pretrained(path)

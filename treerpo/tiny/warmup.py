"""Supervised warm-up of the tiny model on the arithmetic task, so RL starts from a policy that is
right sometimes but not often (a random model never writes a boxed answer: every reward is 0).

    model, tok, acc = warm_up(WarmupConfig(), out="runs/tiny-base")

Next-token cross-entropy on worked solutions (`task.Problem.solution` + EOS), AdamW, until
greedy accuracy on held-out problems reaches `target_acc` (checked every `eval_every` steps) or
`max_steps`. An interval that jumps past `max_acc` is undone and retried at half the learning rate,
so the starting policy lands in [target_acc, max_acc] (at lr 3e-3 one 10-step interval went from
below 35% to 52%). It is not RL and not a second trainer: it only makes the starting checkpoint that
verl's trainer then trains (`treerpo train`). The checkpoint is an ordinary HF directory
(`save_pretrained`) with `warmup.json` recording the config and the accuracy reached.
"""

from __future__ import annotations

import asyncio
import copy
import json
import random
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional

import torch
from tqdm import tqdm

from treerpo.engines.local import LocalEngine
from treerpo.reward.verifier import score_answer
from treerpo.tiny.model import build_model, build_tokenizer
from treerpo.tiny.task import TASKS, Problem, problems


@dataclass(frozen=True)
class WarmupConfig:
    seed: int = 0
    task: str = "arith"  # treerpo.tiny.task.TASKS: what the warm-up trains on and keeps out
    task_steps: int = 2  # operations per problem of the `arith` task (`chains` has its own range)
    # model: a tiny Qwen2. head_dim = hidden / heads = 32, the smallest vLLM's CPU attention takes
    hidden: int = 128
    layers: int = 2
    heads: int = 4
    kv_heads: int = 2
    intermediate: int = 256
    # optimisation
    lr: float = 3e-3
    batch: int = 64
    target_acc: float = 0.35  # stop once greedy held-out accuracy reaches this (checked every eval_every)
    max_acc: float = 0.5  # an interval that ends above this is undone and redone at half the lr
    max_steps: int = 1500
    eval_every: int = 10
    eval_problems: int = 128  # the warm-up checks its accuracy on the first this many held-out problems
    held_out: int = 128  # held-out problems: a seeded stream no training batch draws from (warm-up or RL)
    eval_seed: int = 10_000  # the held-out stream's seed
    held_out_distinct: bool = True  # each held-out problem once (False: the stream may repeat one)
    max_tokens: int = 40


def train_ops(cfg: WarmupConfig):
    """Operations per training problem: `task_steps` for `arith`, the task's range otherwise."""
    return cfg.task_steps if cfg.task == "arith" else TASKS[cfg.task].train_ops


def held_out_problems(cfg: WarmupConfig) -> list[Problem]:
    """The held-out problems of the training mix, each once; no training batch holds one. The
    warm-up checks itself on the first `eval_problems` of them; for `arith` they are also verl's
    validation set in `treerpo train`."""
    return problems(cfg.eval_seed + cfg.seed, max(cfg.held_out, cfg.eval_problems), train_ops(cfg),
                    distinct=cfg.held_out_distinct)


def val_sets(cfg: WarmupConfig) -> dict[str, list[Problem]]:
    """The task's validation sets for this seed (`chains`: chain3 ... chain6), by name."""
    return {vs.name: vs.problems(cfg.seed) for vs in TASKS[cfg.task].val_sets}


def excluded_prompts(cfg: WarmupConfig) -> frozenset[str]:
    """Every held-out prompt: neither the warm-up nor RL trains on one."""
    held = held_out_problems(cfg) + [p for ps in val_sets(cfg).values() for p in ps]
    return frozenset(p.prompt for p in held)


def encode_prompt(tok, p: Problem) -> list[int]:
    return tok.apply_chat_template([{"role": "user", "content": p.prompt}], add_generation_prompt=True,
                                   tokenize=True)["input_ids"]


def sequence_logprobs(model, prompts: list[list[int]], responses: list[list[int]], pad: int) -> torch.Tensor:
    """(B, T) log-probability of each response token given its prefix, right-padded with 0."""
    seqs = [p + r for p, r in zip(prompts, responses)]
    length, t_resp = max(map(len, seqs)), max(map(len, responses))
    ids = torch.full((len(seqs), length), pad, dtype=torch.long)
    attn = torch.zeros_like(ids)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = torch.tensor(s)
        attn[i, : len(s)] = 1
    logp = torch.log_softmax(model(input_ids=ids, attention_mask=attn).logits.float(), dim=-1)
    pos = torch.tensor([[len(p) - 1 + t for t in range(t_resp)] for p in prompts]).clamp(max=length - 1)
    tgt = torch.full((len(seqs), t_resp), pad, dtype=torch.long)
    for i, r in enumerate(responses):
        tgt[i, : len(r)] = torch.tensor(r)
    out = logp.gather(1, pos[:, :, None].expand(-1, -1, logp.shape[-1]))
    return out.gather(2, tgt[:, :, None]).squeeze(2)


def greedy_accuracy(model, tok, probs: list[Problem], max_tokens: int) -> float:
    """Fraction of problems whose greedy answer the verifier accepts."""
    engine = LocalEngine(model, tok.eos_token_id, tok.pad_token_id)

    async def run():
        return await asyncio.gather(*(engine.generate("eval", prompt_ids=encode_prompt(tok, p), sampling_params={
            "max_tokens": max_tokens, "temperature": 0.0}) for p in probs))

    outs = asyncio.run(run())
    correct = [score_answer(tok.decode(o.token_ids, skip_special_tokens=True), p.answer).correct
               for o, p in zip(outs, probs)]
    return sum(correct) / len(correct)


def sampled_accuracy(model, tok, probs: list[Problem], max_tokens: int, temperature: float, samples: int,
                     seed: int = 0) -> dict:
    """Accuracy of `samples` answers per problem drawn at `temperature` (seeded): the mean over all
    answers (verl's `acc/mean@k`), pass@k (some answer right) and the fraction of problems whose k
    answers are neither all right nor all wrong (a flat group of k with a learning signal)."""
    engine = LocalEngine(model, tok.eos_token_id, tok.pad_token_id, seed=seed)

    async def run():
        return await asyncio.gather(*(engine.generate("eval", prompt_ids=encode_prompt(tok, p), sampling_params={
            "max_tokens": max_tokens, "temperature": temperature}) for p in probs for _ in range(samples)))

    outs = asyncio.run(run())
    right = [score_answer(tok.decode(o.token_ids, skip_special_tokens=True), probs[i // samples].answer).correct
             for i, o in enumerate(outs)]
    per = [sum(right[i * samples:(i + 1) * samples]) for i in range(len(probs))]
    return {"mean": sum(right) / len(right), "pass": sum(c > 0 for c in per) / len(per),
            "mixed": sum(0 < c < samples for c in per) / len(per)}


def warm_up(cfg: WarmupConfig, out: Optional[str | Path] = None, progress: bool = True):
    """Train the tiny model on worked solutions; returns (model, tokenizer, held-out accuracy)."""
    tok = build_tokenizer()
    model = build_model(len(tok), seed=cfg.seed, hidden=cfg.hidden, layers=cfg.layers, heads=cfg.heads,
                        kv_heads=cfg.kv_heads, intermediate=cfg.intermediate)
    torch.manual_seed(cfg.seed)
    rng = random.Random(cfg.seed + 1)
    exclude = excluded_prompts(cfg)
    held_out = held_out_problems(cfg)[: cfg.eval_problems]
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr)
    acc, step = greedy_accuracy(model.eval(), tok, held_out, cfg.max_tokens), 0
    lr, retries = cfg.lr, 0
    last = (copy.deepcopy(model.state_dict()), copy.deepcopy(opt.state_dict()), acc)  # last eval below target
    bar = tqdm(total=cfg.max_steps, desc="warm-up (supervised)", unit="step", disable=not progress)
    while acc < cfg.target_acc and step < cfg.max_steps:
        step += 1
        batch = problems(rng.randrange(10**9), cfg.batch, train_ops(cfg), exclude=exclude)
        prompts = [encode_prompt(tok, p) for p in batch]
        targets = [tok.encode(p.solution, add_special_tokens=False) + [tok.eos_token_id] for p in batch]
        model.train()
        logp = sequence_logprobs(model, prompts, targets, tok.pad_token_id)
        mask = torch.zeros_like(logp)
        for i, t in enumerate(targets):
            mask[i, : len(t)] = 1
        loss = -(logp * mask).sum() / mask.sum()
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        bar.update(1)
        if step % cfg.eval_every == 0:
            acc = greedy_accuracy(model.eval(), tok, held_out, cfg.max_tokens)
            if acc > cfg.max_acc and retries < 6:  # overshot the band: undo this interval, smaller steps
                model.load_state_dict(last[0])
                opt.load_state_dict(last[1])
                lr, retries, acc = lr / 2, retries + 1, last[2]
                for group in opt.param_groups:
                    group["lr"] = lr
            elif acc < cfg.target_acc:
                last = (copy.deepcopy(model.state_dict()), copy.deepcopy(opt.state_dict()), acc)
            bar.set_postfix(loss=f"{loss.item():.3f}", acc=f"{acc:.2f}", lr=f"{lr:.1e}")
    bar.close()
    model.eval()
    if out is not None:
        out = Path(out)
        model.save_pretrained(out)
        tok.save_pretrained(out)
        (out / "warmup.json").write_text(json.dumps({"config": asdict(cfg), "steps": step, "held_out_acc": acc,
                                                                "final_lr": lr},
                                                    indent=2))
    return model, tok, acc

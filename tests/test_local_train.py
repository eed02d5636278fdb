"""Local CPU mode: a few steps of each estimator, accuracy measured, checkpoints reload exactly."""

import asyncio
import csv
import json
import math

import pytest
import torch

from treerpo.arith_task import make_problem, problems
from treerpo.local_engine import LocalEngine
from verl_ext.local_train import LocalConfig, LocalTrainer, encode_prompt, load_checkpoint

TINY = dict(hidden=32, layers=1, heads=2, kv_heads=1, intermediate=64, warm_max_steps=4, warm_eval_every=2,
            warm_batch=8, prompts_per_step=3, leaves=4, branching=2, depth=2, step_tokens=6, segment_tokens=6,
            max_segments=3, max_response=12, token_budget=10**9, max_rl_steps=2, eval_every=1,
            eval_problems=8, save_every=1)


def test_arith_task():
    p = problems(0, 1, 3)[0]
    assert p.solution.endswith(f"\\boxed{{{p.answer}}}") and p.solution.count("\n") == 3
    import random
    for _ in range(200):
        q = make_problem(random.Random(_), 2)
        assert 0 <= int(q.answer) <= 99


@pytest.mark.parametrize("estimator", ["grpo", "treerpo", "treepo"])
def test_few_steps_finite_and_logged(tmp_path, estimator):
    cfg = LocalConfig(estimator=estimator, out=str(tmp_path), **TINY)
    summary = LocalTrainer(cfg).train()
    assert summary["rl_steps"] == 2 and summary["generated_tokens"] > 0
    assert 0.0 <= summary["final_acc"] <= 1.0
    rows = list(csv.DictReader(open(tmp_path / "metrics.csv")))
    rl = [r for r in rows if r["phase"] == "rl" and r["loss"]]
    assert len(rl) == 2 and all(math.isfinite(float(r["loss"])) for r in rl)
    assert all(r["eval_acc"] != "" for r in rl)
    assert (tmp_path / "learning_curve.png").stat().st_size > 0
    assert json.loads((tmp_path / "summary.json").read_text())["estimator"] == estimator


def test_checkpoint_reloads_to_identical_outputs(tmp_path):
    cfg = LocalConfig(estimator="treerpo", out=str(tmp_path), **TINY)
    trainer = LocalTrainer(cfg)
    trainer.train()
    model, tok = load_checkpoint(tmp_path / "checkpoints" / "final")
    prompts = [encode_prompt(tok, p) for p in problems(7, 4, 2)]

    def greedy(m):
        eng = LocalEngine(m, tok.eos_token_id, tok.pad_token_id)

        async def run():
            return await asyncio.gather(*(eng.generate("x", prompt_ids=p, sampling_params={
                "max_tokens": 12, "temperature": 0.0, "logprobs": True}) for p in prompts))
        return asyncio.run(run())

    a, b = greedy(trainer.model.eval()), greedy(model)
    assert [o.token_ids for o in a] == [o.token_ids for o in b]
    torch.testing.assert_close(torch.tensor([o.log_probs for o in a]), torch.tensor([o.log_probs for o in b]))
    state = json.loads((tmp_path / "checkpoints" / "final" / "trainer_state.json").read_text())
    assert state["step"] == 2


def test_init_from_warmup_checkpoint(tmp_path):
    first = LocalTrainer(LocalConfig(estimator="grpo", out=str(tmp_path / "a"), **TINY))
    first.train()
    cfg = LocalConfig(estimator="treepo", out=str(tmp_path / "b"),
                      init_from=str(tmp_path / "a" / "checkpoints" / "warmup"), **TINY)
    summary = LocalTrainer(cfg).train()
    rows = list(csv.DictReader(open(tmp_path / "b" / "metrics.csv")))
    assert not [r for r in rows if r["phase"] == "warmup"] and summary["rl_steps"] == 2

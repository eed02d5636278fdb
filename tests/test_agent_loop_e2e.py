"""The tree agent loop end to end on CPU, through verl's own agent-loop worker and reward code.

TreeAgentLoop runs inside TreeAgentLoopWorker (verl's AgentLoopWorkerTQ with our postprocess),
the server manager is the local transformers engine over a tiny random Qwen2, rewards come from
verl's RewardLoopWorker with a custom reward function, and TransferQueue's put is captured. The
captured rows then go through verl's compute_advantage_for_multi_trajectories into the
registered estimators, and every token's advantage is checked against its node's, computed
here from the dumped tree.
"""

import asyncio
import json
import math
import types

import numpy as np
import pytest
import torch
import transfer_queue
from hydra import compose, initialize_config_module
from verl.experimental.reward_loop.reward_loop import RewardLoopWorker
from verl.protocol import DataProto
from verl.trainer.ppo.v1.utils import compute_advantage_for_multi_trajectories

from tests.reward_fixture import compute_score
from treerpo.tree import topology
from treerpo.engines.local import LocalEngine
from treerpo.tiny.model import build_model, build_tokenizer, save_tiny
from verl_ext.tree_worker import TreeAgentLoopWorker

RESPONSE_LENGTH = 24


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return save_tiny(tmp_path_factory.mktemp("tiny"), seed=2)


def make_config(tiny_dir, dump, method, estimator, extra=()):
    overrides = [
        f"actor_rollout_ref.model.path={tiny_dir}",
        "actor_rollout_ref.rollout.name=vllm",
        "actor_rollout_ref.rollout.prompt_length=64",
        f"actor_rollout_ref.rollout.response_length={RESPONSE_LENGTH}",
        "actor_rollout_ref.rollout.agent.default_agent_loop=tree_agent",
        "+actor_rollout_ref.rollout.agent.agent_loop_manager_class=verl_ext.tree_worker.TreeAgentLoopManager",
        "reward.custom_reward_function.path=tests/reward_fixture.py",
        "reward.custom_reward_function.name=compute_score",
        f"algorithm.adv_estimator={estimator}",
        f"+tree.rollout.method={method}",
        "+tree.rollout.branching=3", "+tree.rollout.depth=2", "+tree.rollout.step_tokens=5",
        "+tree.rollout.leaves=6", "+tree.rollout.branch=2", "+tree.rollout.segment_tokens=4",
        "+tree.rollout.max_segments=4",
        f"+tree.rollout.dump_path={dump}",
        "+tree.advantage.norm=group", "+tree.advantage.tau=0.0",
        *extra,
    ]
    with initialize_config_module(config_module="verl.trainer.config", version_base=None):
        return compose("ppo_trainer", overrides=overrides)


def run_worker(cfg, monkeypatch, prompts):
    puts = []

    async def fake_put(keys, fields, tags, partition_id):
        puts.append((keys, fields, tags, partition_id))

    monkeypatch.setattr(transfer_queue, "init", lambda *a, **k: None)
    monkeypatch.setattr(transfer_queue, "async_kv_batch_put", fake_put)
    tok = build_tokenizer()
    engine = LocalEngine(build_model(len(tok), seed=2), tok.eos_token_id, tok.pad_token_id, seed=0)
    sampling = {"temperature": 1.0, "top_p": 1.0, "top_k": -1, "repetition_penalty": 1.0, "logprobs": True}

    async def go():  # verl's workers bind the running event loop when they are built
        reward_worker = RewardLoopWorker(cfg)
        handle = types.SimpleNamespace(compute_score=types.SimpleNamespace(remote=reward_worker.compute_score))
        worker = TreeAgentLoopWorker(cfg, engine, None, [handle])
        await asyncio.gather(*(
            worker._run_agent_loop(
                sampling, trajectory={"step": 1, "sample_index": i, "rollout_n": 0, "validate": False},
                agent_name="tree_agent", trace=False,
                raw_prompt=[{"role": "user", "content": text}], uid=f"uid{i}", session_id=0, global_steps=1,
                data_source="test", reward_model={"ground_truth": "7"}, extra_info={"index": i}, index=i,
            )
            for i, text in enumerate(prompts)
        ))

    asyncio.run(go())
    return puts, tok


def rows_from_puts(puts):
    uids, masks, scores, responses, keys = [], [], [], [], []
    for k, fields, tags, part in puts:
        assert part == "train"
        for tag in tags:  # verl's trainer reads these as ints (verl/trainer/ppo/v1/trainer_base.py:1897)
            assert isinstance(tag["min_global_steps"], int) and isinstance(tag["max_global_steps"], int), tag
            assert tag["min_global_steps"] <= tag["max_global_steps"] <= tag["global_steps"]
        for i in range(len(k)):
            keys.append(k[i])
            uids.append(fields["uid"][i])
            masks.append(fields["response_mask"][i])
            scores.append(fields["rm_scores"][i])
            responses.append(fields["responses"][i])
    length = max(len(m) for m in masks)
    pad = lambda xs, dt: torch.stack([torch.nn.functional.pad(x.to(dt), (0, length - len(x))) for x in xs])
    return keys, np.array(uids, dtype=object), pad(masks, torch.float32), pad(scores, torch.float32), responses


def expected_treerpo_tokens(dump_path, uids, length, eps=1e-6):
    """Per-token advantages from the dumped trees, with plain Python: A(c) = (V(c) - mean) / (std + eps)."""
    node_adv = {}
    for line in open(dump_path):
        rec = json.loads(line)
        by_parent = {}
        for n in rec["nodes"]:
            by_parent.setdefault(n["parent"], []).append(n)
        for sibs in by_parent.values():
            vals = [s["value"] for s in sibs]
            mean = sum(vals) / len(vals)
            std = math.sqrt(sum((v - mean) ** 2 for v in vals) / (len(vals) - 1)) if len(vals) > 1 else 0.0
            for s in sibs:
                node_adv[(rec["prompt_uid"], tuple(s["path"]))] = (s["value"] - mean) / (std + eps), s["tokens"]
    out = torch.zeros(len(uids), length)
    for r, uid in enumerate(uids):
        t = topology.decode(uid)
        pos = 0
        for k in range(1, t.depth + 1):
            adv, n_tok = node_adv[(t.prompt_uid, t.path[:k])]
            out[r, pos : pos + n_tok] = adv
            pos += n_tok
    return out


@pytest.mark.parametrize("method", ["treerpo", "treepo"])
def test_tree_agent_loop_rows_into_estimators(tiny_dir, tmp_path, monkeypatch, method):
    dump = tmp_path / "trees.jsonl"
    cfg = make_config(tiny_dir, dump, method, estimator="treerpo")
    puts, tok = run_worker(cfg, monkeypatch, ["3+4=", "10-3=", "2*5="])
    keys, uids, mask, scores, responses = rows_from_puts(puts)

    # one row per leaf, keyed under its prompt, uid carrying the topology
    assert {k.split("_")[0] for k in keys} == {"uid0", "uid1", "uid2"}
    assert all(topology.decode(u).prompt_uid == k.split("_")[0] for u, k in zip(uids, keys))
    if method == "treepo":
        assert len(keys) == 3 * 6
    assert mask.shape[1] <= RESPONSE_LENGTH
    # each leaf scored on its own by the configured reward function
    for r, resp in enumerate(responses):
        text = tok.decode(resp.tolist(), skip_special_tokens=True)
        assert scores[r].sum().item() == pytest.approx(compute_score("test", text, "7")["score"], abs=1e-6)
    assert len({float(s.sum()) for s in scores}) > 1, "rewards should vary across leaves for a meaningful check"

    data = DataProto.from_dict(tensors={"token_level_rewards": scores, "response_mask": mask},
                               non_tensors={"uid": uids})
    out = compute_advantage_for_multi_trajectories(data, keys, adv_estimator="treerpo", config=cfg.algorithm)
    expected = expected_treerpo_tokens(dump, uids, mask.shape[1]) * mask
    torch.testing.assert_close(out.batch["advantages"], expected, atol=1e-5, rtol=1e-5)

    out = compute_advantage_for_multi_trajectories(data, keys, adv_estimator="treepo", config=cfg.algorithm)
    adv = out.batch["advantages"]
    for r in range(len(uids)):  # TreePO: one scalar per row over its response tokens
        vals = adv[r][mask[r] > 0]
        assert torch.allclose(vals, vals[0].expand_as(vals))


def test_credit_once_masks_shared_segments(tiny_dir, tmp_path, monkeypatch):
    cfg = make_config(tiny_dir, tmp_path / "t.jsonl", "treerpo", "treerpo", extra=["+tree.rollout.credit=once"])
    puts, _ = run_worker(cfg, monkeypatch, ["3+4="])
    keys, uids, mask, scores, _ = rows_from_puts(puts)
    trained = {}
    for r, uid in enumerate(uids):
        t = topology.decode(uid)
        start = 0
        for k in range(1, t.depth + 1):
            seg = mask[r, start : t.ends[k - 1]]
            trained.setdefault(t.path[:k], []).append(bool(seg.all()))
            assert seg.all() or not seg.any()
            start = t.ends[k - 1]
    assert all(sum(v) == 1 for v in trained.values())  # every node trained in exactly one row

"""tree.train.pack's engine hook: verl's own forward_step (unpacked) vs TreePackedEngine.forward_step
(packed) on one micro-batch, the tiny Qwen2 on CPU in float32, verl's real `ppo_loss` in both.

The engine is built without Ray, FSDP or a process group (`object.__new__` plus the attributes
verl's forward path reads); everything from the micro-batch to the loss is verl's code or ours.
"""

import functools
import random
from types import SimpleNamespace

import pytest
import torch
from tensordict import TensorDict
from verl.utils import tensordict_utils as tu
from verl.workers.config import FSDPActorConfig
from verl.workers.engine.fsdp.transformer_impl import FSDPEngineWithLMHead
from verl.workers.utils.losses import ppo_loss
from verl.workers.utils.padding import no_padding_2_padding

from treerpo.tiny.model import build_model
from treerpo.training.tree_batch import grow_tree, verl_rows
from treerpo.training import tree_attention
from verl_ext import packed_engine

VOCAB = 259


def engine(cls, model):
    eng = object.__new__(cls)
    eng.module = model
    eng._autocast_dtype = torch.float32
    eng.pad_to_length = None
    eng.ulysses_sequence_parallel_size = 1
    eng.use_ulysses_sp = False
    eng.engine_config = SimpleNamespace(entropy_checkpointing=False, entropy_from_logits_with_chunking=False)
    eng.get_data_parallel_group = lambda: None
    return eng


def micro_batch(credit, seed=0, temperature=1.0):
    rng = random.Random(seed)
    trees = [grow_tree(rng, "a", 5, [3, 2, 2], 4, VOCAB, p_stop=0.4), grow_tree(rng, "b", 9, [2, 1, 2], 3, VOCAB)]
    rows = verl_rows(trees, credit=credit, pad_rows=1)
    p = rows.input_ids.shape[1] - rows.response_length
    keep = rows.attention_mask.bool()
    nested = lambda x, m: torch.nested.as_nested_tensor([xi[mi] for xi, mi in zip(x, m)], layout=torch.jagged)  # noqa: E731
    g = torch.Generator().manual_seed(seed)
    b, r = rows.response_mask.shape
    mask = rows.response_mask.clone()
    mask[-1] = 0  # verl's padding row
    data = TensorDict({
        "prompts": nested(rows.input_ids[:, :p], keep[:, :p]),
        "responses": nested(rows.input_ids[:, p:], keep[:, p:]),
        "input_ids": nested(rows.input_ids, keep),
        "position_ids": nested(rows.position_ids, keep),
        "response_mask": mask,
        "old_log_probs": -torch.rand(b, r, generator=g) * 6 * mask,
        "ref_log_prob": -torch.rand(b, r, generator=g) * 6 * mask,
        "advantages": torch.randn(b, 1, generator=g).expand(b, r) * mask,
    }, batch_size=[b])
    data["uid"] = rows.uids
    for key, value in dict(temperature=temperature, use_remove_padding=False, calculate_entropy=True,
                           dp_size=1, batch_num_tokens=int(mask.sum()), global_batch_size=None).items():
        tu.assign_non_tensor(data, **{key: value})
    return data


def actor_config():
    return FSDPActorConfig(strategy="fsdp", ppo_micro_batch_size_per_gpu=4, ppo_mini_batch_size=4, use_dynamic_bsz=False,
                           rollout_n=1, use_kl_loss=True, kl_loss_coef=0.1, kl_loss_type="low_var_kl",
                           entropy_coeff=0.01, loss_agg_mode="token-mean")


@pytest.mark.parametrize("credit", ["every_row", "once"])
def test_packed_forward_step_equals_verls(credit, monkeypatch):
    calls = []
    real = packed_engine.packed_model_output
    monkeypatch.setattr(packed_engine, "packed_model_output", lambda *a, **k: calls.append(1) or real(*a, **k))
    model = build_model(VOCAB, seed=0).float()
    model.set_attn_implementation("sdpa")
    loss_fn = functools.partial(ppo_loss, actor_config())
    results = []
    for cls in (FSDPEngineWithLMHead, packed_engine._engine_class()):
        eng = engine(cls, model)
        model.zero_grad()
        data = micro_batch(credit, temperature=0.7)
        loss, out = eng.forward_step(data, loss_function=loss_fn, forward_only=False)
        loss.backward()
        lp = no_padding_2_padding(out["model_output"]["log_probs"], data)
        ent = no_padding_2_padding(out["model_output"]["entropy"], data)
        grads = {n: p.grad.clone() for n, p in model.named_parameters()}
        results.append((loss.item(), lp, ent, grads, data["response_mask"].bool()))
    (l_u, lp_u, ent_u, g_u, keep), (l_p, lp_p, ent_p, g_p, _) = results
    keep[-1] = False
    assert calls == [1]  # the packed path ran
    assert model.config._attn_implementation == tree_attention.NAME  # kept: sdpa for calls without a plan
    assert abs(l_u - l_p) <= 1e-5 * max(1.0, abs(l_u))
    assert (lp_u - lp_p)[keep].abs().max() <= 1e-5
    assert (ent_u - ent_p)[keep].abs().max() <= 1e-5
    for name, gu in g_u.items():
        assert gu.norm() > 0 and (gu - g_p[name]).norm() / gu.norm() <= 1e-4, name


@pytest.mark.parametrize("reentrant", [False, True])
def test_packed_forward_step_with_gradient_checkpointing(reentrant):
    """The GPU recipe turns gradient checkpointing on: backward recomputes each layer, and the
    recompute must take the tree attention the forward took (the model stays switched)."""
    loss_fn = functools.partial(ppo_loss, actor_config())
    results = []
    for cls in (FSDPEngineWithLMHead, packed_engine._engine_class()):
        model = build_model(VOCAB, seed=0, layers=3).float()
        model.set_attn_implementation("sdpa")
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": reentrant})
        model.train()
        eng = engine(cls, model)
        data = micro_batch("every_row")
        loss, out = eng.forward_step(data, loss_function=loss_fn, forward_only=False)
        loss.backward()
        results.append((loss.item(), {n: p.grad.clone() for n, p in model.named_parameters()}))
    (l_u, g_u), (l_p, g_p) = results
    assert abs(l_u - l_p) <= 1e-5 * max(1.0, abs(l_u))
    for name, gu in g_u.items():
        assert gu.norm() > 0 and (gu - g_p[name]).norm() / gu.norm() <= 1e-4, name


def test_rows_without_tree_uids_take_verls_path():
    data = micro_batch("every_row")
    data["uid"] = [f"plain{i}" for i in range(data.batch_size[0])]
    assert packed_engine.micro_batch_uids(data) is None
    assert packed_engine.micro_batch_uids(micro_batch("every_row")) is not None


def test_install_replaces_verls_lm_engine_only():
    from verl.workers.engine.base import EngineRegistry

    saved = {k: dict(v) for k, v in EngineRegistry._engines["language_model"].items()}
    try:
        cls = packed_engine.install()
        for backend in ("fsdp", "fsdp2"):
            entries = EngineRegistry._engines["language_model"][backend]
            assert FSDPEngineWithLMHead not in entries.values()
            assert any(e is cls for e in entries.values())
    finally:
        for k, v in saved.items():
            EngineRegistry._engines["language_model"][k] = v


def test_tree_train_pack_option():
    from omegaconf import OmegaConf

    from verl_ext.tree_config import train_pack

    assert train_pack(OmegaConf.create({"tree": {"train": {"pack": True}}, "algorithm": {}}).algorithm) is True
    assert train_pack(OmegaConf.create({"tree": {}})) is False
    with pytest.raises(ValueError, match="unknown tree.train"):
        train_pack(OmegaConf.create({"tree": {"train": {"pakc": True}}}))
    with pytest.raises(ValueError, match="true or false"):
        train_pack(OmegaConf.create({"tree": {"train": {"pack": "yes"}}}))


@pytest.mark.parametrize("env", ["1", None])
def test_plugin_installs_the_packed_engine_only_when_asked(env):
    """A fresh process, as verl starts a worker: `import verl` loads the plugin, which installs the
    packed engine when verl's FSDP engine module is imported, if and only if TREERPO_TREE_PACK=1."""
    import os
    import subprocess
    import sys

    code = ("import verl\nfrom verl.workers.engine.base import EngineRegistry\n"
            "import verl.workers.engine.fsdp.transformer_impl\n"
            "print(sorted({c.__name__ for b in EngineRegistry._engines['language_model'].values() for c in b.values()"
            " if 'FSDP' in c.__name__ or 'Packed' in c.__name__}))")
    environ = {k: v for k, v in os.environ.items() if k != "TREERPO_TREE_PACK"}
    if env:
        environ["TREERPO_TREE_PACK"] = env
    out = subprocess.run([sys.executable, "-c", code], env=environ, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    names = out.stdout.strip().splitlines()[-1]
    assert ("TreePackedEngine" in names) == bool(env) and ("'FSDPEngineWithLMHead'" in names) != bool(env), names


def test_verls_dynamic_micro_batches_keep_uids_and_stay_exact():
    """verl's own micro-batching (dynamic batch size, token-balanced) carries the uid field to each
    micro-batch and splits trees; the packed forward of each part still equals verl's."""
    from verl.workers.engine.utils import prepare_micro_batches

    model = build_model(VOCAB, seed=0).float()
    model.set_attn_implementation("sdpa")
    data = micro_batch("every_row")
    tu.assign_non_tensor(data, use_dynamic_bsz=True, max_token_len_per_gpu=60)
    parts, _ = prepare_micro_batches(data, dp_group=None)
    prompts = [{u.split("#")[0] for u in packed_engine.micro_batch_uids(m) if "#" in u} for m in parts]
    assert len(parts) > 1 and len(set.union(*prompts)) < sum(len(p) for p in prompts)  # a tree was split
    verls, ours = engine(FSDPEngineWithLMHead, model), engine(packed_engine._engine_class(), model)
    with torch.no_grad():
        for m in parts:
            out_u = verls.forward_step(m, loss_function=None, forward_only=True)[1]["model_output"]
            out_p = ours.forward_step(m, loss_function=None, forward_only=True)[1]["model_output"]
            keep = m["response_mask"].bool()
            for key in ("log_probs", "entropy"):
                diff = no_padding_2_padding(out_u[key], m) - no_padding_2_padding(out_p[key], m)
                assert diff[keep].abs().max() <= 1e-5, key

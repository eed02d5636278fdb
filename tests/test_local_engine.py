"""The local transformers engine on a tiny random Qwen2: trees build, logprobs are the model's."""

import asyncio

import pytest
import torch

from treerpo.engines.local import LocalEngine
from treerpo.tree.options import RolloutOptions
from treerpo.sampling.rows import leaf_rows
from treerpo.sampling.sampler import sample_tree
from treerpo.sampling.segments import SegmentSource
from treerpo.tiny.model import build_model, build_tokenizer


@pytest.fixture(scope="module")
def tiny():
    tok = build_tokenizer()
    return tok, build_model(len(tok), seed=1)


def prompt(tok, text="12+7="):
    return tok.apply_chat_template([{"role": "user", "content": text}], add_generation_prompt=True,
                                   tokenize=True)["input_ids"]


@pytest.mark.parametrize("temperature", [1.0, 0.7])
@pytest.mark.parametrize("method", ["treerpo", "treepo"])
def test_trees_build_and_logprobs_match_teacher_forcing(tiny, method, temperature):
    tok, model = tiny
    eng = LocalEngine(model, tok.eos_token_id, tok.pad_token_id, seed=0)
    opts = RolloutOptions(method=method, branching=2, depth=3, step_tokens=6, branch=2, leaves=6,
                          init_branches=2, max_segments=4, segment_tokens=5)
    src = SegmentSource(eng, {"temperature": temperature, "top_p": 0.9}, tok.eos_token_id)
    p = prompt(tok)
    tree = asyncio.run(sample_tree(p, "u1", src, opts, 64, detokenize=tok.decode))
    rows = leaf_rows(tree)
    assert len(rows) == 6 if method == "treepo" else 1 <= len(rows) <= 8
    assert eng.stats["batches"] < eng.stats["requests"]  # concurrent siblings were batched
    for row in rows:
        ids = torch.tensor([p + row.response_ids])
        with torch.no_grad():
            logp = torch.log_softmax(model(ids).logits[0].float() / temperature, dim=-1)
        ref = logp[len(p) - 1 : -1].gather(1, torch.tensor(row.response_ids)[:, None]).squeeze(1)
        assert row.response_logprobs is not None
        torch.testing.assert_close(torch.tensor(row.response_logprobs), ref, atol=1e-4, rtol=0)


def test_max_tokens_eos_and_seed(tiny):
    tok, model = tiny
    eng = LocalEngine(model, tok.eos_token_id, tok.pad_token_id)
    p = prompt(tok)

    async def go():
        a, b, c = await asyncio.gather(
            eng.generate("r", prompt_ids=p, sampling_params={"max_tokens": 7, "seed": 5, "ignore_eos": True}),
            eng.generate("r", prompt_ids=p, sampling_params={"max_tokens": 7, "seed": 5, "ignore_eos": True}),
            eng.generate("r", prompt_ids=p[:-3], sampling_params={"max_tokens": 3, "temperature": 0}),
        )
        return a, b, c

    a, b, c = asyncio.run(go())
    assert len(a.token_ids) == 7 and a.token_ids == b.token_ids
    assert len(c.token_ids) <= 3 and c.log_probs is None

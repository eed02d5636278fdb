"""`treerpo train`: verl 0.9.1's own trainer on this machine's CPU, on the embedded default task.

    treerpo train                                   # TreeRPO, seed 0, runs/tiny/treerpo-seed0/
    treerpo train --estimator grpo --steps 60 actor_rollout_ref.actor.optim.lr=5e-5

The same launch path as the GPU scripts (`python -m verl_ext.main`, verl's Ray single controller,
FSDP2 actor and reference, verl's vLLM server with prefix caching, TransferQueue, the tree agent
loop, per-leaf rewards, the estimator by name, the weight sync back into vLLM), with three
differences only:

1. the CPU preset (`+preset=cpu`, verl_ext/config/preset/cpu.yaml);
2. sizes (`SIZES` below): a tiny Qwen2 and short arithmetic problems instead of Qwen2.5-Math
   and MATH, small batches, a learning rate for a model of 0.4M parameters;
3. the starting checkpoint: a supervised warm-up (treerpo.tiny.warmup) to 35-50% greedy held-out
   accuracy, since RL from a random tiny model gets no reward at all.

docs/CPU.md shows the diff of this run's composed config against
examples/qwen2.5-math-1.5b/treerpo.sh (tests/test_cpu_preset.py checks it).

Writes to --out: `data/` (train and val parquet), `train.log` (verl's whole output),
`metrics.jsonl` (verl's file logger), `tensorboard/`, `checkpoints/` (verl's), `trees.jsonl`
(tree runs), `learning_curve.png` and `summary.json`. The warm-up checkpoint is shared by every
run of the same seed (`<out>/../base-seed<k>/`, made once).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Optional, Union

from treerpo.tiny.task import DATA_SOURCE, problems, verl_row

SEEDED_AGENT = "seeded_single_turn_agent"  # verl_ext.seeded_agent (not imported here: it imports verl)

# What examples/common.sh sets for every GPU run (verl's GRPO recipe for Qwen2.5-Math), minus
# what the CPU preset or SIZES set. Keep the two in step: tests/test_cpu_preset.py diffs them.
RECIPE = [
    "data.filter_overlong_prompts=True",
    "data.truncation=error",
    "actor_rollout_ref.model.enable_gradient_checkpointing=True",
    "actor_rollout_ref.actor.use_dynamic_bsz=True",
    "actor_rollout_ref.actor.use_kl_loss=True",
    "actor_rollout_ref.actor.kl_loss_coef=0.001",
    "actor_rollout_ref.actor.kl_loss_type=low_var_kl",
    "actor_rollout_ref.actor.entropy_coeff=0",
    "actor_rollout_ref.actor.loss_agg_mode=token-mean",
    "actor_rollout_ref.rollout.tensor_model_parallel_size=1",
    "actor_rollout_ref.rollout.enable_prefix_caching=True",
    "actor_rollout_ref.rollout.temperature=1.0",
    "actor_rollout_ref.rollout.log_prob_use_dynamic_bsz=True",
    "actor_rollout_ref.ref.log_prob_use_dynamic_bsz=True",
    "actor_rollout_ref.rollout.val_kwargs.temperature=0.6",
    "actor_rollout_ref.rollout.val_kwargs.do_sample=True",
    "actor_rollout_ref.rollout.val_kwargs.n=4",
    "actor_rollout_ref.actor.ppo_max_token_len_per_gpu=24576",
]

# The estimator-specific lines of examples/qwen2.5-math-1.5b/{grpo,treerpo,treepo}.sh, shape excepted.
METHOD = {
    "grpo": ["algorithm.adv_estimator=grpo", "actor_rollout_ref.rollout.agent.default_agent_loop=single_turn_agent",
             "actor_rollout_ref.rollout.agent.agent_loop_manager_class=null", "trainer.v1.trainer_mode=sync"],
    "treerpo": ["algorithm.adv_estimator=treerpo", "tree.rollout.method=treerpo", "tree.advantage.norm=batch",
                "tree.advantage.tau=0.1"],
    "treepo": ["algorithm.adv_estimator=treepo", "tree.rollout.method=treepo", "tree.rollout.init_branches=[2,2]",
               "+reward.custom_reward_function.reward_kwargs.incorrect_score=-1.0",
               "actor_rollout_ref.actor.use_kl_loss=False", "actor_rollout_ref.actor.clip_ratio_low=0.2",
               "actor_rollout_ref.actor.clip_ratio_high=0.28"],
}


@dataclass
class TinyRun:
    """A `treerpo train` run. Every field is a size of the miniature, not a method setting."""

    estimator: str = "treerpo"
    seed: int = 0
    out: Optional[str] = None  # default runs/tiny/<estimator>-seed<seed>
    steps: int = 16  # verl training steps (trainer.total_training_steps); the run takes about 9 minutes
    prompts_per_step: int = 32  # data.train_batch_size (16 a step did not move held-out accuracy in 24 steps)
    mini_batch_prompts: int = 4  # ppo_mini_batch_size: 8 actor updates per step
    test_freq: int = 8  # validation every N steps, before training, and after the last
    # tiny-model settings (TINY_SETTINGS says why each differs from the GPU recipe)
    lr: float = 1e-4  # actor AdamW; the GPU recipe's 1e-6 is for 1.5B parameters
    lr_warmup_steps: int = 2  # linear warm-up of the lr over the first steps
    task_steps: int = 2  # operations per arithmetic problem (the warm-up's and RL's)
    val_problems: int = 512  # held-out problems (never trained on, warm-up included)
    val_temperature: float = 1.0  # validation: one answer per problem sampled as in training (T=1.0)
    # tree shape: every path at most 36 tokens (a worked 2-step solution is about 27)
    branching: int = 3  # TreeRPO N
    depth: int = 2  # TreeRPO D
    # TreeRPO L_step, one per level: the first branch point (token 10) falls after the first
    # result (`7+5=12\n`, tokens 5-6) and before the second, so each level holds one decision
    step_tokens: Union[int, tuple] = (10, 26)
    leaves: int = 9  # TreePO w; GRPO n (equal leaves per prompt: N^D)
    segment_tokens: int = 12  # TreePO l
    max_segments: int = 3  # TreePO d
    max_prompt_length: int = 64
    extra: list[str] = field(default_factory=list)  # more Hydra overrides, passed last

    def __post_init__(self):
        if self.estimator not in METHOD:
            raise ValueError(f"unknown estimator {self.estimator!r}; one of {sorted(METHOD)}")
        if self.out is None:
            self.out = f"runs/tiny/{self.estimator}-seed{self.seed}"

    @property
    def response_length(self) -> int:
        if self.estimator == "treepo":
            return self.segment_tokens * self.max_segments
        L = self.step_tokens
        return L * self.depth if isinstance(L, int) else sum(L)

    @property
    def base_dir(self) -> Path:
        return Path(self.out).parent / f"base-seed{self.seed}"

    def warmup_config(self):
        from treerpo.tiny.warmup import WarmupConfig

        return WarmupConfig(seed=self.seed, held_out=self.val_problems, task_steps=self.task_steps)

    def sizes(self, model_path: str, data_dir: str) -> list[str]:
        out = Path(self.out).resolve()
        shape = {
            "grpo": [f"actor_rollout_ref.rollout.n={self.leaves}"],
            "treerpo": [f"tree.rollout.branching={self.branching}", f"tree.rollout.depth={self.depth}",
                        f"tree.rollout.step_tokens={_hydra(self.step_tokens)}", f"tree.rollout.dump_path={out / 'trees.jsonl'}"],
            "treepo": [f"tree.rollout.leaves={self.leaves}", "tree.rollout.branch=2",
                       f"tree.rollout.segment_tokens={self.segment_tokens}",
                       f"tree.rollout.max_segments={self.max_segments}", f"tree.rollout.dump_path={out / 'trees.jsonl'}"],
        }[self.estimator]
        return shape + [
            f"actor_rollout_ref.model.path={model_path}",
            f"data.train_files={data_dir}/train.parquet",
            f"data.val_files={data_dir}/val.parquet",
            f"data.train_batch_size={self.prompts_per_step}",
            f"data.max_prompt_length={self.max_prompt_length}",
            f"data.max_response_length={self.response_length}",
            f"actor_rollout_ref.rollout.response_length={self.response_length}",
            f"actor_rollout_ref.actor.ppo_mini_batch_size={self.mini_batch_prompts}",
            f"actor_rollout_ref.actor.optim.lr={self.lr}",
            f"actor_rollout_ref.actor.optim.lr_warmup_steps={self.lr_warmup_steps}",
            "actor_rollout_ref.model.enable_gradient_checkpointing=False",
            f"trainer.total_training_steps={self.steps}",
            "trainer.total_epochs=1000",
            f"trainer.test_freq={self.test_freq}",
            f"trainer.save_freq={self.steps}",
            "trainer.logger=[console,tensorboard,file]",
            "trainer.project_name=treerpo-tiny",
            f"trainer.experiment_name={self.estimator}-seed{self.seed}",
            f"trainer.default_local_dir={out / 'checkpoints'}",
            f"trainer.validation_data_dir={out / 'validation'}",  # per-problem outcomes: verl_ext.val_dump
        ] + ([f"tree.rollout.seed={self.seed}", f"actor_rollout_ref.rollout.seed={42 + self.seed}"]
             if self.seed else []) + [  # verl's default vLLM seed is 42
            "actor_rollout_ref.rollout.val_kwargs.do_sample=True", "actor_rollout_ref.rollout.val_kwargs.n=1",
            f"actor_rollout_ref.rollout.val_kwargs.temperature={self.val_temperature}"]

    def overrides(self, model_path: str, data_dir: str) -> list[str]:
        return ["+preset=cpu", *RECIPE, *METHOD[self.estimator], *self.sizes(model_path, data_dir), *self.extra]


def _hydra(value) -> str:
    """An int or a tuple of ints as a Hydra override value (`18`, `[10,20]`)."""
    return str(value) if isinstance(value, int) else "[" + ",".join(str(v) for v in value) + "]"


# Why the tiny run's settings differ from the GPU recipe where they are not plain sizes. Measured on
# this machine (docs/CPU.md, "Tuning the miniature"): lr 3e-4 and 1e-3 collapsed the tiny policy,
# and 2e-4 lost ground. A 10-step lr warm-up was chosen on a noisy 128-problem greedy validation;
# with the seeded 512-problem one, a 20-step run with it moved only after step 10 and a 2-step
# warm-up rose from the start (runs xb, xc). Greedy accuracy stayed flat in every run
# while accuracy sampled at the rollout temperature rose 7-8 points (GRPO n=8, TreeRPO N=4 D=2),
# so validation samples as training does; one answer on each of 512 problems has the sampling
# noise of 4 answers on 128 without verl's bootstrap of mean@k.
TINY_SETTINGS = {
    "actor_rollout_ref.actor.optim.lr": "1e-6 is the GPU recipe's lr for 1.5B parameters; 1e-4 for 0.4M",
    "actor_rollout_ref.actor.optim.lr_warmup_steps": "verl's default is none; 2 steps (with 10 of 20 steps, "
                                                     "held-out accuracy moved only after the warm-up)",
    "actor_rollout_ref.model.enable_gradient_checkpointing": "a tiny model's activations are a few MB; recomputing "
                                                             "them cost 6-10% of the actor update here (py-spy)",
    "actor_rollout_ref.rollout.val_kwargs.n": "one answer on each of 512 problems: with n > 1 verl bootstraps "
                                              "best/maj@k in Python (metric_utils.py:849), ~55 s a validation here",
    "actor_rollout_ref.rollout.val_kwargs.temperature": "the rollout temperature: RL moved the tiny policy's "
                                                        "sampled answers, not its greedy one",
}


# ---- steps of a run -------------------------------------------------------------------------
def write_data(run: TinyRun, data_dir: Path) -> None:
    """train.parquet: enough problems for every step (held-out prompts excluded); val.parquet: the
    `val_problems` held-out problems (the warm-up never trained on them either), sampled flat by
    every estimator, each with its own fixed vLLM seed (`seeded_single_turn_agent`, verl's
    single-turn agent plus the seed: every validation of the run draws the same random numbers
    for a problem, so the curve shows the policy's change rather than resampling noise)."""
    import pandas as pd

    from treerpo.tiny.warmup import held_out_problems

    data_dir.mkdir(parents=True, exist_ok=True)
    held_out = held_out_problems(run.warmup_config())
    exclude = frozenset(p.prompt for p in held_out)
    train = problems(20_000 + run.seed, run.steps * run.prompts_per_step, run.task_steps, exclude=exclude)
    pd.DataFrame([verl_row(p, "train", i) for i, p in enumerate(train)]).to_parquet(data_dir / "train.parquet")
    pd.DataFrame([verl_row(p, "test", i, agent_name=SEEDED_AGENT) for i, p in enumerate(held_out)]).to_parquet(
        data_dir / "val.parquet")


# Warm-ups the project ships (examples/tiny/base-seed<k>/, made by `treerpo warmup --seed k --out
# examples/tiny/base-seed<k>`): a run whose warm-up config equals a shipped one's starts from it
# instead of spending ~2 minutes on the warm-up. Absent from a non-editable install: then it warms up.
SHIPPED_BASES = Path(__file__).resolve().parents[1] / "examples" / "tiny"


def _made_with(path: Path) -> dict:
    marker = path / "warmup.json"
    return json.loads(marker.read_text()) if marker.exists() else {}


def shipped_base(run: TinyRun) -> Optional[Path]:
    """The shipped warm-up of this run's seed, if it was made with exactly this run's warm-up config."""
    from dataclasses import asdict

    path = SHIPPED_BASES / f"base-seed{run.seed}"
    return path if _made_with(path).get("config") == asdict(run.warmup_config()) else None


def base_model(run: TinyRun, log=print) -> Path:
    """The warmed-up starting checkpoint of this seed, in `run.base_dir`: kept if there already
    (and its held-out set covers `val_problems`, so no validation problem was trained on), else
    copied from the shipped warm-up of the same config, else made by a supervised warm-up."""
    import shutil

    from treerpo.tiny.warmup import warm_up

    path = run.base_dir
    made = _made_with(path)
    config = made.get("config", {})
    if config.get("seed") == run.seed and config.get("held_out", config.get("eval_problems", 0)) >= run.val_problems \
            and config.get("held_out_distinct", False) \
            and config.get("task_steps", 2) == run.task_steps:  # it kept every validation problem out, same task
        log(f"base model: {path} (warm-up done before, {made['held_out_acc']:.1%} held-out)")
        return path
    shipped = shipped_base(run)
    if shipped is not None:
        if path.exists():
            shutil.rmtree(path)
        shutil.copytree(shipped, path)
        log(f"base model: {path} (the shipped warm-up {shipped}, {_made_with(path)['held_out_acc']:.1%} greedy "
            "held-out accuracy)")
        return path
    log("base model: supervised warm-up of a tiny Qwen2 on worked solutions ...")
    _, _, acc = warm_up(run.warmup_config(), out=path)
    log(f"base model: {path} ({acc:.1%} greedy held-out accuracy)")
    return path


def launch_env(run: TinyRun) -> dict:
    out = Path(run.out).resolve()
    return {
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        "VERL_FILE_LOGGER_PATH": str(out / "metrics.jsonl"),  # verl/utils/tracking.py FileLogger
        "TENSORBOARD_DIR": str(out / "tensorboard"),
        "HYDRA_FULL_ERROR": "1",
    }


def read_metrics(path: Path) -> list[dict]:
    """verl's file logger lines: {"step": k, "data": {...}}, several lines per step merged."""
    if not path.exists():
        return []
    steps: dict[int, dict] = {}
    for line in path.read_text().splitlines():
        if line.strip():
            rec = json.loads(line)
            steps.setdefault(int(rec["step"]), {}).update(rec["data"])
    return [{"step": k, **v} for k, v in sorted(steps.items())]


def read_run_metrics(out: Path) -> list[dict]:
    """All of a run's metrics: earlier parts kept by --resume, then the current metrics.jsonl."""
    parts = sorted(out.glob("metrics.*.jsonl")) + [out / "metrics.jsonl"]
    steps: dict[int, dict] = {}
    for part in parts:
        for row in read_metrics(part):
            steps.setdefault(row["step"], {}).update(row)
    return [steps[k] for k in sorted(steps)]


def val_key(rows: list[dict], metric: str = "acc") -> Optional[str]:
    """verl's validation key for the held-out accuracy, e.g. `val-core/arith/acc/mean@4`."""
    for r in rows:
        for k in r:
            if k.startswith(f"val-core/{DATA_SOURCE}/{metric}/mean@"):
                return k
    return None


def plot(rows: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    key = val_key(rows)
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    train = [(r["step"], r["critic/score/mean"]) for r in rows if "critic/score/mean" in r]
    if train:
        ax.plot(*zip(*train), color="C0", alpha=0.5, label="train reward (mean over leaves)")
    if key:
        val = [(r["step"], r[key]) for r in rows if key in r]
        ax.plot(*zip(*val), "o-", color="C1", label=f"held-out accuracy ({key.rsplit('/', 1)[-1]})")
    ax.set_xlabel("verl training step")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def summarize(run: TinyRun, rows: list[dict], seconds: float, val_dir: Optional[Path] = None) -> dict:
    from verl_ext.val_dump import run_change

    key = val_key(rows)
    val = [(r["step"], r[key]) for r in rows if key and key in r]
    return {
        "estimator": run.estimator,
        "seed": run.seed,
        "steps": max((r["step"] for r in rows if "critic/score/mean" in r), default=0),
        "val_metric": key,
        "val_acc_start": val[0][1] if val else None,
        "val_acc_final": val[-1][1] if val else None,
        "val_curve": val,
        # problems gained / lost from the first validation to the last, and the sign test's p
        "val_paired": run_change(val_dir) if val_dir is not None else None,
        "train_reward_first": next((r["critic/score/mean"] for r in rows if "critic/score/mean" in r), None),
        "train_reward_last": next((r["critic/score/mean"] for r in reversed(rows) if "critic/score/mean" in r), None),
        "seconds": round(seconds, 1),
    }


OUTPUTS = ("checkpoints", "tensorboard", "metrics.jsonl", "metrics.*.jsonl", "trees.jsonl", "train.log", "learning_curve.png",
           "summary.json", "rollouts", "validation")


def clear_outputs(out: Path, log=print) -> None:
    """A fresh run: remove what an earlier run left in `out` (verl would resume from its checkpoints)."""
    import shutil

    old = [p for name in OUTPUTS for p in sorted(out.glob(name))]
    if old:
        log(f"removing the previous run's outputs in {out} ({', '.join(p.name for p in old)}); --resume keeps them")
    for p in old:
        shutil.rmtree(p) if p.is_dir() else p.unlink()


def train(run: TinyRun, verbose: bool = False, resume: bool = False, log=print,
          timeout: Optional[float] = None) -> dict:
    """Warm-up (once per seed), data, then verl's trainer in a subprocess; returns the summary.

    Without `resume`, outputs of an earlier run in `run.out` are removed first; with it, verl
    resumes from the last checkpoint there (its `trainer.resume_mode=auto`). With `timeout`
    (seconds), a verl run that takes longer is ended and reported as failed."""
    t0 = time.perf_counter()
    out = Path(run.out)
    out.mkdir(parents=True, exist_ok=True)
    if not resume:
        clear_outputs(out, log)
    model = base_model(run, log)
    write_data(run, out / "data")
    metrics_path = out / "metrics.jsonl"
    if resume and metrics_path.exists():  # verl's file logger truncates its file: keep the earlier part
        metrics_path.rename(out / f"metrics.{int(time.time())}.jsonl")
    cmd = [sys.executable, "-m", "verl_ext.main", *run.overrides(str(model.resolve()), str((out / "data").resolve()))]
    (out / "command.txt").write_text(" ".join(cmd) + "\n")
    log(f"verl: python -m verl_ext.main +preset=cpu ... ({run.estimator}, {run.steps} steps); "
        f"full command in {out / 'command.txt'}, output in {out / 'train.log'}")
    rc = _run_verl(cmd, run, out / "train.log", metrics_path, verbose, log, timeout)
    rows = read_run_metrics(out)
    if rc != 0:
        tail = (out / "train.log").read_text(errors="replace").splitlines()[-40:]
        raise RuntimeError(f"verl's trainer exited with {rc}; last lines of {out / 'train.log'}:\n" + "\n".join(tail))
    plot(rows, out / "learning_curve.png", f"{run.estimator}, seed {run.seed} (verl on CPU, tiny Qwen2)")
    summary = summarize(run, rows, time.perf_counter() - t0, out / "validation")
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def _run_verl(cmd: list[str], run: TinyRun, log_path: Path, metrics_path: Path, verbose: bool, log,
              timeout: Optional[float] = None) -> int:
    """Run verl, its output to `log_path` (and the terminal with `verbose`); a progress bar over
    training steps, fed by verl's file logger."""
    from tqdm import tqdm

    bar = tqdm(total=run.steps, desc=f"verl {run.estimator} (start-up ~4 min)", unit="step", disable=verbose)
    seen, start = 0, time.monotonic()
    restore = _stop_on_sigterm()
    with open(log_path, "w") as logf:
        proc = subprocess.Popen(cmd, env=launch_env(run), stdout=subprocess.PIPE if verbose else logf,
                                stderr=subprocess.STDOUT, text=True)
        try:
            while proc.poll() is None:
                if timeout is not None and time.monotonic() - start > timeout:
                    log(f"verl ran past {timeout:.0f} s: ending it")
                    proc.terminate()
                    try:
                        proc.wait(timeout=60)
                    except subprocess.TimeoutExpired:
                        proc.kill()
                    return -1
                if verbose:
                    line = proc.stdout.readline()
                    if line:
                        sys.stdout.write(line)
                        logf.write(line)
                    continue
                time.sleep(2)
                rows = read_metrics(metrics_path)
                steps = [r for r in rows if "critic/score/mean" in r]
                if len(steps) > seen:
                    bar.set_description(f"verl {run.estimator}")
                    bar.update(len(steps) - seen)
                    seen = len(steps)
                    post = {"reward": f"{steps[-1]['critic/score/mean']:.2f}"}
                    key = val_key(rows)
                    if key:
                        post["val_acc"] = f"{[r[key] for r in rows if key in r][-1]:.3f}"
                    bar.set_postfix(post)
            if verbose and proc.stdout:
                rest = proc.stdout.read()
                sys.stdout.write(rest)
                logf.write(rest)
        except KeyboardInterrupt:
            proc.terminate()
            proc.wait(timeout=60)
            raise
        finally:
            bar.close()
            restore()
    return proc.returncode


def _stop_on_sigterm():
    """While verl runs, a SIGTERM to this command (a job scheduler, `kill`) stops verl too, as Ctrl-C
    does: it is raised here as KeyboardInterrupt, and `_run_verl` ends its child. Without it verl
    (and its Ray cluster) outlived the command. Returns the function that puts the old handler back."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGTERM, interrupt)
    return lambda: signal.signal(signal.SIGTERM, old)


def check(run: TinyRun, dump_config: Optional[str] = None, quiet: bool = False) -> int:
    """Compose and validate this run's config exactly as the launch would (verl_ext.check)."""
    env = dict(launch_env(run))
    if dump_config:
        env["TREERPO_DUMP_CONFIG"] = dump_config
    model = str(run.base_dir.resolve())
    cmd = [sys.executable, "-m", "verl_ext.check", *run.overrides(model, str((Path(run.out) / "data").resolve()))]
    out = subprocess.run(cmd, env=env, capture_output=quiet, text=True)
    if quiet and out.returncode != 0:
        sys.stderr.write(out.stderr[-3000:])
    return out.returncode


def report(summary: dict) -> str:
    a, b = summary["val_acc_start"], summary["val_acc_final"]
    lines = [f"{summary['estimator']} seed {summary['seed']}: {summary['steps']} verl steps in {summary['seconds']:.0f} s"]
    if a is not None and b is not None and not (math.isnan(a) or math.isnan(b)):
        lines.append(f"held-out accuracy ({summary['val_metric']}): {a:.1%} before RL -> {b:.1%} after "
                     f"({100 * (b - a):+.1f} points)")
    paired = summary.get("val_paired")
    if paired:
        lines.append(f"  problem by problem (step {paired['from_step']} -> {paired['to_step']}, "
                     f"{paired['problems']} problems): {paired['gained']} gained, {paired['lost']} lost; "
                     f"sign test p = {paired['p_value']:.2g}")
    return "\n".join(lines)


__all__ = ["TinyRun", "RECIPE", "METHOD", "train", "check", "report", "read_metrics", "replace"]

"""The CPU miniature's recipe: what `treerpo train` passes to verl, and why each value.

    run = TinyRun(estimator="treerpo", seed=0)
    run.overrides(model_path, data_dir)   # the Hydra overrides of `python -m verl_ext.main`

The same launch path as the GPU scripts (`python -m verl_ext.main`, verl's Ray single controller,
FSDP2 actor and reference, verl's vLLM server with prefix caching, TransferQueue, the tree agent
loop, per-leaf rewards, the estimator by name, the weight sync back into vLLM), with three
differences only:

1. the CPU preset (`+preset=cpu`, verl_ext/config/preset/cpu.yaml);
2. sizes (`TinyRun`'s fields): a tiny Qwen2 and short arithmetic problems instead of Qwen2.5-Math
   and MATH, small batches, a learning rate for a model of 0.4M parameters;
3. the starting checkpoint: a supervised warm-up (treerpo/tiny/warmup.py) to 35-50% greedy
   held-out accuracy, since RL from a random tiny model gets no reward at all.

docs/CPU.md shows the diff of this run's composed config against
examples/qwen2.5-math-1.5b/treerpo.sh (tests/test_cpu_preset.py checks it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Union

SEEDED_AGENT = "seeded_single_turn_agent"  # verl_ext.seeded_agent (not imported here: it imports verl)

# What examples/common.sh sets for every GPU run (verl's GRPO recipe for Qwen2.5-Math), minus
# what the CPU preset or TinyRun's sizes set. Keep the two in step: tests/test_cpu_preset.py diffs them.
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
    out: Optional[str] = None  # default runs/<task>/<estimator>-seed<seed> (runs/tiny/... for `arith`)
    task: str = "arith"  # treerpo.tiny.task.TASKS; `tiny_run("chains", ...)` also takes its sizes (PRESETS)
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
        if self.task not in PRESETS:
            raise ValueError(f"unknown task {self.task!r}; one of {sorted(PRESETS)}")
        if self.out is None:
            self.out = f"runs/{'tiny' if self.task == 'arith' else self.task}/{self.estimator}-seed{self.seed}"

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
        from treerpo.tiny.warmup import WarmupConfig  # torch: only when a warm-up is needed

        if self.task == "arith":
            return WarmupConfig(seed=self.seed, held_out=self.val_problems, task_steps=self.task_steps)
        from treerpo.tiny.task import TASKS

        return WarmupConfig(seed=self.seed, task=self.task, max_tokens=TASKS[self.task].max_response_tokens)

    def val_files(self, data_dir: str) -> list[str]:
        """The validation parquet files (treerpo.tiny.data): one per validation set."""
        from treerpo.tiny.task import TASKS

        sets = [vs.name for vs in TASKS[self.task].val_sets] or ["val"]
        return [f"{data_dir}/{name}.parquet" for name in sets]

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
            "data.val_files=" + (self.val_files(data_dir)[0] if self.task == "arith"
                                 else "[" + ",".join(self.val_files(data_dir)) + "]"),
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
            f"trainer.validation_data_dir={out / 'validation'}",  # per-problem outcomes: treerpo.tiny.val_dump
        ] + ([f"tree.rollout.seed={self.seed}", f"actor_rollout_ref.rollout.seed={42 + self.seed}"]
             if self.seed else []) + [  # verl's default vLLM seed is 42
            "actor_rollout_ref.rollout.val_kwargs.do_sample=True", "actor_rollout_ref.rollout.val_kwargs.n=1",
            f"actor_rollout_ref.rollout.val_kwargs.temperature={self.val_temperature}"] + (
            [] if self.task == "arith" else [
                # the data in stream order: a longer run of the same seed sees the same first prompts
                "data.shuffle=False",
                f"trainer.rollout_data_dir={out / 'rollouts'}",  # every training sample: group statistics
            ])

    def overrides(self, model_path: str, data_dir: str) -> list[str]:
        return ["+preset=cpu", *RECIPE, *METHOD[self.estimator], *self.sizes(model_path, data_dir), *self.extra]


# The sizes of each task's runs where they differ from TinyRun's defaults (which are `arith`'s).
# `chains`: 3-5 operations, a worked solution of at most 50 tokens (5 lines of at most 8, then
# the box), 64 with the OOD set's 6 lines. TreeRPO N=2 D=3 with branch points at tokens 8 and 24:
# after the first line (6-7 tokens) and after about the third, so level 2 holds lines 2-3 and
# level 3 the rest; TreePO segments of 8 tokens, about a line each; 8 leaves per prompt for every
# method (GRPO n=8). 32 prompts a step and validation every 8 steps (docs/REPRODUCTION.md says
# what a run takes and why these sizes).
PRESETS: dict[str, dict] = {
    "arith": {},
    "chains": dict(prompts_per_step=32, mini_batch_prompts=4, steps=40, test_freq=8, branching=2, depth=3,
                   step_tokens=(8, 16, 40), leaves=8, segment_tokens=8, max_segments=8),
}


def tiny_run(task: str = "arith", **fields) -> TinyRun:
    """A run of `task` with the task's sizes (PRESETS), `fields` overriding them."""
    if task not in PRESETS:
        raise ValueError(f"unknown task {task!r}; one of {sorted(PRESETS)}")
    return TinyRun(task=task, **{**PRESETS[task], **fields})


def _hydra(value) -> str:
    """An int or a tuple of ints as a Hydra override value (`18`, `[10,20]`)."""
    return str(value) if isinstance(value, int) else "[" + ",".join(str(v) for v in value) + "]"


# Why the tiny run's settings differ from the GPU recipe where they are not plain sizes; each was
# measured on 2 cores (docs/CPU.md, "Tuning the miniature"): lr 3e-4 and 1e-3 collapsed the tiny
# policy and 2e-4 lost ground; with a 10-step lr warm-up a 20-step run moved only after step 10,
# with 2 steps it rose from the start. Greedy accuracy stayed flat while accuracy sampled at the
# rollout temperature rose 7-8 points, so validation samples as training does; one answer on each
# of 512 problems has the sampling noise of 4 answers on 128 without verl's bootstrap of mean@k.
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

"""What differs between a CPU run (`treerpo train`) and a GPU launch script, in verl's composed config.

    python -m verl_ext.cpu.config_diff                       # vs examples/qwen2.5-math-1.5b/treerpo.sh
    python -m verl_ext.cpu.config_diff --estimator treepo --script examples/qwen2.5-math-1.5b/treepo.sh

Both configs are composed and validated by `verl_ext.check` exactly as their launches would
compose them, resolved, flattened to dotted keys and compared. Every differing key is labelled:

    preset   set by verl_ext/config/preset/cpu.yaml (`+preset=cpu`)
    size     set by the CPU run's sizes (treerpo.tiny.recipe.TinyRun.sizes): model, data, batch
             and mini-batch, lengths, tree shape, steps, logging and output paths
    tiny     a setting for a 0.4M-parameter model, each with its reason (recipe.TINY_SETTINGS):
             learning rate and its warm-up, greedy validation
    derived  not set by either, but computed by verl's config from a size (interpolations)
    OTHER    none of these: the CPU run differs from the GPU recipe where it should not

tests/test_cpu_preset.py requires that no key is OTHER; docs/CPU.md shows the table.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

from treerpo.tiny import launch as tiny_launch
from treerpo.tiny import recipe

ROOT = Path(__file__).resolve().parents[2]
PRESET = Path(__file__).resolve().parents[1] / "config" / "preset" / "cpu.yaml"

# Keys verl's own config computes from others (`${...}` in verl/trainer/config), each from a size or a preset key.
DERIVED = {
    "actor_rollout_ref.actor.use_remove_padding": "actor_rollout_ref.model.use_remove_padding",
    "actor_rollout_ref.rollout.n_gpus_per_node": "trainer.n_gpus_per_node",
    "actor_rollout_ref.rollout.prompt_length": "data.max_prompt_length",
    "actor_rollout_ref.rollout.prometheus.served_model_name": "actor_rollout_ref.model.path",
    "actor_rollout_ref.rollout.trace.experiment_name": "trainer.experiment_name",
    "actor_rollout_ref.rollout.trace.project_name": "trainer.project_name",
    "critic.ppo_mini_batch_size": "actor_rollout_ref.actor.ppo_mini_batch_size",
    "actor_rollout_ref.actor.rollout_n": "actor_rollout_ref.rollout.n",
    "actor_rollout_ref.ref.rollout_n": "actor_rollout_ref.rollout.n",
    "critic.rollout_n": "actor_rollout_ref.rollout.n",
    "distillation.teacher_models.teacher_model.inference.prompt_length": "data.max_prompt_length",
    "distillation.teacher_models.teacher_model.inference.response_length": "data.max_response_length",
    "distillation.teacher_models.teacher_model.inference.dtype": "actor_rollout_ref.rollout.dtype",
}


def flatten(node, prefix: str = "") -> dict:
    out = {}
    if isinstance(node, dict):
        if not node and prefix:
            out[prefix[:-1]] = {}
        for k, v in node.items():
            out.update(flatten(v, f"{prefix}{k}."))
    else:
        out[prefix[:-1]] = node
    return out


def _only_gained_children(key, a, b, gpu: dict, cpu: dict) -> bool:
    """An empty mapping on one side that the other side fills (e.g. `override_config: {}`):
    its children are compared as keys of their own."""
    prefix = key + "."
    return (a == {} and b == "<absent>" and any(k.startswith(prefix) for k in cpu)) or \
           (b == {} and a == "<absent>" and any(k.startswith(prefix) for k in gpu))


def _keys_of(overrides: list[str]) -> set[str]:
    return {o.split("=", 1)[0].lstrip("+~") for o in overrides}


def compose_gpu(script: Path, dump: Path) -> None:
    env = {**os.environ, "PYTHON": sys.executable, "CHECK_ONLY": "1", "MODEL_PATH": "MODEL", "DATA_DIR": "DATA",
           "TREERPO_DUMP_CONFIG": str(dump)}
    out = subprocess.run(["bash", str(script)], env=env, cwd=ROOT, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"{script} CHECK_ONLY failed:\n{out.stderr[-3000:]}")


def compose_cpu(run: recipe.TinyRun, dump: Path) -> None:
    rc = tiny_launch.check(run, dump_config=str(dump), quiet=True)
    if rc != 0:
        raise RuntimeError(f"treerpo train --check-only failed for {run.estimator} (exit {rc})")


def diff(estimator: str = "treerpo", script: str | None = None) -> list[tuple[str, object, object, str]]:
    """[(key, gpu value, cpu value, label)] for every key whose values differ."""
    script_path = ROOT / (script or f"examples/qwen2.5-math-1.5b/{estimator}.sh")
    with tempfile.TemporaryDirectory() as tmp:
        run = recipe.TinyRun(estimator=estimator, out=str(Path(tmp) / "run"))
        gpu_yaml, cpu_yaml = Path(tmp) / "gpu.yaml", Path(tmp) / "cpu.yaml"
        compose_gpu(script_path, gpu_yaml)
        compose_cpu(run, cpu_yaml)
        gpu = flatten(yaml.safe_load(gpu_yaml.read_text()))
        cpu = flatten(yaml.safe_load(cpu_yaml.read_text()))
        sizes = _keys_of(run.sizes("MODEL", "DATA"))
    preset = flatten(yaml.safe_load(PRESET.read_text()))
    rows = []
    for key in sorted(set(gpu) | set(cpu)):
        a, b = gpu.get(key, "<absent>"), cpu.get(key, "<absent>")
        if a == b or _only_gained_children(key, a, b, gpu, cpu):
            continue
        if key in preset:
            label = "preset"
        elif key in recipe.TINY_SETTINGS:
            label = "tiny"
        elif key in sizes:
            label = "size"
        elif key in DERIVED and (DERIVED[key] in preset or DERIVED[key] in sizes):
            label = f"derived from `{DERIVED[key]}`"
        else:
            label = "OTHER"
        rows.append((key, a, b, label))
    return rows


def markdown(rows) -> str:
    def cell(v) -> str:
        s = str(v)
        return s if len(s) <= 60 else s[:57] + "..."

    lines = ["| key | GPU script | CPU run | why |", "|---|---|---|---|"]
    lines += [f"| `{k}` | {cell(a)} | {cell(b)} | {label}"
              f"{': ' + recipe.TINY_SETTINGS[k] if label == 'tiny' else ''} |" for k, a, b, label in rows]
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m verl_ext.cpu.config_diff", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--estimator", default="treerpo", choices=sorted(recipe.METHOD))
    ap.add_argument("--script", default=None, help="GPU launch script (default examples/qwen2.5-math-1.5b/<estimator>.sh)")
    args = ap.parse_args(argv)
    rows = diff(args.estimator, args.script)
    print(markdown(rows))
    other = [r for r in rows if r[3] == "OTHER"]
    counts = {label: sum(r[3].split(" ")[0] == label for r in rows)
              for label in ("preset", "size", "tiny", "derived", "OTHER")}
    print(f"\n{len(rows)} keys differ: " + ", ".join(f"{n} {label}" for label, n in counts.items()))
    return 1 if other else 0


if __name__ == "__main__":
    sys.exit(main())

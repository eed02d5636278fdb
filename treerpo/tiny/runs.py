"""The runs of a miniature grid, read back into one record each (the report's input).

    load_runs(out)   every `<estimator>-seed<k>/` under `out` with a metrics file, as a record:

    {"estimator", "seed", "finished", "steps", "prompts_per_step", "leaves",
     "validations": [{"step", "acc": {set: acc}, "mean", "tokens", "seconds", "response_tokens"}],
     "diagnostics": {name: median over training steps}}

`tokens` and `seconds` are what the run had spent when it validated: cumulative generated tokens
(treerpo/tiny/metrics.py) and verl's `timing_s/step` summed over the steps so far (start-up and
validation left out). `response_tokens` is the mean response length of that validation's
samples in tokens (verl's validation dump, tokenised with the run's own tokenizer).

Diagnostics, each the median over a run's training steps:
    prompt_zero_variance  prompts whose leaves all got the same reward: no signal for GRPO's
                          groups or TreePO's root group (verl's rollout dump, `trainer.rollout_data_dir`)
    duplicate_leaves      rows whose response repeats an earlier row of the same prompt word for
                          word (the rollout dump): samples that cannot differ in reward
    identical_siblings    tree runs: sibling groups (>= 2 children of one node) whose segments are
                          all the same tokens (the tree dump): branch points that bought nothing
    zero_variance_depth_k tree runs: step-level groups at depth k whose values all agree
    step_zero_variance    step-level groups (siblings) with equal values (`tree/zero_variance_group_frac`)
    adv_max, adv_min      verl's `critic/advantages/max`, `min`: the scale of the advantages
    response_length       training responses, tokens (verl's `response_length/mean`)
    entropy               the policy's token entropy (verl's `actor/entropy`)
    flat_over_tree        tokens flat sampling of the same leaves would decode / tokens decoded
    step_seconds, gen_seconds  verl's `timing_s/step` and `timing_s/gen`
"""

from __future__ import annotations

import json
import re
import statistics
from pathlib import Path
from typing import Optional

from treerpo.tiny.metrics import read_run_metrics, validations

RUN_DIR = re.compile(r"^(?P<estimator>[a-z_]+)-seed(?P<seed>\d+)$")
DIAGNOSTICS = {
    "step_zero_variance": "tree/zero_variance_group_frac",
    "adv_max": "critic/advantages/max",
    "adv_min": "critic/advantages/min",
    "response_length": "response_length/mean",
    "entropy": "actor/entropy",
    "flat_over_tree": "tree/flat_over_tree_tokens",
    "step_seconds": "timing_s/step",
    "gen_seconds": "timing_s/gen",
}


def command_value(command: str, key: str) -> Optional[str]:
    """The value of Hydra override `key=` in a run's command.txt (the last one wins, as in Hydra)."""
    found = re.findall(rf"(?:^|\s){re.escape(key)}=(\S+)", command)
    return found[-1] if found else None


def _median(xs: list) -> Optional[float]:
    xs = [float(x) for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def prompt_zero_variance(rollout_dir: Path) -> Optional[float]:
    """Median over steps of the share of prompts whose samples all got the same reward."""
    fracs = []
    for path in sorted(rollout_dir.glob("*.jsonl")) if rollout_dir.is_dir() else []:
        groups: dict[str, set] = {}
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                rec = json.loads(line)
                groups.setdefault(rec["input"], set()).add(float(rec["score"]))
        if groups:
            fracs.append(sum(len(s) == 1 for s in groups.values()) / len(groups))
    return _median(fracs)


def duplicate_leaves(rollout_dir: Path) -> Optional[float]:
    """Median over steps of the share of rows repeating an earlier row of their prompt."""
    fracs = []
    for path in sorted(rollout_dir.glob("*.jsonl")) if rollout_dir.is_dir() else []:
        seen: dict[str, set] = {}
        dup = total = 0
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                rec = json.loads(line)
                if not rec.get("input") or "output" not in rec:
                    continue  # verl's padding rows
                outs = seen.setdefault(rec["input"], set())
                dup += rec["output"] in outs
                total += 1
                outs.add(rec["output"])
        if total:
            fracs.append(dup / total)
    return _median(fracs)


def sibling_stats(dump: Path) -> dict:
    """From a tree dump: identical sibling segments, and zero-variance step-level groups by depth,
    each the median over steps."""
    per_step: dict[int, dict] = {}
    for line in dump.read_text(encoding="utf-8").splitlines() if dump.exists() else []:
        rec = json.loads(line)
        acc = per_step.setdefault(rec.get("step") or 0, {"groups": 0, "identical": 0, "depth": {}})
        kids: dict = {}
        for n in rec["nodes"]:
            kids.setdefault(n["parent"], []).append(n)
        for ch in kids.values():
            if len(ch) < 2:
                continue
            acc["groups"] += 1
            acc["identical"] += len({tuple(c["token_ids"]) for c in ch}) == 1
            values = [c["value"] for c in ch]
            if None not in values:
                d = acc["depth"].setdefault(ch[0]["depth"], [0, 0])
                d[0] += 1
                d[1] += max(values) - min(values) <= 1e-12
    out = {"identical_siblings": _median([a["identical"] / a["groups"] for a in per_step.values() if a["groups"]])}
    depths = sorted({k for a in per_step.values() for k in a["depth"]})
    for k in depths:
        out[f"zero_variance_depth_{k}"] = _median([a["depth"][k][1] / a["depth"][k][0]
                                                   for a in per_step.values() if k in a["depth"]])
    return out


def response_tokens(val_dir: Path, tokenizer) -> dict[int, float]:
    """{validation step: mean response length in tokens} from verl's validation dumps."""
    out = {}
    for path in sorted(val_dir.glob("*.jsonl")) if val_dir.is_dir() else []:
        lengths = [len(tokenizer.encode(json.loads(line)["output"], add_special_tokens=False))
                   for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        if lengths:
            out[int(path.stem)] = sum(lengths) / len(lengths)
    return out


def load_run(path: Path, tokenizer=None) -> Optional[dict]:
    m = RUN_DIR.match(path.name)
    rows = read_run_metrics(path)
    if m is None or not rows:
        return None
    command = (path / "command.txt").read_text() if (path / "command.txt").exists() else ""
    prompts = int(command_value(command, "data.train_batch_size") or 0)
    estimator = m["estimator"]
    leaves = int(command_value(command, "actor_rollout_ref.rollout.n") or 0) if estimator == "grpo" else \
        int(command_value(command, "tree.rollout.leaves") or 0) or \
        int(command_value(command, "tree.rollout.branching") or 0) ** int(command_value(command, "tree.rollout.depth") or 0)
    vals = validations(rows, prompts * leaves)
    lengths = response_tokens(path / "validation", tokenizer) if tokenizer is not None else {}
    for v in vals:
        v["response_tokens"] = lengths.get(v["step"])
    train = [r for r in rows if "critic/score/mean" in r]
    diag = {name: _median([r.get(key) for r in train]) for name, key in DIAGNOSTICS.items()}
    diag["prompt_zero_variance"] = prompt_zero_variance(path / "rollouts")
    diag["duplicate_leaves"] = duplicate_leaves(path / "rollouts")
    diag.update(sibling_stats(path / "trees.jsonl"))
    return {"estimator": estimator, "seed": int(m["seed"]), "finished": (path / "summary.json").exists(),
            "steps": max((r["step"] for r in train), default=0), "prompts_per_step": prompts, "leaves": leaves,
            "validations": vals, "diagnostics": diag}


def load_runs(out: Path, tokenizer_dir: Optional[Path] = None) -> list[dict]:
    """Every run under `out` (finished or not), sorted by estimator and seed. Response lengths are
    counted with the tokenizer in `tokenizer_dir` (default: the first `base-seed*/` under `out`)."""
    tokenizer = None
    base = tokenizer_dir or next(iter(sorted(Path(out).glob("base-seed*/"))), None)
    if base is not None and (Path(base) / "tokenizer_config.json").exists():
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(str(base))
    runs = [load_run(p, tokenizer) for p in sorted(Path(out).iterdir()) if p.is_dir()]
    return sorted((r for r in runs if r is not None), key=lambda r: (r["estimator"], r["seed"]))

"""Sample trees with the tiny model on the local engine and write them as a tree dump, no verl.

    python -m treerpo.tiny.sample_dump --out trees.jsonl [--method treerpo|treepo] [--prompts 4]

The starting checkpoint is the shipped warm-up of seed 0 (examples/tiny/base-seed0, right on
39% of held-out problems greedy) when present, else a random tiny Qwen2 (whose leaves never
box an answer: every reward 0). Problems are held-out problems of the arithmetic task; each leaf
is scored by the project's verifier against the problem's answer, and every tree is written by
treerpo.advantages.per_tree.tree_record exactly as the verl agent loop writes
`tree.rollout.dump_path`. It is how the viewer's tests and its screenshot (docs/VIEWER.md) get a
real dump.
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import Optional

from treerpo.tree.options import AdvantageOptions, RolloutOptions

SHIPPED_BASE = Path(__file__).resolve().parents[2] / "examples" / "tiny" / "base-seed0"

# small shapes of each method that fit the tiny task's ~20-token answers
SHAPES = {
    "treerpo": dict(method="treerpo", branching=3, depth=2, step_tokens=14),
    "treepo": dict(method="treepo", segment_tokens=6, max_segments=5, branch=2, leaves=8, init_branches=2),
}


def load_policy(path: Optional[Path] = SHIPPED_BASE):
    """(tokenizer, model): the checkpoint at `path` if it exists, else a random tiny Qwen2."""
    from treerpo.tiny.model import build_model, build_tokenizer

    if path is not None and (Path(path) / "config.json").exists():
        from transformers import AutoModelForCausalLM, AutoTokenizer

        return AutoTokenizer.from_pretrained(str(path)), AutoModelForCausalLM.from_pretrained(str(path))
    tok = build_tokenizer()
    return tok, build_model(len(tok), seed=0)


def sample_dump(out: str, method: str = "treerpo", prompts: int = 4, seed: int = 0, step: int = 0,
                temperature: float = 1.0, base: Optional[Path] = SHIPPED_BASE) -> int:
    """Append `prompts` sampled, scored trees to `out`; returns the number of nodes written."""
    from treerpo.engines.local import LocalEngine
    from treerpo.reward.verifier import score_answer
    from treerpo.sampling.sampler import sample_tree
    from treerpo.sampling.segments import SegmentSource
    from treerpo.tiny.task import problems
    from treerpo.advantages.per_tree import tree_record
    from treerpo.tree.record import append_jsonl

    tok, model = load_policy(base)
    engine = LocalEngine(model, tok.eos_token_id, tok.pad_token_id, seed=seed)
    opts = RolloutOptions(**SHAPES[method], seed=seed)
    source = SegmentSource(engine, {"temperature": temperature, "top_p": 1.0}, tok.eos_token_id)
    written = 0
    for i, p in enumerate(problems(10_000 + seed, prompts)):
        ids = tok.apply_chat_template([{"role": "user", "content": p.prompt}], add_generation_prompt=True,
                                      tokenize=True)["input_ids"]
        tree = asyncio.run(sample_tree(ids, f"{method}-{seed}-{i}", source, opts, opts.max_response_tokens,
                                       detokenize=tok.decode))
        for leaf in tree.leaves():
            ids_path = [t for n in leaf.lineage() for t in n.token_ids]
            text = tok.decode(ids_path, skip_special_tokens=True)
            leaf.reward = float(score_answer(text, p.answer, use_math_verify=False).correct)
        rec = tree_record(tree, tok.decode, method, AdvantageOptions(norm="mean"), step=step)
        append_jsonl(out, rec)
        written += len(rec["nodes"])
    return written


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m treerpo.tiny.sample_dump", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="JSONL file to append the trees to")
    ap.add_argument("--method", choices=sorted(SHAPES), default="treerpo", help="tree shape (default: %(default)s)")
    ap.add_argument("--prompts", type=int, default=4, help="trees to sample, one per problem (default: %(default)s)")
    ap.add_argument("--seed", type=int, default=0, help="problems and sampling seed (default: %(default)s)")
    ap.add_argument("--step", type=int, default=0, help="the `step` written into each record (default: %(default)s)")
    ap.add_argument("--verbose", action="store_true", help="show third-party warnings too (treerpo/quiet.py)")
    args = ap.parse_args(argv)
    from treerpo import quiet

    quiet.install(args.verbose)
    n = sample_dump(args.out, args.method, args.prompts, args.seed, args.step)
    print(f"{args.out}: {args.prompts} trees, {n} nodes")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Evaluate a checkpoint on benchmark parquets and print the papers' table.

    python -m treerpo.tools.evaluate --model PATH_OR_HUB_NAME --data $DATA_DIR/math500.parquet ... \\
        --k 16 --temperature 0.6 --out runs/eval/treerpo
    python -m treerpo.tools.evaluate --compare runs/eval/grpo runs/eval/treerpo

Per benchmark: Pass@1 as the mean over k samples per problem (averaged over problems), a 95%
bootstrap interval over problems, and the mean response length in tokens; then the average over
benchmarks (as the papers' "Avg"/"Overall" columns). Sampling: `--engine auto` (the default) uses
vLLM through treerpo.engines.vllm (AsyncLLM, prefix caching on) when vLLM imports, else the local
transformers engine (treerpo.engines.local); `--engine vllm` stops with one line when vLLM does
not import; `--engine local` never imports it. Sample j of problem i has its own seed
(seed * 1000003 + i * k + j) on either engine. Defaults follow TreePO's protocol
(temperature 0.6, top_p 1.0, 16 samples) with max_tokens 3072 to fit Qwen2.5-Math's 4k context.
Writes results.json (with every sampling setting and seed), results.csv, results.md and
samples.jsonl into --out.

Every input is checked before any sampling: each --data file (readable parquet with verl's
`prompt` and `reward_model` columns, at least one row, chat messages and a ground truth in every
row, no benchmark twice), --model (a local path must be a directory with config.json; a name
that is not a local path is a hub id, left to transformers as usual; tokenizer and model must
load) and --out. A bad one stops the run with one line naming it on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import hashlib
import json
import random
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from treerpo import quiet
from treerpo.reward.verifier import score_answer
from treerpo.tools.eval_inputs import (Benchmark, InputError, Parser, check_model, check_out, load_benchmarks,
                                       load_error, pick_engine, tokenize)


@dataclass
class Settings:
    model: str
    k: int = 16
    temperature: float = 0.6
    top_p: float = 1.0
    max_tokens: int = 3072
    seed: int = 0
    bootstrap: int = 1000
    engine: str = "auto"


def bootstrap_ci(per_problem: np.ndarray, n: int, seed: int) -> tuple[float, float]:
    if len(per_problem) == 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(per_problem), size=(n, len(per_problem)))
    means = per_problem[idx].mean(axis=1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


# ---- sampling --------------------------------------------------------------------------------
def open_engine(settings: Settings, engine: str, tokenizer):
    """Load the model once, for every benchmark: treerpo's vLLM adapter or the local engine.

    Both take the same calls (verl's `generate` interface), so the samples differ between
    engines only by their numerics and random streams, never by the protocol.
    """
    if engine == "vllm":
        from treerpo.engines.vllm import VLLMEngine

        return VLLMEngine.from_model(settings.model, seed=settings.seed)
    import torch
    from transformers import AutoModelForCausalLM

    from treerpo.engines.local import LocalEngine

    try:
        model = AutoModelForCausalLM.from_pretrained(settings.model, dtype=torch.float32).eval()
    except Exception as e:
        raise load_error(settings.model, e) from None
    return LocalEngine(model, tokenizer.eos_token_id, tokenizer.pad_token_id or 0)


async def sample_prompts(engine, settings: Settings, prompts: list[list[int]]) -> list[list[list[int]]]:
    """k samples per prompt, all in flight at once; sample j of prompt i has its own seed."""
    bar = tqdm(total=len(prompts) * settings.k, desc="sampling", unit="sample")

    async def one(i, j, p):
        out = await engine.generate(f"{i}", prompt_ids=p, sampling_params={
            "max_tokens": settings.max_tokens, "temperature": settings.temperature, "top_p": settings.top_p,
            "seed": settings.seed * 1_000_003 + i * settings.k + j})
        bar.update(1)
        return list(out.token_ids)

    try:
        results = await asyncio.gather(*(asyncio.gather(*(one(i, j, p) for j in range(settings.k)))
                                         for i, p in enumerate(prompts)))
    finally:
        bar.close()
    return [list(r) for r in results]


async def sample_benchmarks(engine, settings: Settings, prompt_sets: list[list[list[int]]]) -> list:
    """Every benchmark's samples, in one event loop (vLLM's engine serves one), then the engine closed."""
    try:
        return [await sample_prompts(engine, settings, prompts) for prompts in prompt_sets]
    finally:
        if hasattr(engine, "aclose"):
            await engine.aclose()


def score(benchmark: Benchmark, samples: list, tokenizer, settings: Settings, samples_file) -> dict:
    """Score every sample, write it to samples.jsonl; the benchmark's line of the table."""
    rows = benchmark.rows
    correct = np.zeros((len(rows), settings.k))
    lengths = np.zeros((len(rows), settings.k))
    for i, (row, outs) in enumerate(zip(rows, samples)):
        for j, ids in enumerate(outs):
            text = tokenizer.decode(ids, skip_special_tokens=True)
            v = score_answer(text, row["truth"])
            correct[i, j], lengths[i, j] = v.correct, len(ids)
            samples_file.write(json.dumps({"benchmark": benchmark.name, "problem": i, "sample": j,
                                           "truth": row["truth"], "pred": v.predicted, "correct": v.correct,
                                           "tokens": len(ids), "response": text}) + "\n")
    per_problem = correct.mean(axis=1)
    lo, hi = bootstrap_ci(per_problem, settings.bootstrap, settings.seed)
    digest = hashlib.sha1("\n".join(str(row["truth"]) for row in rows).encode()).hexdigest()[:16]
    return {"problems": len(rows), "pass@1": float(per_problem.mean()), "ci95": [lo, hi], "problems_digest": digest,
            "mean_tokens": float(lengths.mean()), "per_problem": [round(float(x), 6) for x in per_problem],
            "tokens_per_problem": [round(float(x), 2) for x in lengths.mean(axis=1)]}


def scored(benchmarks: dict) -> dict:
    """The benchmarks with at least one problem: the only ones in the table and its average."""
    return {name: v for name, v in benchmarks.items() if v["problems"] > 0}


def average(benchmarks: dict) -> dict:
    b = scored(benchmarks)
    return {"pass@1": float(np.mean([v["pass@1"] for v in b.values()])),
            "mean_tokens": float(np.mean([v["mean_tokens"] for v in b.values()]))}


def evaluate(settings: Settings, data: list[str], out: Path) -> dict:
    benchmarks = load_benchmarks(data)  # every input first: a bad one costs seconds, not a run
    check_model(settings.model)
    check_out(out)
    engine = pick_engine(settings.engine)
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(settings.model)
    except Exception as e:
        raise load_error(settings.model, e) from None
    prompts = [tokenize(b, tokenizer, settings.model) for b in benchmarks]
    samples = asyncio.run(sample_benchmarks(open_engine(settings, engine, tokenizer), settings, prompts))
    out.mkdir(parents=True, exist_ok=True)
    results = {"settings": {**asdict(settings), "engine": engine}, "benchmarks": {},
               "date": time.strftime("%Y-%m-%d %H:%M:%S")}
    with open(out / "samples.jsonl", "w", encoding="utf-8") as samples_file:
        for b, s in zip(benchmarks, samples):
            results["benchmarks"][b.name] = score(b, s, tokenizer, settings, samples_file)
    results["average"] = average(results["benchmarks"])
    write_tables(results, out)
    return results


# ---- tables --------------------------------------------------------------------------------------
def table_rows(results: dict) -> list[list[str]]:
    rows = []
    for name, v in scored(results["benchmarks"]).items():
        lo, hi = v["ci95"]
        rows.append([name, str(v["problems"]), f"{100 * v['pass@1']:.2f}", f"[{100 * lo:.1f}, {100 * hi:.1f}]",
                     f"{v['mean_tokens']:.0f}"])
    a = results["average"]
    rows.append(["Average", "", f"{100 * a['pass@1']:.2f}", "", f"{a['mean_tokens']:.0f}"])
    return rows


HEADER = ["benchmark", "problems", "Pass@1 (%)", "95% CI", "mean tokens"]


def markdown(header, rows) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def write_tables(results: dict, out: Path) -> None:
    rows = table_rows(results)
    (out / "results.json").write_text(json.dumps(results, indent=2))
    with open(out / "results.csv", "w", newline="") as f:
        csv.writer(f).writerows([HEADER] + rows)
    s = results["settings"]
    note = (f"\n\nmodel `{s['model']}`, k={s['k']}, temperature {s['temperature']}, top_p {s['top_p']}, "
            f"max_tokens {s['max_tokens']}, seed {s['seed']}, engine {s['engine']}\n")
    (out / "results.md").write_text(markdown(HEADER, rows) + note)
    print(markdown(HEADER, rows) + note)


def read_results(run_dir: str) -> dict:
    path = Path(run_dir) / "results.json"
    if not path.is_file():
        raise InputError(f"--compare {run_dir}: no results.json in it (not an evaluate --out directory)")
    return json.loads(path.read_text())


def compare(a_dir: str, b_dir: str) -> str:
    a, b = read_results(a_dir), read_results(b_dir)
    names = [n for n in a["benchmarks"] if n in b["benchmarks"]]
    header = ["benchmark", "A Pass@1", "B Pass@1", "B - A (pts)", "A tokens", "B tokens", "B/A - 1 length"]
    rows = []
    for n, va, vb in [(n, a["benchmarks"][n], b["benchmarks"][n]) for n in names] + [
            ("Average", a["average"], b["average"])]:
        rel = vb["mean_tokens"] / va["mean_tokens"] - 1 if va["mean_tokens"] else float("nan")
        rows.append([n, f"{100 * va['pass@1']:.2f}", f"{100 * vb['pass@1']:.2f}",
                     f"{100 * (vb['pass@1'] - va['pass@1']):+.2f}", f"{va['mean_tokens']:.0f}",
                     f"{vb['mean_tokens']:.0f}", f"{100 * rel:+.1f}%"])
    text = f"A = {a_dir} ({a['settings']['model']})\nB = {b_dir} ({b['settings']['model']})\n\n" + markdown(header, rows)
    print(text)
    return text


def number(kind: type, low: float, high: float = float("inf"), open_low: bool = False):
    """An argparse type: a `kind` in [low, high] ((low, high] when open_low)."""
    wanted = f">= {low}" if high == float("inf") else f"in {'(' if open_low else '['}{low}, {high}]"

    def parse(text: str):
        try:
            x = kind(text)
        except ValueError:
            x = None
        if x is None or not (low < x if open_low else low <= x) or not x <= high:
            raise argparse.ArgumentTypeError(f"expected a number {wanted}, got {text!r}")
        return x

    return parse


def build_parser() -> Parser:
    ap = Parser(prog="evaluate", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", help="model directory (HF format) or hub id")
    ap.add_argument("--data", nargs="+", help="benchmark parquet files (data_prep output)")
    ap.add_argument("--out", default="runs/eval")
    ap.add_argument("--k", type=number(int, 1), default=16)
    ap.add_argument("--temperature", type=number(float, 0.0), default=0.6)
    ap.add_argument("--top-p", type=number(float, 0.0, 1.0, open_low=True), default=1.0)
    ap.add_argument("--max-tokens", type=number(int, 1), default=3072)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--engine", choices=["auto", "vllm", "local"], default="auto",
                    help="auto: vllm when it imports, else local (default)")
    ap.add_argument("--compare", nargs=2, metavar=("A", "B"), help="two --out directories to compare")
    ap.add_argument("--verbose", action="store_true",
                    help="show third-party warnings too (also TREERPO_VERBOSE=1; treerpo/quiet.py)")
    return ap


def run(argv) -> None:
    args = build_parser().parse_args(argv)
    quiet.install(args.verbose)
    if args.compare:
        compare(*args.compare)
        return
    if not args.model or not args.data:
        raise InputError("--model and --data are required (or --compare A B)")
    random.seed(args.seed)
    settings = Settings(model=args.model, k=args.k, temperature=args.temperature, top_p=args.top_p,
                        max_tokens=args.max_tokens, seed=args.seed, engine=args.engine)
    evaluate(settings, args.data, Path(args.out))


def main(argv=None) -> int:
    try:
        run(argv)
    except InputError as e:
        print(f"evaluate: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Turn the MATH family into verl parquet: one training set and the evaluation sets.

    python -m data_prep.prepare --out $DATA_DIR                      # from the Hugging Face hub
    python -m data_prep.prepare --out $DATA_DIR --levels 3,4,5 \\
        --local math=train.jsonl --local math500=test.parquet --map math:question=problem

Writes `train.parquet` (the training source, default MATH train, contamination-checked against
every evaluation set), `<name>.parquet` per evaluation set, and `summary.json`. The summary
counts every row read, written and skipped, by reason; a file that cannot be read stops the run
with a message naming it and exit status 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path
from typing import Iterable

import pandas as pd

from data_prep.convert import convert, ngrams, norm_question
from data_prep.sources import DEFAULT_INSTRUCTION, EVAL_SETS, SOURCES, Source


class DataPrepError(Exception):
    pass


def read_local(path: str) -> list[dict]:
    p = Path(path)
    if not p.is_file():
        raise DataPrepError(f"{path}: no such file")
    try:
        if p.suffix == ".parquet":
            return pd.read_parquet(p).to_dict(orient="records")
        text = p.read_text(encoding="utf-8")
        if p.suffix == ".jsonl":
            rows = []
            for n, line in enumerate(text.splitlines(), 1):
                if line.strip():
                    try:
                        rows.append(json.loads(line))
                    except json.JSONDecodeError as e:
                        raise DataPrepError(f"{path}: line {n} is not valid JSON ({e.msg})") from None
        elif p.suffix == ".json":
            data = json.loads(text)
            rows = data.get("data", data.get("rows")) if isinstance(data, dict) else data
        else:
            raise DataPrepError(f"{path}: unknown format {p.suffix!r} (expected .json, .jsonl or .parquet)")
    except DataPrepError:
        raise
    except Exception as e:  # unreadable parquet, bad JSON, bad encoding
        raise DataPrepError(f"{path}: cannot be read ({type(e).__name__}: {e})") from None
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise DataPrepError(f"{path}: expected a list of JSON objects (one per problem)")
    return rows


def read_hub(src: Source, hf_name: str, split: str) -> Iterable[dict]:
    import datasets

    return datasets.load_dataset(hf_name, src.hf_config, split=split)


def parse_pairs(items: list[str], what: str) -> dict[str, str]:
    out = {}
    for item in items or []:
        if "=" not in item:
            raise DataPrepError(f"{what} {item!r}: expected NAME=VALUE")
        k, v = item.split("=", 1)
        out[k.strip()] = v.strip()
    return out


def parse_maps(items: list[str]) -> dict[str, dict]:
    maps: dict[str, dict] = {}
    for item in items or []:
        name, _, spec = item.partition(":")
        if not spec:
            raise DataPrepError(f"--map {item!r}: expected NAME:role=column,role=column")
        maps[name] = parse_pairs(spec.split(","), "--map")
    return maps


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="output directory")
    ap.add_argument("--train", default="math", help="training source (default: MATH train); 'none' to skip")
    ap.add_argument("--eval", default=",".join(EVAL_SETS), help="comma-separated evaluation sets")
    ap.add_argument("--levels", default="3,4,5", help="MATH difficulty levels kept for training ('all' keeps all)")
    ap.add_argument("--local", action="append", help="NAME=PATH: read NAME from a local json/jsonl/parquet file")
    ap.add_argument("--hf-name", action="append", help="NAME=HUB_ID: another hub copy of NAME")
    ap.add_argument("--split", action="append", help="NAME=SPLIT")
    ap.add_argument("--map", action="append", help="NAME:role=column,...  (roles: question solution answer level subject id)")
    ap.add_argument("--instruction", default=DEFAULT_INSTRUCTION)
    ap.add_argument("--instruction-role", choices=["system", "user"], default="system",
                    help="system message (Qwen2.5-Math CoT style) or appended to the user turn")
    ap.add_argument("--max-rows", type=int, default=None, help="read at most this many rows per source")
    args = ap.parse_args(argv)

    try:
        local = parse_pairs(args.local, "--local")
        hub = parse_pairs(args.hf_name, "--hf-name")
        splits = parse_pairs(args.split, "--split")
        maps = parse_maps(args.map)
        evals = [e for e in args.eval.split(",") if e]
        names = evals + ([args.train] if args.train != "none" else [])
        unknown = [n for n in names if n not in SOURCES]
        if unknown:
            raise DataPrepError(f"unknown dataset(s) {unknown}; known: {sorted(SOURCES)}")
        levels = None if args.levels == "all" else {int(x) for x in args.levels.split(",")}
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)

        def rows_of(name: str) -> list[dict]:
            src = SOURCES[name]
            rows = read_local(local[name]) if name in local else list(
                read_hub(src, hub.get(name, src.hf_name), splits.get(name, src.split)))
            return rows[: args.max_rows] if args.max_rows else rows

        summary: dict[str, dict] = {}
        exclude = {}
        common = dict(instruction=args.instruction, instruction_role=args.instruction_role)
        for name in evals:
            rows = rows_of(name)
            converted, skipped = convert(rows, SOURCES[name], "test", maps.get(name), **common)
            pd.DataFrame(converted).to_parquet(out / f"{name}.parquet")
            summary[name] = {"read": len(rows), "written": len(converted), "skipped": dict(skipped)}
            questions = [r["extra_info"]["question"] for r in converted]
            exclude[name] = ({norm_question(q) for q in questions}, set().union(*map(ngrams, questions)))
        if args.train != "none":
            rows = rows_of(args.train)
            converted, skipped = convert(rows, SOURCES[args.train], "train", maps.get(args.train), levels=levels,
                                         exclude=exclude, **common)
            pd.DataFrame(converted).to_parquet(out / "train.parquet")
            summary["train"] = {"source": args.train, "read": len(rows), "written": len(converted),
                                "skipped": dict(skipped)}
    except DataPrepError as e:
        print(f"data_prep: error: {e}", file=sys.stderr)
        return 2

    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(f"{'set':<15}{'read':>8}{'written':>9}  skipped")
    for name, s in summary.items():
        skipped = ", ".join(f"{k} {v}" for k, v in sorted(s["skipped"].items())) or "-"
        print(f"{name:<15}{s['read']:>8}{s['written']:>9}  {skipped}")
        assert s["read"] == s["written"] + sum(s["skipped"].values())  # every row accounted for
    print(f"wrote {out}/ (summary.json has the counts)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

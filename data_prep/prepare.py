"""Turn the MATH family into verl parquet: one training set and the evaluation sets.

    python -m data_prep.prepare --out $DATA_DIR                      # from the Hugging Face hub
    python -m data_prep.prepare --out $DATA_DIR --levels 3,4,5 \\
        --local math=train.jsonl --local math500=test.parquet --map math:question=problem

Writes `train.parquet` (the training source, default MATH train, contamination-checked against
every evaluation set), `<name>.parquet` per evaluation set, and `summary.json`. The summary
gives, per set, its input, the rows read, written and skipped by reason, and
read = written + the sum of the skips (rows past --max-rows are skipped as max_rows).
Questions over --max-question-chars (default 20000) and ground truths over --max-answer-chars
(default 1000, the verifier's limit: it scores any longer answer as wrong) are skipped as too_long.
The other skip reasons (data_prep/convert.py lists them all) include answers that are no answer
(bad_answer_type:<type> for a bool, a dict/struct, a nested list...; non_finite_answer;
float_answer for a float carrying binary rounding noise such as 0.30000000000000004), text
parquet cannot store (bad_text: a lone surrogate such as a JSON "\\ud800" escape), and
conflicting_duplicate (a question repeated with a different answer: all its rows are dropped).
The printed table names every reason with its count.

Errors stop the run before anything is written, with one line on stderr and exit status 2: a
bad argument (also a --local, --hf-name, --split or --map for a set that is neither in --eval
nor the --train source, and an --instruction that is not valid text), a file that cannot be read
(invalid JSON or invalid UTF-8 is named by its line), and a set of which no row survives (the
message names the input and the main skip reason, e.g. a question column that is not in the
file). Files are written under temporary names and renamed into place once all are written; a
write that fails before the renames removes what it wrote (and the --out folders it created) and
is reported the same way, leaving an earlier run's files as they were.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections import Counter
from pathlib import Path
from typing import Iterable, Optional

import pandas as pd

from data_prep.convert import (MAX_ANSWER_CHARS, MAX_QUESTION_CHARS, columns_of, convert, is_text, ngrams,
                               norm_question)
from data_prep.sources import DEFAULT_INSTRUCTION, EVAL_SETS, SOURCES, Source
from treerpo import quiet

ROLES = ("question", "solution", "answer", "level", "subject", "id")


class DataPrepError(Exception):
    """A bad input or argument; main prints it as one line and exits 2."""


# ---- arguments ---------------------------------------------------------------------------------
class Parser(argparse.ArgumentParser):
    """argparse whose errors are DataPrepErrors (one line, exit 2) instead of usage + exit."""

    def error(self, message):
        raise DataPrepError(message)


def positive_int(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}")
    return n


def level_set(text: str) -> Optional[set[int]]:
    if text == "all":
        return None
    try:
        return {int(x) for x in text.split(",")}
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers such as 3,4,5, or 'all'; got {text!r}")


def build_parser() -> Parser:
    ap = Parser(prog="data_prep", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="output directory")
    ap.add_argument("--train", default="math", help="training source (default: MATH train); 'none' to skip")
    ap.add_argument("--eval", default=",".join(EVAL_SETS), help="comma-separated evaluation sets")
    ap.add_argument("--levels", type=level_set, default="3,4,5",
                    help="MATH difficulty levels kept for training ('all' keeps all)")
    ap.add_argument("--local", action="append", help="NAME=PATH: read NAME from a local json/jsonl/parquet file")
    ap.add_argument("--hf-name", action="append", help="NAME=HUB_ID: another hub copy of NAME")
    ap.add_argument("--split", action="append", help="NAME=SPLIT")
    ap.add_argument("--map", action="append", help=f"NAME:role=column,...  (roles: {' '.join(ROLES)})")
    ap.add_argument("--instruction", default=DEFAULT_INSTRUCTION)
    ap.add_argument("--instruction-role", choices=["system", "user"], default="system",
                    help="system message (Qwen2.5-Math CoT style) or appended to the user turn")
    ap.add_argument("--max-rows", type=positive_int, default=None,
                    help="use only the first N rows of each source (the rest count as skipped: max_rows)")
    ap.add_argument("--max-question-chars", type=positive_int, default=MAX_QUESTION_CHARS,
                    help=f"skip longer questions as too_long (default {MAX_QUESTION_CHARS})")
    ap.add_argument("--max-answer-chars", type=positive_int, default=MAX_ANSWER_CHARS,
                    help=f"skip longer ground truths as too_long (default {MAX_ANSWER_CHARS}, the verifier's limit)")
    ap.add_argument("--verbose", action="store_true",
                    help="show third-party warnings too (also TREERPO_VERBOSE=1; treerpo/quiet.py)")
    return ap


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
        if not spec or any("=" not in pair for pair in spec.split(",")):
            raise DataPrepError(f"--map {item!r}: expected NAME:role=column,role=column")
        pairs = parse_pairs(spec.split(","), "--map")
        bad = [role for role in pairs if role not in ROLES]
        if bad:
            raise DataPrepError(f"--map {item!r}: unknown role {bad[0]!r} (roles: {' '.join(ROLES)})")
        maps[name] = pairs
    return maps


def check_known(option: str, names: Iterable[str]) -> None:
    unknown = [n for n in names if n not in SOURCES]
    if unknown:
        raise DataPrepError(f"{option}: unknown dataset {unknown[0]!r}; known: {', '.join(sorted(SOURCES))}")


def check_used(option: str, given: dict, evals: list[str], train: str) -> None:
    """A per-set option (--local, --hf-name, --split, --map) for a set this run does not prepare
    would be silently ignored: an error naming the set."""
    used = set(evals) | ({train} if train != "none" else set())
    unused = [n for n in given if n not in used]
    if unused:
        name = unused[0]
        value = given[name] if isinstance(given[name], str) else ",".join(f"{k}={v}" for k, v in given[name].items())
        shown = f"{name}:{value}" if option == "--map" else f"{name}={value}"
        raise DataPrepError(f"{option} {shown}: {name!r} is not prepared in this run "
                            f"(--eval {','.join(evals) or '(none)'}, --train {train}); "
                            f"add it to --eval or --train, or drop this {option}")


# ---- reading -----------------------------------------------------------------------------------
def read_local(path: str) -> list[dict]:
    p = Path(path)
    if not p.exists():
        raise DataPrepError(f"{path}: no such file")
    if not p.is_file():
        raise DataPrepError(f"{path}: not a regular file")
    try:
        if p.suffix == ".parquet":
            return pd.read_parquet(p).to_dict(orient="records")
        data = p.read_bytes()
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as e:
            line = data.count(b"\n", 0, e.start) + 1
            raise DataPrepError(f"{path}: line {line} is not valid UTF-8 "
                                f"(byte 0x{data[e.start]:02x}: {e.reason})") from None
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
        raise DataPrepError(f"{path}: cannot be read ({type(e).__name__}: {first_line(e)})") from None
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise DataPrepError(f"{path}: expected a list of JSON objects (one per problem)")
    return rows


def read_hub(src: Source, hf_name: str, split: str) -> Iterable[dict]:
    import datasets

    return datasets.load_dataset(hf_name, src.hf_config, split=split)


def first_line(e: Exception) -> str:
    return (str(e).strip().splitlines() or [""])[0]


def read_source(name: str, local: dict, hub: dict, splits: dict) -> tuple[str, list[dict]]:
    """(a label naming the input, its rows) for dataset `name`: the local file, else the hub copy."""
    if name in local:
        return local[name], read_local(local[name])
    src = SOURCES[name]
    hf_name, split = hub.get(name, src.hf_name), splits.get(name, src.split)
    label = f"hub dataset {hf_name} (split {split})"
    try:
        return label, list(read_hub(src, hf_name, split))
    except Exception as e:  # no network, no such dataset or split, datasets not installed
        raise DataPrepError(f"{label}: cannot be loaded ({type(e).__name__}: {first_line(e)})") from None


# ---- one split ---------------------------------------------------------------------------------
def column_hint(name: str, reason: str, rows: list[dict], src: Source, cols: dict) -> str:
    """Why no row had a question/answer, when the reason is a column absent from every row."""
    if reason == "missing_question":
        roles = ["question"]
    elif reason == "missing_answer":
        roles = ["answer", "solution"] if src.truth == "answer" else ["solution"]
    else:
        return ""
    roles = [r for r in roles if r in cols]
    present = set().union(*(r.keys() for r in rows))
    if not roles or any(cols[r] in present for r in roles):
        return ""
    wanted = " or ".join(repr(cols[r]) for r in roles)
    return (f"; it has no column {wanted} (its columns: {', '.join(sorted(map(str, present)))}); "
            f"name the right one with --map {name}:{roles[0]}=COLUMN")


def nothing_written(name: str, label: str, rows: list[dict], skipped: Counter, src: Source, cols: dict) -> str:
    if not rows:
        return f"{name}: {label} has no rows"
    reason, count = skipped.most_common(1)[0]
    return (f"{name}: no row written from {label}: {count} of {len(rows)} skipped as {reason}"
            + column_hint(name, reason, rows, src, cols))


def convert_split(name: str, split: str, label: str, rows: list[dict], max_rows: Optional[int],
                  columns: Optional[dict], **kwargs) -> tuple[list[dict], dict]:
    """Convert one set; returns (verl rows, its summary entry). No surviving row is an error."""
    src = SOURCES[name]
    used = rows[:max_rows] if max_rows else rows
    converted, skipped = convert(used, src, split, columns, **kwargs)
    if not converted:
        raise DataPrepError(nothing_written(name, label, used, skipped, src, columns_of(src, columns)))
    if len(used) < len(rows):
        skipped["max_rows"] = len(rows) - len(used)
    entry = {"input": label, "read": len(rows), "written": len(converted), "skipped": dict(sorted(skipped.items()))}
    if entry["read"] != entry["written"] + sum(skipped.values()):  # a bug here, never the input's fault
        raise RuntimeError(f"{name}: the summary does not add up: {entry}")
    return converted, entry


# ---- the run -----------------------------------------------------------------------------------
def prepare(args: argparse.Namespace) -> tuple[Path, dict[str, dict]]:
    local = parse_pairs(args.local, "--local")
    hub = parse_pairs(args.hf_name, "--hf-name")
    splits = parse_pairs(args.split, "--split")
    maps = parse_maps(args.map)
    for option, given in (("--local", local), ("--hf-name", hub), ("--split", splits), ("--map", maps)):
        check_known(option, given)
    evals = list(dict.fromkeys(e.strip() for e in args.eval.split(",") if e.strip()))
    check_known("--eval", evals)
    if args.train != "none":
        check_known("--train", [args.train])
    elif not evals:
        raise DataPrepError("nothing to prepare: --eval is empty and --train is none")
    for option, given in (("--local", local), ("--hf-name", hub), ("--split", splits), ("--map", maps)):
        check_used(option, given, evals, args.train)
    if not is_text(args.instruction):
        raise DataPrepError(f"--instruction {args.instruction!r}: not valid text (a lone surrogate; "
                            f"undecodable bytes on the command line?)")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise DataPrepError(f"--out {out}: exists and is not a directory")

    common = dict(instruction=args.instruction, instruction_role=args.instruction_role,
                  max_question_chars=args.max_question_chars, max_answer_chars=args.max_answer_chars)
    tables: dict[str, list[dict]] = {}
    summary: dict[str, dict] = {}
    exclude = {}
    for name in evals:
        label, rows = read_source(name, local, hub, splits)
        tables[name], summary[name] = convert_split(name, "test", label, rows, args.max_rows, maps.get(name), **common)
        questions = [r["extra_info"]["question"] for r in tables[name]]
        exclude[name] = ({norm_question(q) for q in questions}, set().union(*map(ngrams, questions)))
    if args.train != "none":
        label, rows = read_source(args.train, local, hub, splits)
        tables["train"], entry = convert_split(args.train, "train", label, rows, args.max_rows, maps.get(args.train),
                                               levels=args.levels, exclude=exclude, **common)
        summary["train"] = {"source": args.train, **entry}
    write(out, tables, summary)
    return out, summary


def write(out: Path, tables: dict[str, list[dict]], summary: dict) -> None:
    """Write every file under a temporary name, then rename them all into place; on any failure
    remove what this call wrote (and the folders it created) and raise a DataPrepError."""
    created = [d for d in (out, *out.parents) if not d.exists()]  # deepest first
    temps: dict[Path, Path] = {}
    try:
        out.mkdir(parents=True, exist_ok=True)
        for stem, rows in tables.items():
            final = out / f"{stem}.parquet"
            temps[final] = out / f".{stem}.parquet.partial"
            pd.DataFrame(rows).to_parquet(temps[final])
        temps[out / "summary.json"] = out / ".summary.json.partial"
        temps[out / "summary.json"].write_text(json.dumps(summary, indent=2))
        for final, temp in temps.items():
            os.replace(temp, final)
    except Exception as e:  # a full disk, no permission, or text parquet cannot store: never a traceback
        for temp in temps.values():
            try:
                temp.unlink(missing_ok=True)
            except OSError:
                pass
        for d in created:
            try:
                d.rmdir()
            except OSError:
                break
        detail = e.strerror if isinstance(e, OSError) and e.strerror else f"{type(e).__name__}: {first_line(e)}"
        raise DataPrepError(f"--out {out}: cannot be written ({detail})") from None


def print_summary(out: Path, summary: dict[str, dict]) -> None:
    print(f"{'set':<15}{'read':>8}{'written':>9}  skipped")
    for name, s in summary.items():
        skipped = ", ".join(f"{k} {v}" for k, v in s["skipped"].items()) or "-"
        print(f"{name:<15}{s['read']:>8}{s['written']:>9}  {skipped}")
    print(f"wrote {out}/ (summary.json has the counts)")


def main(argv=None) -> int:
    try:
        args = build_parser().parse_args(argv)
        quiet.install(args.verbose)
        out, summary = prepare(args)
    except DataPrepError as e:
        print(f"data_prep: error: {e}", file=sys.stderr)
        return 2
    print_summary(out, summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())

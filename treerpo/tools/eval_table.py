"""The papers' table over evaluated checkpoints: methods as rows, benchmarks as columns.

    python -m treerpo.tools.eval_table GRPO=runs/eval/grpo TreeRPO=runs/eval/treerpo TreePO=runs/eval/treepo
    python -m treerpo.tools.eval_table base=runs/eval/base GRPO=runs/eval/grpo-s0,runs/eval/grpo-s1 ...

Each argument is LABEL=DIR[,DIR...], a DIR being an `evaluate --out` folder (its results.json).
Every cell is avg@k in % (the mean over the k samples of each problem, averaged over the
problems: Pass@1 as the papers report it) with its 95% interval:

    one folder per label    a bootstrap over problems (resampling problems; the average column
                            resamples each benchmark's problems and averages)
    several (seeds)         Student's t over the folders' values (treerpo/stats.py)

then the average over benchmarks and the mean response length in tokens. Below it, each label
minus the baseline (`--baseline`, default GRPO when present, else the first): per benchmark the
difference with its interval and the two-sided p of a paired test, paired by problem with one
folder per label (the mean over benchmarks of the per-problem differences, each benchmark
weighted equally, with its t-interval and t-test, Welch-Satterthwaite degrees of freedom; the
folders must hold the same problems), by seed with several (t-test and the exact sign-flip test
over seeds). Writes nothing; `--out FILE` saves the
markdown too.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from treerpo.stats import mean_ci, paired, t_quantile, t_two_sided_p


class TableError(ValueError):
    pass


def load(folder: str) -> dict:
    path = Path(folder) / "results.json"
    if not path.is_file():
        raise TableError(f"{folder}: no results.json in it (not an `evaluate --out` folder)")
    res = json.loads(path.read_text())
    samples = Path(folder) / "samples.jsonl"
    for name, b in res["benchmarks"].items():
        if "per_problem" not in b and samples.is_file():  # results written without per-problem rates
            right: dict = {}
            for line in samples.read_text().splitlines():
                rec = json.loads(line)
                if rec["benchmark"] == name:
                    right.setdefault(rec["problem"], []).append(float(rec["correct"]))
            b["per_problem"] = [float(np.mean(right[i])) for i in sorted(right)]
    return res


def parse_runs(args: list[str]) -> dict[str, list[dict]]:
    runs: dict[str, list[dict]] = {}
    for arg in args:
        label, sep, folders = arg.partition("=")
        if not sep or not label or not folders:
            raise TableError(f"{arg!r}: expected LABEL=DIR[,DIR...]")
        if label in runs:
            raise TableError(f"label {label!r} given twice")
        runs[label] = [load(f) for f in folders.split(",")]
    return runs


def benchmarks_of(runs: dict[str, list[dict]]) -> list[str]:
    names = None
    for results in runs.values():
        for r in results:
            have = [n for n, b in r["benchmarks"].items() if b["problems"] > 0]
            names = have if names is None else [n for n in names if n in have]
    if not names:
        raise TableError("the folders share no benchmark")
    return names


def _bootstrap(values: list[np.ndarray], n: int = 2000, seed: int = 0) -> tuple[float, float]:
    """95% bootstrap interval of the mean over benchmarks of each benchmark's mean over problems."""
    rng = np.random.default_rng(seed)
    draws = np.zeros(n)
    for v in values:
        draws += v[rng.integers(0, len(v), size=(n, len(v)))].mean(axis=1)
    draws /= len(values)
    return float(np.percentile(draws, 2.5)), float(np.percentile(draws, 97.5))


def cell(results: list[dict], names: list[str]) -> dict:
    """avg@k over `names` (one benchmark, or several averaged) with its interval."""
    if len(results) == 1:
        per = [np.asarray(results[0]["benchmarks"][n]["per_problem"]) for n in names]
        lo, hi = _bootstrap(per)
        return {"mean": float(np.mean([p.mean() for p in per])), "lo": lo, "hi": hi, "n": 1}
    vals = [float(np.mean([r["benchmarks"][n]["pass@1"] for n in names])) for r in results]
    return mean_ci(vals)


def difference(a: list[dict], b: list[dict], names: list[str]) -> dict:
    """b - a over `names`: paired by problem (one folder each) or by seed (several)."""
    if len(a) == 1 and len(b) == 1:
        for n in names:
            x, y = a[0]["benchmarks"][n], b[0]["benchmarks"][n]
            same = len(x["per_problem"]) == len(y["per_problem"]) and \
                x.get("problems_digest", "") == y.get("problems_digest", "")
            if not same:
                raise TableError(f"{n}: paired by problem, the two folders must hold the same problems "
                                 "(evaluated on the same parquet)")
        per_bench = [np.asarray(b[0]["benchmarks"][n]["per_problem"]) - np.asarray(a[0]["benchmarks"][n]["per_problem"])
                     for n in names]
        # D = mean over benchmarks of the mean per-problem difference; Var D = sum_b v_b / B^2 with
        # v_b = s_b^2 / n_b; degrees of freedom by Welch-Satterthwaite: (sum v_b)^2 / sum v_b^2 / (n_b - 1)
        d = float(np.mean([x.mean() for x in per_bench]))
        v = [x.var(ddof=1) / len(x) for x in per_bench if len(x) > 1]
        se = float(np.sqrt(sum(v))) / len(per_bench)
        den = sum(vb * vb / (len(x) - 1) for vb, x in zip(v, [x for x in per_bench if len(x) > 1]))
        df = max(sum(v) ** 2 / den, 1.0) if den > 0 else max(sum(len(x) for x in per_bench) - len(per_bench), 1)
        half = t_quantile(0.975, df) * se
        p = t_two_sided_p(d / se, df) if se > 0 else (1.0 if d == 0 else 0.0)
        return {"mean": d, "lo": d - half, "hi": d + half, "n": int(sum(len(x) for x in per_bench)), "t_p": p,
                "pairs": "problems"}
    va = [float(np.mean([r["benchmarks"][n]["pass@1"] for n in names])) for r in a]
    vb = [float(np.mean([r["benchmarks"][n]["pass@1"] for n in names])) for r in b]
    if len(va) != len(vb):
        raise TableError("paired by seed, the two labels need as many folders")
    out = paired(vb, va)
    out["pairs"] = "seeds"
    return out


def tokens(results: list[dict], names: list[str]) -> float:
    return float(np.mean([np.mean([r["benchmarks"][n]["mean_tokens"] for n in names]) for r in results]))


def fmt(ci: dict, signed: bool = False) -> str:
    s = "+" if signed else ""
    return f"{100 * ci['mean']:{s}.1f} [{100 * ci['lo']:{s}.1f}, {100 * ci['hi']:{s}.1f}]"


def table(runs: dict[str, list[dict]], baseline: str | None = None) -> tuple[str, dict]:
    names = benchmarks_of(runs)
    k = {r["settings"]["k"] for rs in runs.values() for r in rs}
    header = ["method", "checkpoints"] + names + ["Avg", "mean tokens"]
    lines = [f"avg@{'/'.join(map(str, sorted(k)))} (%), mean [95% CI]", "",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    data: dict = {"benchmarks": names, "rows": {}, "minus_baseline": {}}
    for label, results in runs.items():
        cells = {n: cell(results, [n]) for n in names}
        cells["Avg"] = cell(results, names)
        data["rows"][label] = {**cells, "tokens": tokens(results, names)}
        lines.append(f"| {label} | {len(results)} | " + " | ".join(fmt(cells[c]) for c in names + ["Avg"])
                     + f" | {tokens(results, names):.0f} |")
    baseline = baseline or ("GRPO" if "GRPO" in runs else next(iter(runs)))
    if baseline not in runs:
        raise TableError(f"--baseline {baseline!r} is not one of the labels {list(runs)}")
    others = [label for label in runs if label != baseline]
    if others:
        header = [f"method - {baseline}"] + names + ["Avg", "p (t)", "paired by", "tokens"]
        lines += ["", f"Each method minus {baseline} (points), mean [95% CI]", "",
                  "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for label in others:
            diffs = {n: difference(runs[baseline], runs[label], [n]) for n in names}
            diffs["Avg"] = difference(runs[baseline], runs[label], names)
            rel = tokens(runs[label], names) / tokens(runs[baseline], names) - 1
            data["minus_baseline"][label] = {**diffs, "tokens_relative": rel}
            p = diffs["Avg"]["t_p"]
            lines.append(f"| {label} | " + " | ".join(fmt(diffs[c], True) for c in names + ["Avg"])
                         + f" | {p:.3g} | {diffs['Avg']['pairs']} | {100 * rel:+.1f}% |")
    return "\n".join(lines), data


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m treerpo.tools.eval_table", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+", help="LABEL=DIR[,DIR...]: evaluate --out folders per method")
    ap.add_argument("--baseline", default=None, help="the label the others are compared with (default GRPO)")
    ap.add_argument("--out", default=None, help="also write the markdown to this file")
    args = ap.parse_args(argv)
    try:
        text, _ = table(parse_runs(args.runs), args.baseline)
    except TableError as e:
        print(f"eval_table: error: {e}", file=sys.stderr)
        return 2
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

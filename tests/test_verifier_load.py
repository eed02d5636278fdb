"""The reward path under load: four scoring processes at once, each importing torch first (as
verl's reward workers do), score a few hundred answers that only math-verify can decide, with
the default per-answer timeout. Every verdict must be right, none may time out, and the whole
run must finish in bounded time."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import treerpo
from treerpo.reward.cases import math_verify_cases
from treerpo.reward.verifier import score_answer

ROOT = Path(treerpo.__file__).resolve().parent.parent  # the tree under test
WORKERS = 4
PER_WORKER = 75  # 300 answers in all
SCORING_BUDGET_S = 120.0  # per worker, torch import excluded; measured 15 s on 2 cores at load 9
RUN_BUDGET_S = 300.0  # the whole run, start-up included; measured 31 s

WORKER = r'''
import json
import sys
import time

import torch  # first, as in verl's reward workers: a heavy __main__ must not slow the helper

import treerpo.reward.verifier as verifier

if __name__ == "__main__":
    cases = json.loads(open(sys.argv[1]).read())
    t0 = time.perf_counter()
    results = []
    for gold, pred, _ in cases:
        v = verifier.score_answer(f"The answer is $\\boxed{{{pred}}}$.", gold)
        results.append([v.method, v.correct])
        if v.method in ("timeout", "helper_error"):
            break  # one is already a failure; don't wait out the rest
    stats = getattr(verifier, "verifier_stats", dict)()
    out = {"results": results, "seconds": time.perf_counter() - t0, "stats": stats}
    open(sys.argv[2], "w").write(json.dumps(out))
'''


def test_cases_need_math_verify():
    """Neither the string nor the number fast path decides any of them, and all are distinct."""
    cases = math_verify_cases(WORKERS * PER_WORKER, seed=0)
    assert len({(gold, pred) for gold, pred, _ in cases}) == len(cases)  # no cache hits
    for gold, pred, _ in cases:
        assert score_answer(f"\\boxed{{{pred}}}", gold, use_math_verify=False).method == "mismatch"


def test_four_torch_workers_score_hundreds_of_math_verify_answers(tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    cases = math_verify_cases(WORKERS * PER_WORKER, seed=0)
    shards = [cases[k::WORKERS] for k in range(WORKERS)]
    procs = []
    t0 = time.perf_counter()
    for k, shard in enumerate(shards):
        (tmp_path / f"cases{k}.json").write_text(json.dumps(shard))
        procs.append(subprocess.Popen([sys.executable, str(script), str(tmp_path / f"cases{k}.json"),
                                       str(tmp_path / f"out{k}.json")], cwd=tmp_path, env=env))
    try:
        for p in procs:
            assert p.wait(timeout=max(1.0, RUN_BUDGET_S - (time.perf_counter() - t0))) == 0
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    wall = time.perf_counter() - t0
    outs = [json.loads((tmp_path / f"out{k}.json").read_text()) for k in range(WORKERS)]
    methods = [m for out in outs for m, _ in out["results"]]
    assert "timeout" not in methods and "helper_error" not in methods, sorted(set(methods))
    for shard, out in zip(shards, outs):
        assert len(out["results"]) == len(shard)
        for (gold, pred, is_right), (method, correct) in zip(shard, out["results"]):
            assert (method, correct) == (("math_verify", True) if is_right else ("mismatch", False)), (gold, pred)
        assert out["stats"]["timeouts"] == 0 and out["stats"]["helper_errors"] == 0
        assert out["stats"]["math_verify_calls"] == len(shard)  # every answer compared by math-verify
        assert out["stats"]["helper_starts"] == 1  # started once, warm throughout
        assert out["seconds"] < SCORING_BUDGET_S
    print(f"\n{len(methods)} math-verify answers from {WORKERS} torch workers in {wall:.1f} s wall; "
          f"scoring {max(o['seconds'] for o in outs):.1f} s in the slowest worker")

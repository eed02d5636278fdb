"""Paired comparison of two validations from verl's dumps (treerpo.tiny.val_dump)."""

import json
import math

import pytest

from treerpo.tiny.val_dump import outcomes, paired_change, run_change, sign_test_p


def dump(path, scores: dict):
    path.write_text("".join(json.dumps({"input": k, "output": "...", "gts": "1", "score": v, "step": 0}) + "\n"
                            for k, vs in scores.items() for v in (vs if isinstance(vs, list) else [vs])))


def test_sign_test_matches_the_binomial_tail():
    assert sign_test_p(0, 0) == 1.0 and sign_test_p(3, 3) == 1.0
    assert sign_test_p(5, 0) == pytest.approx(2 / 32)  # 2 * (1/2)^5
    assert sign_test_p(0, 5) == sign_test_p(5, 0)
    assert sign_test_p(30, 10) == pytest.approx(2 * sum(math.comb(40, k) for k in range(11)) / 2**40)
    assert sign_test_p(30, 10) < 0.01 < sign_test_p(12, 8)


def test_paired_change_counts_problems_that_flipped(tmp_path):
    dump(tmp_path / "0.jsonl", {"a": 0.0, "b": 1.0, "c": 0.0, "d": 1.0, "e": [1.0, 0.0, 0.0]})
    dump(tmp_path / "5.jsonl", {"a": 0.0, "b": 1.0, "c": 1.0, "d": 1.0, "e": [1.0, 1.0, 0.0]})
    dump(tmp_path / "10.jsonl", {"a": 1.0, "b": 0.0, "c": 1.0, "d": 1.0, "e": [1.0, 1.0, 1.0]})
    assert outcomes(tmp_path / "0.jsonl")["e"] == pytest.approx(1 / 3)  # mean over a problem's samples
    change = run_change(tmp_path)  # first (step 0) against last (step 10, though "5.jsonl" sorts after it as text)
    assert (change["from_step"], change["to_step"]) == (0, 10)
    assert (change["problems"], change["gained"], change["lost"]) == (5, 3, 1)  # a, c, e gained; b lost
    assert change["p_value"] == sign_test_p(3, 1)


def test_paired_change_refuses_different_problem_sets():
    with pytest.raises(ValueError, match="different problems"):
        paired_change({"a": 1.0, "b": 0.0}, {"a": 1.0, "c": 0.0})


def test_run_change_needs_two_validations(tmp_path):
    assert run_change(tmp_path / "missing") is None
    dump(tmp_path / "0.jsonl", {"a": 1.0})
    assert run_change(tmp_path) is None

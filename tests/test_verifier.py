"""The math verifier: table-driven equivalences, adversarial input, a timed fuzz run."""

import random
import string
import time

import pytest

from treerpo.verifier import gsm8k_answer, last_boxed, score_answer
from verl_ext.reward import compute_score

RIGHT = [
    ("\\boxed{\\frac{1}{2}}", "0.5"),
    ("\\boxed{0.5}", "\\frac{1}{2}"),
    ("\\boxed{1/2}", "\\frac12"),
    ("\\boxed{\\dfrac{1}{2}}", "\\frac{1}{2}"),
    ("\\boxed{[1, 2)}", "[1,2)"),
    ("\\boxed{(-\\infty, 3]}", "(-\\infty,3]"),
    ("\\boxed{90^\\circ}", "90"),
    ("\\boxed{90^{\\circ}}", "90°"),
    ("\\boxed{5\\text{ cm}}", "5"),
    ("\\boxed{\\$18.90}", "18.90"),
    ("\\boxed{1,000}", "1000"),
    ("\\boxed{\\text{Monday}}", "\\text{Monday}"),
    ("\\boxed{\\text{(C)}}", "\\text{(C)}"),
    ("\\boxed{x=5}", "5"),
    ("\\boxed{2\\sqrt{2}}", "\\sqrt{8}"),
    ("\\boxed{\\left( 3, \\frac{\\pi}{2} \\right)}", "\\left( 3, \\frac{\\pi}{2} \\right)"),
    ("first \\boxed{7} then \\boxed{8}", "8"),  # the last box counts
    ("\\boxed 5", "5"),
    ("\\boxed{\\{1,2\\}}", "\\{1,2\\}"),
    ("\\fbox{42}", "42"),
]
WRONG = [
    ("\\boxed{3}", "4"),
    ("\\boxed{\\frac{1}{3}}", "0.5"),
    ("\\boxed{[1, 2]}", "[1,2)"),
    ("\\boxed{\\text{Tuesday}}", "\\text{Monday}"),
    ("the answer is 4", "4"),  # no box
    ("\\boxed{4", "4"),  # unbalanced
    ("", "4"),
    ("\\boxed{}", "4"),
]


@pytest.mark.parametrize("response, truth", RIGHT)
def test_equivalent_answers_are_right(response, truth):
    assert score_answer(response, truth).correct


@pytest.mark.parametrize("response, truth", WRONG)
def test_wrong_answers_are_wrong(response, truth):
    assert not score_answer(response, truth).correct


def test_extraction():
    assert last_boxed("a \\boxed{\\frac{a}{b}} b") == "\\frac{a}{b}"
    assert last_boxed("\\boxed{{{x}}}") == "{{x}}"
    assert last_boxed("\\boxed{x") is None
    assert gsm8k_answer("blah\n#### 1,234") == "1234"


def test_reward_function_shape():
    out = compute_score("math500", "so \\boxed{0.5}", "\\frac12")
    assert out == {"score": 1.0, "acc": True, "pred": "0.5"}
    assert compute_score("x", "\\boxed{3}", "4", incorrect_score=-1.0)["score"] == -1.0


ADVERSARIAL = [
    "\\boxed{" + "{" * 5000 + "}" * 4999,  # unbalanced, deep
    "\\boxed{" + "9^{" * 50 + "9" + "}" * 50 + "}",  # a tower sympy would try to evaluate
    "\\boxed{" + "1" * 999 + "}",
    "x" * (1 << 20) + "\\boxed{1}",  # 1 MB string
    "\\boxed{\\frac{\\frac{\\frac{1}{2}}{3}}{" * 200,
    "\\boxed{\\sqrt[" + "9" * 300 + "]{2}}",
    "\\boxed{}}}}}",
    "\\boxed{\\begin{pmatrix}" + "1&" * 400 + "1\\end{pmatrix}}",
    "\x00\\boxed{\x00}",
    "\\boxed{\\int_0^\\infty e^{-x^{" + "9" * 40 + "}} dx}",
]


def test_adversarial_inputs_score_zero_fast():
    for s in ADVERSARIAL:
        t0 = time.perf_counter()
        v = score_answer(s, "2", timeout=2.0)
        assert time.perf_counter() - t0 < 10
        assert v.correct is False


def test_hang_is_cut_by_hard_timeout():
    t0 = time.perf_counter()
    v = score_answer("\\boxed{9^{9^{9^{9^{9}}}}}", "10^{10^{10^{10}}}", timeout=1.0)
    assert not v.correct
    assert time.perf_counter() - t0 < 8
    assert score_answer("\\boxed{0.25}", "\\frac14").correct  # the helper restarts afterwards


def test_fuzz_1000_random_and_adversarial_strings_within_budget():
    rng = random.Random(0)
    alphabet = string.printable + "\\{}^_$°√∞"
    pieces = ["\\boxed{", "}", "{", "\\frac", "\\sqrt", "^", "_", "\\left(", "\\right)", "\\text{", "9", "x", "=",
              "\\infty", "[", ")", "\\pi", ",", "."]
    inputs = []
    for i in range(1000):
        if i % 3 == 0:
            s = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 200)))
        else:
            s = "".join(rng.choice(pieces) for _ in range(rng.randint(1, 60)))
        inputs.append(s)
    inputs += ADVERSARIAL
    truths = ["\\frac{1}{2}", "3", "x^2", "[1,2)", "\\text{yes}"]
    t0 = time.perf_counter()
    for i, s in enumerate(inputs):
        v = score_answer(s, truths[i % len(truths)], timeout=1.0)
        assert isinstance(v.correct, bool)
    assert time.perf_counter() - t0 < 240  # budget: well under the per-call timeout x calls

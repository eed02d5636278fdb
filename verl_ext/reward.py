"""verl custom reward function: the math verifier on the last \\boxed{} answer.

    reward.custom_reward_function.path=pkg://verl_ext.reward
    reward.custom_reward_function.name=compute_score

Returns TreeRPO's 0/1 reward with the verifier's health alongside; every key but "score" becomes
a field of verl's reward_extra_info (numeric ones are averaged into validation metrics), and
every call returns the same keys, as verl needs:
    score                  1.0 or 0.0 (for TreePO's +1/-1, pass `reward.custom_reward_function.
                           reward_kwargs.incorrect_score=-1.0`)
    acc                    bool, the verdict
    pred                   str, the extracted answer ("" if none)
    verify_method          str, how it was decided: bad_ground_truth, no_box, empty_box, string,
                           number, math_verify, mismatch, timeout, helper_error
                           (see treerpo.reward.verifier), reward_error (below)
    verify_ms              float, this call's scoring latency in milliseconds
    verify_timeout         int 0/1, this answer got no verdict because its math-verify comparison
                           ran past `timeout`; its mean over a batch is the timeout rate
    verify_timeouts_total  int, timeouts so far in this scoring process (cumulative, so its max over
                           a step is the process's running count)
    reward_error           int 0/1, scoring this sample raised (a bug or an input nothing expected): it
                           scores incorrect_score, the first traceback of the process is logged, and
                           the run goes on; its mean over a batch is the error rate
    bad_ground_truth       int 0/1, the row's ground truth is no answer (None, NaN or infinite, empty
                           text, a bool, dict, list or other non-answer type; see the verifier's
                           docstring): the response scores incorrect_score whatever it says, and
                           the mean over a batch is the share of such rows
`timeout` (a reward_kwargs entry) is the CPU-second budget of one math-verify comparison; the
helper's start-up is never charged to it (treerpo/reward/verifier.py).

A bad ground truth is also logged (logger "verl_ext.reward", level WARNING) with its repr and
data_source, once per distinct (data_source, repr) pair in a scoring process, up to
MAX_BAD_TRUTH_WARNINGS distinct pairs (a last warning says when later ones go unlogged); the
bad_ground_truth field counts every such row regardless.
"""

from __future__ import annotations

import logging
import threading

from treerpo.reward.verifier import DEFAULT_TIMEOUT_S, Verdict, score_answer, verifier_stats

logger = logging.getLogger(__name__)

MAX_BAD_TRUTH_WARNINGS = 100
_REPR_CHARS = 200  # a long bad value (a big dict) is named by the start of its repr
_warned: set[tuple[str, str]] = set()
_warned_lock = threading.Lock()


def _warn_bad_ground_truth(data_source, ground_truth) -> None:
    """Log a bad ground truth once per distinct (data_source, repr) pair; see the module docstring."""
    text = repr(ground_truth)
    if len(text) > _REPR_CHARS:
        text = text[:_REPR_CHARS] + "..."
    key = (str(data_source), text)
    with _warned_lock:
        if key in _warned or len(_warned) > MAX_BAD_TRUTH_WARNINGS:
            return
        _warned.add(key)
        full = len(_warned) > MAX_BAD_TRUTH_WARNINGS
    if full:
        logger.warning("%d distinct bad ground truths logged; later ones are counted in the reward's "
                       "bad_ground_truth field but not logged", MAX_BAD_TRUTH_WARNINGS)
        return
    logger.warning("ground truth %s (data_source %r) is no answer: every response to it scores incorrect_score "
                   "(counted as bad_ground_truth)", text, data_source)


_errors = 0  # reward computations that raised, in this scoring process


def compute_score(data_source, solution_str, ground_truth, extra_info=None, correct_score: float = 1.0,
                  incorrect_score: float = 0.0, timeout: float = DEFAULT_TIMEOUT_S, **kwargs) -> dict:
    global _errors
    try:
        verdict = score_answer(solution_str, ground_truth, timeout=timeout)
    except Exception:  # a failing sample must not stop the run (verl would drop and refill it)
        with _warned_lock:
            _errors += 1
            first = _errors == 1
        if first:
            logger.exception("the reward function raised on a sample (data_source %r); it scores incorrect_score "
                             "and is counted in reward_error (logged once per process)", data_source)
        verdict = Verdict(False, None, "reward_error")
    bad_truth = verdict.method == "bad_ground_truth"
    if bad_truth:
        _warn_bad_ground_truth(data_source, ground_truth)
    return {
        "score": float(correct_score if verdict.correct else incorrect_score),
        "acc": bool(verdict.correct),
        "pred": verdict.predicted or "",
        "verify_method": verdict.method,
        "verify_ms": round(float(verdict.ms), 3),
        "verify_timeout": int(verdict.method == "timeout"),
        "verify_timeouts_total": verifier_stats()["timeouts"],
        "bad_ground_truth": int(bad_truth),
        "reward_error": int(verdict.method == "reward_error"),
    }

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
    verify_method          str, how it was decided: no_box, string, number, math_verify, mismatch,
                           timeout, helper_error (see treerpo.reward.verifier)
    verify_ms              float, this call's scoring latency in milliseconds
    verify_timeout         int 0/1, this answer got no verdict because its math-verify comparison
                           ran past `timeout`; its mean over a batch is the timeout rate
    verify_timeouts_total  int, timeouts so far in this scoring process (cumulative, so its max over
                           a step is the process's running count)
`timeout` (a reward_kwargs entry) is the CPU-second budget of one math-verify comparison; the
helper's start-up is never charged to it (treerpo/reward/verifier.py).
"""

from __future__ import annotations

from treerpo.reward.verifier import DEFAULT_TIMEOUT_S, score_answer, verifier_stats


def compute_score(data_source, solution_str, ground_truth, extra_info=None, correct_score: float = 1.0,
                  incorrect_score: float = 0.0, timeout: float = DEFAULT_TIMEOUT_S, **kwargs) -> dict:
    verdict = score_answer(solution_str, ground_truth, timeout=timeout)
    return {
        "score": float(correct_score if verdict.correct else incorrect_score),
        "acc": bool(verdict.correct),
        "pred": verdict.predicted or "",
        "verify_method": verdict.method,
        "verify_ms": round(float(verdict.ms), 3),
        "verify_timeout": int(verdict.method == "timeout"),
        "verify_timeouts_total": verifier_stats()["timeouts"],
    }

"""verl custom reward function: the math verifier on the last \\boxed{} answer.

    reward.custom_reward_function.path=pkg://verl_ext.reward
    reward.custom_reward_function.name=compute_score

Returns {"score": 1.0 or 0.0, "acc": bool, "pred": str} (TreeRPO's 0/1 reward); extra keys become
verl's reward_extra_info. For TreePO's +1/-1, pass `reward.custom_reward_function.reward_kwargs.
incorrect_score=-1.0`.
"""

from __future__ import annotations

from treerpo.verifier import DEFAULT_TIMEOUT_S, score_answer


def compute_score(data_source, solution_str, ground_truth, extra_info=None, correct_score: float = 1.0,
                  incorrect_score: float = 0.0, timeout: float = DEFAULT_TIMEOUT_S, **kwargs) -> dict:
    verdict = score_answer(solution_str, ground_truth, timeout=timeout)
    return {
        "score": float(correct_score if verdict.correct else incorrect_score),
        "acc": bool(verdict.correct),
        "pred": verdict.predicted or "",
    }

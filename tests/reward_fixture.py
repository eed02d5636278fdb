"""A verl custom reward function for the agent-loop tests: varies between leaves by design."""


def compute_score(data_source, solution_str, ground_truth, extra_info=None, **kwargs):
    return {"score": float(sum(map(ord, solution_str)) % 3 == 0), "length": len(solution_str)}

"""A verl custom reward function for the agent-loop tests: varies between leaves by design.

A graded score in [0, 1] from a checksum of the text (1,000 levels): any two different texts get
different rewards with probability about 0.999, so a step whose leaves are not all the same text
always has reward variance, and the estimators a nonzero advantage. (A 0/1 score with P(1) = 1/3
left all 8 leaves of a 2-prompt step equal in about 4% of runs: a zero gradient at step 1, which
the e2e tests' weight-sync check cannot use.)"""

import zlib


def compute_score(data_source, solution_str, ground_truth, extra_info=None, **kwargs):
    return {"score": (zlib.crc32(solution_str.encode()) % 1000) / 999, "length": len(solution_str)}

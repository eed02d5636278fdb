"""Options of the tree advantage estimators, with their defaults and where the defaults come from.

In a verl run they live in the run config under `tree.advantage` (e.g.
`tree.advantage.tau=0.05`, or `+tree.advantage.tau=0.05` with verl's own `main_ppo`, whose config
has no `tree` group). `verl_ext.estimators` reads them from the config verl hands the estimator.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Mapping

from treerpo.tree import VALUE_RULES

TREERPO_NORMS = ("group", "mean", "batch")
TREEPO_AGGREGATIONS = ("average", "group_size")


@dataclass(frozen=True)
class AdvantageOptions:
    # ---- TreeRPO (`algorithm.adv_estimator=treerpo`) -------------------------------------
    value_rule: str = "recursive_mean"
    """How V(node) is built from the leaf rewards. `recursive_mean`: mean of the children's
    values, bottom-up (TreeRPO paper, default). `leaf_mean`: mean reward of all leaves below the
    node (the open alternative; differs only in trees made unbalanced by early EOS)."""

    norm: str = "batch"
    """Normalisation of the step-level advantage A(c) = V(c) - mean(V(siblings)).
    `group`: divide by the sibling group's std + epsilon (GRPO); `mean`: no division (Dr. GRPO);
    `batch`: divide by the std of all unpruned step-level advantages in the batch. Default
    `batch`: the TreeRPO paper re-normalises because per-group std of fractional values blows
    0.49 vs 0.51 up to +-1; its exact formula is not public (ALGORITHMS.md section 1)."""

    tau: float = 0.1
    """Pruning threshold: a step-level group whose values have (unbiased) std below tau carries no
    signal and all its nodes get advantage 0. Default 0.1, the value a public review of the TreeRPO
    paper quotes. tau=0 disables pruning."""

    epsilon: float = 1e-6
    """Added to a std before dividing (verl's GRPO default)."""

    # ---- TreePO (`algorithm.adv_estimator=treepo`) ---------------------------------------
    aggregation: str = "average"
    """How a leaf's per-group advantages A_ij = R_i - mean(G_j) are combined. `average`: mean over
    its groups (TreePO paper's best, default). `group_size`: weighted by |G_j|."""

    drop_zero_variance_subgroups: bool = False
    """Leave out subgroups (never the root group) whose leaf rewards all agree. Default off: the
    TreePO paper found it worse."""

    def __post_init__(self) -> None:
        if self.value_rule not in VALUE_RULES:
            raise ValueError(f"tree.advantage.value_rule={self.value_rule!r}: expected one of {VALUE_RULES}")
        if self.norm not in TREERPO_NORMS:
            raise ValueError(f"tree.advantage.norm={self.norm!r}: expected one of {TREERPO_NORMS}")
        if self.aggregation not in TREEPO_AGGREGATIONS:
            raise ValueError(
                f"tree.advantage.aggregation={self.aggregation!r}: expected one of {TREEPO_AGGREGATIONS}"
            )
        if not self.tau >= 0:
            raise ValueError(f"tree.advantage.tau={self.tau!r}: must be >= 0")
        if not self.epsilon > 0:
            raise ValueError(f"tree.advantage.epsilon={self.epsilon!r}: must be > 0")

    @classmethod
    def from_mapping(cls, m: Mapping[str, Any] | None) -> "AdvantageOptions":
        """Build from a dict-like config node; unknown keys are an error (a typo must not pass)."""
        if m is None:
            return cls()
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(m.keys()) - names)
        if unknown:
            raise ValueError(f"unknown tree.advantage option(s) {unknown}; known: {sorted(names)}")
        return cls(**{k: m[k] for k in m.keys()})

"""Options of the tree advantage estimators, with their defaults and where the defaults come from.

In a verl run they live in the run config under `tree.advantage` (e.g.
`tree.advantage.tau=0.05`, or `+tree.advantage.tau=0.05` with verl's own `main_ppo`, whose config
has no `tree` group). `verl_ext.estimators` reads them from the config verl hands the estimator.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Mapping, Optional, Union

VALUE_RULES = ("recursive_mean", "leaf_mean")  # V(node) rules, docs/ALGORITHMS.md section 1

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
    `group`: divide by the sibling group's unbiased std + epsilon (GRPO); `mean`: no division
    (Dr. GRPO); `batch`: divide by the unbiased std of the kept step-level advantages of the batch,
    one per node: nodes of groups with >= 2 siblings and std >= tau (a single child is compared
    with nothing and never counts). Default `batch`: the TreeRPO paper re-normalises because
    per-group std of fractional values blows 0.49 vs 0.51 up to +-1; its exact formula is not
    public (ALGORITHMS.md section 1)."""

    tau: float = 0.1
    """Pruning threshold: a step-level group whose values have unbiased std (the one verl's GRPO
    divides by) below tau carries no signal and all its nodes get advantage 0. Default 0.1, the
    value a public review of the TreeRPO paper quotes. tau=0 disables pruning of groups of two or
    more siblings; a single child never carries signal, whatever tau."""

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
        return _from_mapping(cls, m, "tree.advantage")


METHODS = ("treerpo", "treepo")
CREDITS = ("every_row", "once")
DIVERGENCES = ("fixed_avg", "logprob")
DIVERGENCE_SCORES = ("last_segment", "mean", "sum")
EXPANSIONS = ("async", "level")


@dataclass(frozen=True)
class RolloutOptions:
    """Tree sampling settings: `tree.rollout.*` in the run config (ALGORITHMS.md sections 1-2)."""

    method: str = "treerpo"
    """`treerpo`: N-ary tree of depth D. `treepo`: TreePO's segment-wise budgeted sampling."""

    # ---- TreeRPO shape ------------------------------------------------------------------------
    branching: int = 8
    """N: children of every internal node. 8 as quoted from the TreeRPO paper by a public review."""
    depth: int = 3
    """D: the maximum number of steps (segments) on a path. 3 in the TreeRPO paper (review quote)."""
    step_tokens: Union[int, tuple] = 384
    """L_step: at most this many tokens per step. 384 in the TreeRPO paper (review quote).
    A list of D lengths gives each level its own (level 1 first; an extension, not in the paper):
    it puts the branch points where a task's decisions are, e.g. `[10, 20]` on the CPU miniature,
    where the first result is written by token 6 and the second starts at token 11 or 13."""
    expansion: str = "async"
    """How the TreeRPO tree grows. `async` (barrier-free): a node that did not stop gets its N
    children as soon as its own segment is back. `level` (level-synchronous): every node of a
    level waits for the whole level before any child starts (the paper's description, kept for
    comparison). Same tree for the same engine outputs; `async` only removes the waiting. TreePO
    is always level-synchronous: its budget rule needs all active paths of a step."""

    # ---- TreePO shape (defaults: the official TreePO launch settings) -------------------------
    segment_tokens: int = 512
    """l: tokens per segment (one engine call)."""
    max_segments: int = 14
    """d: the maximum number of segments on a path (14 x 512 = 7168 response tokens)."""
    branch: int = 2
    """b: branching factor when a path splits."""
    leaves: int = 16
    """w: leaf budget per prompt (the paper's rollout.n)."""
    init_branches: tuple = (2, 2)
    """k0: initial root branches, uniform in [lo, hi]; (2, 2) is the paper's fixed setting, (2, 8)
    its 'more initial divergence' variant. In YAML: an int or a two-element list."""
    divergence: str = "fixed_avg"
    """How the budget is split over active paths: `fixed_avg` (even split; the paper's best) or
    `logprob` (weights softmax(score / T) over the paths' sampled-token logprobs)."""
    divergence_score: str = "last_segment"
    """`logprob` score of a path: mean logprob of its `last_segment` (paper), its `mean`, or `sum`."""
    divergence_temperature: float = 2.0
    """T of the softmax above (paper: 2.0)."""
    divergence_prefer: str = "low"
    """`low`: more budget to low-probability paths (softmax(-score/T)); `high`: the inverse."""
    repetition_window: int = 32
    """REPETITION stop: a substring of this many characters ..."""
    repetition_count: int = 8
    """... occurring at least this many times in one segment (TreePO release: 32 and 8)."""

    # ---- both ----------------------------------------------------------------------------------
    credit: str = "every_row"
    """How a shared segment is trained. `every_row`: in every leaf row that contains it (shared
    prefixes weigh more, as TreePO's duplication). `once`: in its first leaf row only, masked
    (response_mask 0) in the others, so each node counts as one sample. The `treepo` estimator
    reads it too: under `once` a shared segment's tokens get the mean A_i of the leaves below it,
    not the A_i of the row that holds them (treerpo.advantages.segment); `treerpo`'s advantages
    are per node already."""
    seed: int = 0
    """Seeds the sampler's own choices (k0, fallback cuts, remainder placement) per prompt."""
    seeded_segments: bool = False
    """Give every segment's engine call its own seed, from (`seed`, the prompt's token ids, the
    trainer step, the node's path of child indices): the same policy resamples the same trees at
    the same step, so two runs from one checkpoint see the same rollouts up to the engine's
    floating-point noise (e.g. `tree.train.pack` on and off, compared in tests/test_verl_e2e.py).
    Off by default: vLLM then draws each request from its own generator, a per-request loop in
    its sampler; and two identical prompts in one batch get identical trees."""
    max_steps: int = 256
    """Safety bound on sampling rounds per tree (TreeRPO: on its depth); exceeding it raises rather
    than hangs."""
    dump_path: Optional[str] = None
    """If set, append every sampled tree as one JSON line to this file (the record of
    treerpo/tree/record.py, with the tree's own advantages of treerpo/advantages/per_tree.py)."""

    def __post_init__(self) -> None:
        def bad(name, why):
            raise ValueError(f"tree.rollout.{name}={getattr(self, name)!r}: {why}")

        if self.method not in METHODS:
            bad("method", f"expected one of {METHODS}")
        if self.credit not in CREDITS:
            bad("credit", f"expected one of {CREDITS}")
        if self.divergence not in DIVERGENCES:
            bad("divergence", f"expected one of {DIVERGENCES}")
        if self.divergence_score not in DIVERGENCE_SCORES:
            bad("divergence_score", f"expected one of {DIVERGENCE_SCORES}")
        if self.expansion not in EXPANSIONS:
            bad("expansion", f"expected one of {EXPANSIONS}")
        if self.divergence_prefer not in ("low", "high"):
            bad("divergence_prefer", "expected 'low' or 'high'")
        L = self.step_tokens
        if not isinstance(L, int):  # a list (OmegaConf's ListConfig included): one length per level
            L = tuple(int(x) for x in L)
            if len(L) != int(self.depth):
                bad("step_tokens", f"a list needs one length per level: {len(L)} given, depth is {self.depth}")
            object.__setattr__(self, "step_tokens", L)
        if min(L if isinstance(L, tuple) else (L,)) < 1:
            bad("step_tokens", "must be >= 1")
        for name in ("branching", "depth", "segment_tokens", "max_segments", "branch", "leaves",
                     "repetition_window", "repetition_count", "max_steps"):
            if int(getattr(self, name)) < 1:
                bad(name, "must be >= 1")
        k0 = self.init_branches
        if isinstance(k0, int):
            object.__setattr__(self, "init_branches", (k0, k0))
        elif len(tuple(k0)) != 2:
            bad("init_branches", "expected an int or [lo, hi]")
        else:
            object.__setattr__(self, "init_branches", tuple(int(x) for x in k0))
        lo, hi = self.init_branches
        if not 1 <= lo <= hi:
            bad("init_branches", "need 1 <= lo <= hi")
        if not self.divergence_temperature > 0:
            bad("divergence_temperature", "must be > 0")

    @property
    def leaves_per_tree(self) -> int:
        """Leaves of a full tree: N^D (treerpo) or w (treepo)."""
        return self.branching**self.depth if self.method == "treerpo" else self.leaves

    @property
    def max_response_tokens(self) -> int:
        """The longest path the shape allows."""
        if self.method == "treerpo":
            return sum(self.step_tokens_at(d) for d in range(1, self.depth + 1))
        return self.max_segments * self.segment_tokens

    def step_tokens_at(self, depth: int) -> int:
        """L_step of a TreeRPO segment at `depth` (1 = the root's children)."""
        L = self.step_tokens
        return L if isinstance(L, int) else L[depth - 1]

    @classmethod
    def from_mapping(cls, m: Mapping[str, Any] | None) -> "RolloutOptions":
        """Build from a dict-like config node; unknown keys are an error (a typo must not pass)."""
        return _from_mapping(cls, m, "tree.rollout")


def _from_mapping(cls, m: Mapping[str, Any] | None, group: str):
    if m is None:
        return cls()
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(m.keys()) - names)
    if unknown:
        raise ValueError(f"unknown {group} option(s) {unknown}; known: {sorted(names)}")
    return cls(**{k: m[k] for k in m.keys()})

"""treerpo: TreeRPO and TreePO, the methods themselves, grouped by idea:

    tree        the core: the sampled tree, the uid topology, the node table (V(node) computed
                there only), the tree options and the dump record
    sampling    the samplers (TreeRPO's N-ary tree, TreePO's segment tree), their engine seam,
                TreePO's divergence policies and the leaf rows
    advantages  TreeRPO's step-level and TreePO's segment-level advantages, and one tree's own
                advantages (the dump and the viewer)
    training    packed training: trees packed into one sequence each, tree attention, random
                trees in verl's row layout
    engines     generation backends behind the sampler's seam (local transformers, vLLM)
    reward      the answer verifier and its math-verify helper
    tools       offline commands: evaluation, the tree viewer
    tiny        the CPU miniature: task, tiny model, warm-up, recipe, launcher, reports
    cli         the `treerpo` command (train, warmup, view)
    quiet       the third-party warnings our commands hide unless --verbose
    stats       confidence intervals and paired tests over seeds or problems (the reports' tables)

`tree` imports nothing else of ours; `sampling` and `advantages` import `tree` and never each
other. Nothing here imports verl except `tiny` (which launches it); `verl_ext` plugs the rest
into verl 0.9.1.
"""

__version__ = "0.1.0"

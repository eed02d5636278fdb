"""treerpo: TreeRPO and TreePO, the methods themselves, grouped by idea:

    advantages  TreeRPO's and TreePO's advantages, the uid topology and the batch's node table
    sampling    trees, their options, the samplers (segments, divergence) and the leaf rows
    engines     generation backends (a local HF transformers engine)
    reward      the answer verifier and its math-verify helper
    tiny        the CPU miniature: arithmetic task, tiny model, supervised warm-up
    tools       evaluation, tree metrics and the tree dump

Nothing here needs verl; `verl_ext` plugs it into verl 0.9.1.
"""

__version__ = "0.1.0"

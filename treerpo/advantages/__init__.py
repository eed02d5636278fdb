"""Advantages: from the leaf rewards of a batch of trees to per-token advantages.

    step.py      TreeRPO's step-level group-relative advantages, and the step-level groups
    segment.py   TreePO's segment-level advantages (root group and ancestor subgroups)
    per_tree.py  one tree's own advantages, before anything batch-wide (the dump, the viewer)

Pure functions of a `treerpo.tree.node_table.NodeTable`; never imports treerpo.sampling.
`verl_ext/estimators.py` registers them in verl as `treerpo` and `treepo`.
"""

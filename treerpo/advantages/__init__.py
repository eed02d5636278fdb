"""Advantages: from the leaf rewards of a batch of trees to per-token advantages.

    step.py        TreeRPO's step-level group-relative advantages
    segment.py     TreePO's segment-level advantages (root group and ancestor subgroups)
    node_table.py  the batch's trees rebuilt from the rows' uids as flat tensors, with node values
    topology.py    the uid format that carries a leaf's place in its tree with its training row
"""

"""Sampling: growing reasoning trees from an engine and turning them into training rows.

    sampler.py     TreeRPO's N-ary tree and TreePO's budgeted segment tree, engine-agnostic
    segments.py    the engine seam: "continue these token ids for at most L tokens"
    divergence.py  TreePO's divergence policies: a step's path budget split over active paths
    rows.py        one training row per leaf, its response the full path, its uid the topology

Built on treerpo.tree (the tree, its options, the topology); never imports treerpo.advantages.
"""

"""The tree core: what sampling, advantages, training and the tools all build on.

    tree.py        a sampled tree: nodes are segments of tokens, leaves are finished paths
    topology.py    the uid format that carries a leaf's place in its tree with its training row
    node_table.py  a batch of trees as flat tensors (from the rows' uids, or from a Tree
                   directly), and node values V(node), computed here only
    options.py     the `tree` options (rollout and advantage), each with its default and source
    record.py      one tree as a JSON record (the tree dump's line) and back

It imports nothing else of treerpo: `sampling` and `advantages` both import it and never each
other.
"""

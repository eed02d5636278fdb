"""Training: the actor's forward and backward over packed trees (`tree.train.pack`).

    packing.py         the trees of a batch packed into one sequence each (prompt and every
                       segment once), and the gather back to verl's (B, T) rows
    tree_attention.py  attention over a packed tree: each token sees its ancestors only
    tree_batch.py      random trees in verl's row layout (tests and benchmarks)

Pure torch, no verl: `verl_ext/packed_engine.py` wires it into verl's engine.
"""

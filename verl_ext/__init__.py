"""The plumbing that plugs `treerpo` into verl 0.9.1, and nothing else:

    plugin.py          the `verl.plugins` entry point: registers everything below in each verl
                       process (import_hooks.py: registration when verl's modules load)
    estimators.py      `treerpo` and `treepo` in verl's advantage-estimator registry
    agent_loop.py      `tree_agent`: one tree per prompt through verl's server manager
    seeded_agent.py    `seeded_single_turn_agent`: verl's single-turn agent with a fixed seed
    tree_worker.py     the agent-loop worker/manager: leaf rows, rewards, the tree dump
    trainer.py         trainer mode `tree_sync`: verl's `sync` plus tree metrics
    tree_metrics.py    the per-step `tree/*` metrics
    tree_config.py     reading the `tree` config group into treerpo's option classes
    packed_engine.py   `tree.train.pack`: verl's FSDP engine over packed trees
    reward.py          verl's custom reward function: the math verifier
    main.py, check.py  the Hydra entry point (config/) and its compose-only check
    cpu/               verl's real trainer without an accelerator (every CPU workaround, each
                       naming the verl or vLLM line it answers)
"""

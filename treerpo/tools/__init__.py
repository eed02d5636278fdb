"""Tools: evaluation and inspection around training.

    evaluate.py      evaluate a checkpoint on benchmark parquets (`python -m treerpo.tools.evaluate`)
    eval_inputs.py   the evaluation's inputs, every one checked before any sampling
    tree_metrics.py  per-step tree metrics: shape, stop reasons, token economy, prefix-cache use
    tree_dump.py     optional JSONL dump of sampled trees (`tree.rollout.dump_path`)
"""

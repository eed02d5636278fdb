"""Tools: offline commands around training.

    evaluate.py        evaluate checkpoints on benchmark parquets (`python -m treerpo.tools.evaluate`)
    eval_inputs.py     the evaluation's inputs, every one checked before any sampling
    eval_table.py      the papers' table over evaluated checkpoints (`python -m treerpo.tools.eval_table`)
    tree_view.py       what `treerpo view` shows of a tree dump: groups, answers, summaries
    tree_view_page.py  the self-contained HTML page it writes
"""

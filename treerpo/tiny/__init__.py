"""The CPU miniature: verl's real trainer on a tiny model and a bundled task (`treerpo train`).

    task.py         the multi-step arithmetic task with a verifiable answer
    model.py        a tiny Qwen2-architecture model and a byte-level tokenizer, built in code
    warmup.py       supervised warm-up of the tiny model to a starting policy for RL
    base.py         the starting checkpoint of a run: made once per seed, or the shipped one
    recipe.py       `TinyRun`: the Hydra overrides a run passes to verl, and why each value
    data.py         the run's train and validation parquet files
    launch.py       `treerpo train`: warm-up, data, verl in a subprocess, progress, summary
    metrics.py      reading verl's file logger
    summary.py      one run's learning curve, summary.json and printed report
    val_dump.py     problem-by-problem change between two validations, with a sign test
    guard.py        a run's processes end with it; one launcher per folder; a dead engine ends it
    resume.py       `--resume`: from the last usable checkpoint, every step once
    runs.py         a grid's runs read back (validations, tokens, seconds, diagnostics)
    report.py       the reproduction's tables and curves over seeds (`python -m treerpo.tiny.report`)
    grid.py         the reproduction's grid of runs (examples/tiny/reproduce.sh)
    sample_dump.py  a tree dump from the local engine, without verl (the viewer's test data)
"""

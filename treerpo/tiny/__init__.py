"""Tiny: the CPU miniature's task, model and starting checkpoint.

    task.py    a synthetic multi-step arithmetic task with a verifiable answer
    model.py   a tiny Qwen2-architecture model and a byte-level tokenizer, built in code
    warmup.py  supervised warm-up of the tiny model to a starting policy for RL
"""

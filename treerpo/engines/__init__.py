"""Engines: generation backends behind the sampler's segment seam (verl's vLLM server in a run).

    local.py  a local HF transformers engine with verl's `server_manager.generate` interface
    vllm.py   vLLM's AsyncLLM with prefix caching (evaluation, benchmarks)
"""

"""Engines: generation backends behind the sampler's segment seam (verl's vLLM server on GPUs).

    local.py  a local HF transformers engine with verl's `server_manager.generate` interface
"""

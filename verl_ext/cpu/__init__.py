"""CPU support: verl 0.9.1's real trainer and verl's vLLM server on a machine without an accelerator.

Everything the project does to run verl's trainer on CPU is in this sub-package, and none of it
is active on a machine with an accelerator:

    platform.py      PlatformCPU, verl's platform for device "cpu" (gloo; no-op device module)
    verl_patches.py  the verl lines that assume an accelerator, each answered in one function
    vllm_plugin.py   vLLM plugin (`vllm.general_plugins`): keeps the weights of vLLM's CPU
                     workers reloadable, so verl's weight sync has something to load into
    ../config/preset/cpu.yaml   the settings a CPU run needs: `python -m verl_ext.main +preset=cpu`

`verl_ext.plugin` (loaded by `import verl` in every verl process) calls `enable()` first,
before anything asks verl for its platform, and only when `wanted()`:

    TREERPO_CPU=1 / 0       force on / off
    VERL_PLATFORM=<name>    verl's own override: on only for "cpu"
    otherwise               on only if torch is a CPU-only build and none of verl's platforms
                            (CUDA, NPU, ROCm) detects its device, with verl's own checks

A CUDA or ROCm build of torch never turns it on by itself, so a GPU node's CPU-only Ray actors
(where `torch.cuda.is_available()` is False) keep verl's CUDA platform. This module imports
nothing from verl at import time: vLLM's worker processes load `vllm_plugin` through it.
"""

from __future__ import annotations

import os

_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")
_enabled = False


def torch_is_cpu_build() -> bool:
    import torch

    return torch.version.cuda is None and getattr(torch.version, "hip", None) is None


def accelerator_detected() -> bool:
    """verl's own detection (`platform_manager._detect_platform_name`) over its other platforms."""
    from verl.plugin.platform import PlatformRegistry

    for name in PlatformRegistry.registered_names():
        if name == "cpu":
            continue
        try:
            if PlatformRegistry.get(name)().is_platform_available(use_smi_check=True):
                return True
        except Exception:  # a platform whose probe fails is not this host's
            continue
    return False


def wanted() -> bool:
    forced = os.environ.get("TREERPO_CPU", "").strip().lower()
    if forced in _TRUE:
        return True
    if forced in _FALSE:
        return False
    platform = os.environ.get("VERL_PLATFORM", "").strip().lower()
    if platform:
        return platform == "cpu"
    return torch_is_cpu_build() and not accelerator_detected()


def enabled() -> bool:
    return _enabled


def enable() -> None:
    """Register the CPU platform and apply the verl workarounds (idempotent)."""
    global _enabled
    if _enabled:
        return
    from verl.plugin.platform import platform_manager

    from verl_ext.cpu import platform as _platform  # noqa: F401  registers "cpu"

    current = platform_manager._current_platform
    if current is not None and current.device_name != "cpu":
        raise RuntimeError(
            f"treerpo CPU mode: verl already chose platform {current.device_name!r} in this process; "
            "the CPU platform must be registered first (verl_ext.plugin does so when verl loads it)"
        )
    os.environ["VERL_PLATFORM"] = "cpu"  # read by verl's detection here and in every Ray actor
    os.environ["TREERPO_CPU"] = "1"
    # TransferQueue runs each put/get with TQ_NUM_THREADS torch threads, 8 unless set
    # (transfer_queue/client.py:42, storage/simple_storage.py:73), and logs a warning at every call
    # when that exceeds the physical cores (transfer_queue/utils/common.py:102): on 2 cores, dozens
    # of lines a second in train.log. Ray's workers inherit this process's environment.
    if "TQ_NUM_THREADS" not in os.environ:
        import psutil

        os.environ["TQ_NUM_THREADS"] = str(min(8, psutil.cpu_count(logical=False) or 1))

    from verl_ext.cpu import verl_patches

    verl_patches.apply_all()  # each patch when the verl module it patches is imported
    _enabled = True

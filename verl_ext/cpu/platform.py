"""verl's platform for a machine without an accelerator: device "cpu", collectives on gloo.

verl 0.9.1 asks its platform (`verl.plugin.platform`) for the device name, the torch device
module, the collective backend and the Ray resource that places its workers. verl ships CUDA,
NPU and ROCm platforms only; without one it falls back to CUDA and stops at NCCL
(`verl/utils/distributed.py:93`). This platform answers those questions for the CPU:

* device "cpu", backend "gloo", vendor "cpu";
* `device_module`: `CPUDeviceModule`, the subset of `torch.cuda`'s API that verl calls
  (synchronize, empty_cache, memory statistics, RNG state, streams), answered for the CPU;
  `current_device()` returns "cpu" because verl places tensors with `.to(get_device_id())`
  (e.g. `verl/utils/fsdp_utils.py:507`), and an int there would mean an accelerator;
* Ray resource "GPU": verl's worker groups and vLLM replicas are placed by this resource and
  read accelerator ids from it (`verl/single_controller/ray/base.py:240`,
  `verl/workers/rollout/vllm_rollout/vllm_async_server.py:1348`). On a CPU machine it is a
  logical resource: the CPU preset starts Ray with `num_gpus = trainer.n_gpus_per_node`;
* `rollout_env_vars()` marks the vLLM processes verl launches, so that `vllm_plugin` keeps
  their weights reloadable, and sizes vLLM's CPU KV cache.
"""

from __future__ import annotations

import os
import types
from contextlib import contextmanager
from typing import Any, Optional

import torch
from verl.plugin.platform import PlatformBase, PlatformRegistry

from verl_ext.cpu.vllm_plugin import KEEP_WEIGHTS_ENV

#: vLLM's CPU KV cache in GiB (`VLLM_CPU_KVCACHE_SPACE`) when the user sets none.
DEFAULT_KVCACHE_GIB = "1"


class _NullStream:
    """What `torch.cuda.Stream()` / `current_stream()` give verl: something to wait on."""

    def synchronize(self) -> None:
        return None

    def wait_stream(self, other) -> None:
        return None

    def wait_event(self, event) -> None:
        return None

    def record_event(self, event=None):
        return _NullEvent()


class _NullEvent:
    def record(self, stream=None) -> None:
        return None

    def synchronize(self) -> None:
        return None

    def wait(self, stream=None) -> None:
        return None

    def query(self) -> bool:
        return True


def _stream_context(stream=None):
    @contextmanager
    def ctx():
        yield stream

    return ctx()


def _mem_get_info(device=None) -> tuple[int, int]:
    """(free, total) bytes of host memory, as `torch.cuda.mem_get_info` gives for a GPU."""
    try:
        import psutil

        vm = psutil.virtual_memory()
        return int(vm.available), int(vm.total)
    except Exception:  # psutil comes with Ray; this is a fallback only
        pages, size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
        return int(pages * size), int(pages * size)


def _zero(*args, **kwargs) -> int:
    return 0


def _none(*args, **kwargs) -> None:
    return None


CPUDeviceModule = types.SimpleNamespace(
    __name__="treerpo_cpu_device",
    is_available=lambda: True,
    is_initialized=lambda: True,
    current_device=lambda: "cpu",
    device_count=lambda: 1,
    set_device=_none,
    synchronize=_none,
    empty_cache=_none,
    ipc_collect=_none,
    reset_peak_memory_stats=_none,
    set_per_process_memory_fraction=_none,
    memory_allocated=_zero,
    max_memory_allocated=_zero,
    memory_reserved=_zero,
    max_memory_reserved=_zero,
    mem_get_info=_mem_get_info,
    get_device_name=lambda device=None: "CPU",  # verl/utils/flops_counter.py:85 looks this up in its table
    get_device_capability=lambda device=None: (None, None),
    get_rng_state=lambda device=None: torch.get_rng_state(),
    set_rng_state=lambda state, device=None: torch.set_rng_state(state),
    manual_seed=torch.manual_seed,
    manual_seed_all=torch.manual_seed,
    Stream=lambda *a, **k: _NullStream(),
    Event=lambda *a, **k: _NullEvent(),
    current_stream=lambda device=None: _NullStream(),
    stream=_stream_context,
)


@PlatformRegistry.register(platform="cpu")
class PlatformCPU(PlatformBase):
    """verl platform for CPU-only hosts (registered by `verl_ext.cpu.enable`, never on a GPU host)."""

    @property
    def device_name(self) -> str:
        return "cpu"

    @property
    def vendor_name(self) -> str:
        return "cpu"

    @property
    def device_module(self) -> Any:
        return CPUDeviceModule

    def is_available(self) -> bool:
        return True

    def is_platform_available(self, use_smi_check: bool = False) -> bool:
        return True

    def current_device(self) -> str:  # type: ignore[override]  # see the module docstring
        return "cpu"

    def device_count(self) -> int:
        return 1

    def set_device(self, device_index: int) -> None:
        return None

    def synchronize(self, device_index: Optional[int] = None) -> None:
        return None

    def manual_seed(self, seed: int) -> None:
        torch.manual_seed(seed)

    def manual_seed_all(self, seed: int) -> None:
        torch.manual_seed(seed)

    def set_allocator_settings(self, settings: str) -> None:
        return None

    def empty_cache(self) -> None:
        return None

    def get_device_capability(self, device_index: int = 0) -> tuple[Optional[int], Optional[int]]:
        return None, None

    def communication_backend_name(self) -> str:
        return "gloo"

    def visible_devices_envvar(self) -> str:
        return "CUDA_VISIBLE_DEVICES"  # what Ray sets for the logical "GPU" resource

    @contextmanager
    def nvtx_range(self, msg: str):
        yield

    def profiler_start(self) -> None:
        return None

    def profiler_stop(self) -> None:
        return None

    def ray_resource_name(self) -> str:
        return "GPU"

    def ray_noset_envvars(self) -> list[str]:
        return []

    def is_ipc_supported(self) -> bool:
        return False  # verl then moves rollout weights through shared memory

    def rollout_env_vars(self) -> dict[str, str]:
        return {
            KEEP_WEIGHTS_ENV: "1",
            "VLLM_CPU_KVCACHE_SPACE": os.environ.get("VLLM_CPU_KVCACHE_SPACE", DEFAULT_KVCACHE_GIB),
        }

    def cudart(self) -> Any:
        return None

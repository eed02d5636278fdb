"""vLLM general plugin (entry point `vllm.general_plugins`): reloadable weights on vLLM's CPU backend.

verl updates the rollout's weights in place after every actor step (`load_weights` on vLLM's
model). On CPU, vLLM 0.30's `UnquantizedLinearMethod.process_weights_after_loading`
(`vllm/model_executor/layers/linear.py:205-215`) calls `dispatch_cpu_unquantized_gemm(layer,
remove_weight=True)` (`vllm/model_executor/layers/utils.py:457`), which packs the weight for
oneDNN / sgl-kernel and replaces `layer.weight` with an empty Parameter. The next load then has
nothing to load into (`linear.py:1338`: `'Parameter' object has no attribute 'weight_loader'`)
and verl's weight transfer hangs. The embedding / lm_head path (`vocab_parallel_embedding.py:70`)
keeps its weight but computes with a packed copy that a reload leaves stale.

This plugin answers both: for 2-D weights it keeps `layer.weight` and computes with
`torch.nn.functional.linear` on it, which is what vLLM does itself for layers that opt out of
packing (`skip_weight_relayout`). Other layers (3-D MoE experts, conv) keep vLLM's dispatch.

It acts only where all of these hold: vLLM's platform is the CPU, and the process was started
by verl under treerpo's CPU platform (which sets `TREERPO_VLLM_KEEP_WEIGHTS=1` through
`PlatformCPU.rollout_env_vars`). Plain vLLM use (e.g. `treerpo.tools.evaluate`) keeps vLLM's packed,
faster kernels. vLLM loads this module in every process it starts, spawned workers included,
so it imports nothing from verl.
"""

from __future__ import annotations

import logging
import os

KEEP_WEIGHTS_ENV = "TREERPO_VLLM_KEEP_WEIGHTS"

logger = logging.getLogger(__name__)
_PATCHED = False


def active() -> bool:
    if os.environ.get(KEEP_WEIGHTS_ENV, "0") != "1":
        return False
    from vllm.platforms import current_platform

    return current_platform.is_cpu()


def keep_weight_dispatch(original):
    """A `dispatch_cpu_unquantized_gemm` that leaves 2-D weights in place and unpacked."""
    import torch

    def _linear(x, weight, bias):
        return torch.nn.functional.linear(x, weight, bias)

    def dispatch(layer, remove_weight: bool) -> None:
        weight = getattr(layer, "weight", None)
        if weight is None or weight.is_meta or weight.ndim != 2:
            return original(layer, remove_weight)
        layer.cpu_linear = _linear
        return None

    dispatch.__wrapped__ = original
    return dispatch


def register() -> None:
    """Entry point: vLLM calls this in every process it starts (idempotent)."""
    global _PATCHED
    if _PATCHED or not active():
        return
    from vllm.model_executor.layers import utils

    # linear.py and vocab_parallel_embedding.py import the function from this module at call
    # time (inside process_weights_after_loading), so replacing the module attribute is enough.
    utils.dispatch_cpu_unquantized_gemm = keep_weight_dispatch(utils.dispatch_cpu_unquantized_gemm)
    _PATCHED = True
    logger.info("treerpo: vLLM CPU linear layers keep their weights (reloadable by verl's weight sync)")

"""`tree.train.pack`: verl 0.9.1's FSDP actor and ref forward over packed trees.

The hook. verl 0.9.1's new engine path runs every actor/ref forward through
`FSDPEngineWithLMHead.forward_step` (`verl/workers/engine/fsdp/transformer_impl.py:1549`):
old_log_prob (`engine_workers.py:703` -> `infer_batch`), ref log_prob (`:696`) and each update
micro-batch (`:713` -> `train_mini_batch` -> `forward_backward_batch`, `transformer_impl.py:724`).
It calls `prepare_model_inputs` (`:1145`), the model, `prepare_model_outputs` (`:1332`), then the
loss function with `model_output = {"log_probs", "entropy"}` as nested (B, j) tensors, entry i
of row r being log p(token i + 1) (verl's rolled layout, read back by
`verl/workers/utils/padding.py:97 no_padding_2_padding`). `TreePackedEngine.forward_step`
replaces the middle (inputs, model, outputs) by the packed forward and hands verl's loss the same
`model_output`: `ppo_loss` (`verl/workers/utils/losses.py:57`), its policy loss, entropy and KL
terms run unchanged, and backward flows through the gather into the shared computation.

What is done: the glue below (verl's nested micro-batch -> packed trees -> verl's nested output),
the engine subclass, and `install()`, which puts it in verl's `EngineRegistry` in place of
`FSDPEngineWithLMHead` for language models (the registry refuses a second registration of a
key, `verl/workers/engine/base.py:387`, so `install` replaces the entries). Tested on the tiny
model against verl's `ppo_loss` (tests/test_packed_engine.py) and in verl's trainer against an
unpacked run from the same state (tests/test_verl_e2e.py::test_packed_training_matches_unpacked;
the update's metrics report `tree_pack/*`, proof that this path ran in the workers). Not done,
see docs/PACKING.md: the micro-batches are verl's (`prepare_micro_batches`,
`transformer_impl.py:737`, may split a tree: still exact, less saving).
"""

from __future__ import annotations

from contextlib import nullcontext

import torch

from treerpo.training import packing, tree_attention
from treerpo.tree import topology

PACKED_RATIO = "tree_pack/packed_over_unpacked_tokens"  # per micro-batch, packed / unpacked actor tokens
PACKED_ROWS = "tree_pack/rows_per_micro_batch"


def rows_from_nested(prompts: torch.Tensor, responses: torch.Tensor):
    """verl's nested (jagged) prompts and responses -> the padded (B, P + R) layout of
    `treerpo.training.packing` (prompt left-padded, response right-padded), positions 0..len-1 per row."""
    p_lens, r_lens = prompts.offsets().diff(), responses.offsets().diff()
    b, p, r = len(p_lens), int(p_lens.max()), int(r_lens.max())
    input_ids = torch.zeros(b, p + r, dtype=prompts.dtype, device=prompts.device)
    mask = torch.zeros(b, p + r, dtype=torch.long, device=prompts.device)
    for i, (pr, rs) in enumerate(zip(prompts.unbind(), responses.unbind())):
        input_ids[i, p - len(pr): p], input_ids[i, p: p + len(rs)] = pr, rs
        mask[i, p - len(pr): p + len(rs)] = 1
    return input_ids, mask, (mask.cumsum(-1) - 1).clamp(min=0), r, p_lens, r_lens


def to_nested(values: torch.Tensor, p_lens: torch.Tensor, r_lens: torch.Tensor) -> torch.Tensor:
    """Per-row response values (B, R) -> verl's nested (B, p + r) model output: row i's response
    token t (predicted at column p + t - 1) at entry p_i - 1 + t, 0 elsewhere."""
    pieces = []
    for v, p, r in zip(values, p_lens.tolist(), r_lens.tolist()):
        zero = v.new_zeros(1)
        pieces.append(torch.cat([zero.expand(p - 1), v[:r], zero]))
    return torch.nested.nested_tensor_from_jagged(torch.cat(pieces), torch.cumsum(
        torch.cat([p_lens.new_zeros(1), p_lens + r_lens]), 0).to(values.device))


def packed_model_output(module, micro_batch, uids, calculate_entropy: bool, temperature=1.0) -> tuple[dict, dict]:
    """verl's `model_output` for a micro-batch of tree rows, computed with one packed sequence per
    tree and per-node attention blocks (the module must use `tree_attention.NAME`), and the
    micro-batch's token counts (`packing.token_counts`)."""
    input_ids, mask, position_ids, r, p_lens, r_lens = rows_from_nested(micro_batch["prompts"], micro_batch["responses"])
    mask_cpu = mask.cpu()
    pk_cpu = packing.pack(input_ids.cpu(), mask_cpu, position_ids.cpu(), uids, r)  # the plans are built on CPU
    pk, plan = pk_cpu.to(input_ids.device), tree_attention.segment_plan(pk_cpu).to(input_ids.device)
    logits = module(input_ids=pk.input_ids, position_ids=pk.position_ids, tree_plan=plan, use_cache=False).logits
    logits = logits.float() / temperature
    log_probs, entropy = packing.response_logprobs(logits, pk, input_ids, with_entropy=calculate_entropy)
    out = {"log_probs": to_nested(log_probs, p_lens, r_lens)}
    if calculate_entropy:
        out["entropy"] = to_nested(entropy, p_lens, r_lens)
    return out, packing.token_counts(mask_cpu, pk_cpu)


def micro_batch_uids(micro_batch):
    """The rows' uids if the micro-batch carries tree uids, else None (verl's own path runs)."""
    if "uid" not in micro_batch.keys():
        return None
    uids = micro_batch["uid"]
    uids = list(uids.tolist() if hasattr(uids, "tolist") else uids)
    real = [u for u in uids if not topology.is_padding_uid(u)]
    if not real or not all(isinstance(u, str) and f"{topology.SEP}{topology.FORMAT}{topology.SEP}" in u for u in real):
        return None
    return uids


def scalar_temperature(temperature) -> float:
    if isinstance(temperature, torch.Tensor):
        if temperature.numel() > 1 and not (temperature == temperature.flatten()[0]).all():
            raise NotImplementedError("tree packing needs one temperature per micro-batch")
        return float(temperature.flatten()[0])
    return float(temperature)


def _engine_class():
    from verl.utils import tensordict_utils as tu
    from verl.utils.device import get_device_id
    from verl.workers.engine.fsdp.transformer_impl import FSDPEngineWithLMHead

    class TreePackedEngine(FSDPEngineWithLMHead):
        """verl's FSDP LM engine whose forward packs the trees of a micro-batch (module docstring)."""

        def forward_step(self, micro_batch, loss_function, forward_only):
            uids = micro_batch_uids(micro_batch)
            if uids is None:
                return super().forward_step(micro_batch, loss_function, forward_only)
            if getattr(self, "ulysses_sequence_parallel_size", 1) > 1:
                raise NotImplementedError("tree.train.pack does not support Ulysses sequence parallelism")
            micro_batch = micro_batch.to(get_device_id())
            calculate_entropy = tu.get_non_tensor_data(data=micro_batch, key="calculate_entropy", default=False)
            autocast_dtype = getattr(self, "_autocast_dtype", torch.bfloat16)
            device_type = micro_batch["prompts"].device.type
            autocast = lambda: (torch.autocast(device_type=device_type, dtype=autocast_dtype)  # noqa: E731
                                if autocast_dtype != torch.float32 else nullcontext())
            with autocast(), tree_attention.switched(self.module):
                model_output, tokens = packed_model_output(self.module, micro_batch, uids, calculate_entropy,
                                                           scalar_temperature(micro_batch["temperature"]))
            with autocast():
                if loss_function is not None:
                    loss, metrics = loss_function(model_output=model_output, data=micro_batch,
                                                  dp_group=self.get_data_parallel_group())
                else:
                    loss, metrics = torch.tensor(1.0), {}
            # reported with the update's metrics (verl averages them over micro-batches): proof in
            # the run's log that the packed path ran, and what it saved
            metrics = {**metrics, PACKED_RATIO: tokens["ratio"], PACKED_ROWS: float(len(uids))}
            detached = {k: v.detach() for k, v in model_output.items()}
            return loss, {"model_output": detached, "loss": loss.detach().item(), "metrics": metrics}

    return TreePackedEngine


def install() -> type:
    """Put TreePackedEngine in verl's EngineRegistry wherever FSDPEngineWithLMHead is; returns it."""
    from verl.workers.engine.base import EngineRegistry
    from verl.workers.engine.fsdp.transformer_impl import FSDPEngineWithLMHead

    cls = _engine_class()
    for backend in EngineRegistry._engines.get("language_model", {}).values():
        for key, engine in list(backend.items()):
            if engine is FSDPEngineWithLMHead:
                backend[key] = cls
    return cls

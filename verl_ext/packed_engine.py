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

Micro-batches: with dynamic batching on (the recipes' setting), `forward_backward_batch` runs
verl's loop on tree-aware micro-batches (`tree_micro_batches`, treerpo/training/microbatch.py):
whole trees, or subtree pieces of a tree over the budget, with the budget
(`ppo_max_token_len_per_gpu`, `log_prob_max_token_len_per_gpu`) counted in packed tokens; verl's
loss aggregation over the global token count is unchanged. The model is switched for good to the
tree attention over its own (`tree_attention.use`): calls with a tree plan take the tree kernel,
all others (validation, the recompute of gradient checkpointing included) behave as before.

`install()` puts the engine in verl's `EngineRegistry` in place of `FSDPEngineWithLMHead` for
language models, under both FSDP strategies (`fsdp`, `fsdp2`; on CPU only FSDP2 runs, FSDP1 asks
for an accelerator); the registry refuses a second registration of a key
(`verl/workers/engine/base.py:387`), so `install` replaces the entries. Tested on the tiny model
against verl's `ppo_loss` (tests/test_packed_engine.py, tests/test_microbatch.py) and in verl's
trainer against an unpacked run from the same state (tests/test_verl_e2e.py); the update's metrics
report `tree_pack/*`, proof that this path ran in the workers (docs/PACKING.md).
"""

from __future__ import annotations

from contextlib import nullcontext

import torch

from treerpo.training import microbatch, packing, tree_attention
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


KERNEL_ENV = "TREERPO_TREE_KERNEL"  # segments | flex | auto (default): tree_attention.plan's kernel


def packed_model_output(module, micro_batch, uids, calculate_entropy: bool, temperature=1.0) -> tuple[dict, dict]:
    """verl's `model_output` for a micro-batch of tree rows, computed with one packed sequence per
    tree and the tree attention (the module must use `tree_attention.use`), and the micro-batch's
    token counts (`packing.token_counts`). The log-prob path is chunked (`packing.response_logprobs`)."""
    import os

    input_ids, mask, position_ids, r, p_lens, r_lens = rows_from_nested(micro_batch["prompts"], micro_batch["responses"])
    mask_cpu = mask.cpu()
    pk_cpu, pk, plan = _packed(input_ids, mask_cpu, position_ids, uids, r, os.environ.get(KERNEL_ENV, "auto"))
    logits = module(input_ids=pk.input_ids, position_ids=pk.position_ids, tree_plan=plan, use_cache=False).logits
    log_probs, entropy = packing.response_logprobs(logits, pk, input_ids, with_entropy=calculate_entropy,
                                                   temperature=temperature)
    out = {"log_probs": to_nested(log_probs, p_lens, r_lens)}
    if calculate_entropy:
        out["entropy"] = to_nested(entropy, p_lens, r_lens)
    return out, packing.token_counts(mask_cpu, pk_cpu)


_CACHE = None  # OrderedDict: (uids, lengths, token checksum, kernel) -> (pack, plan), both on the CPU
CACHE_SIZE = 64


def _packed(input_ids, mask_cpu, position_ids, uids, response_length: int, kernel: str):
    """The pack and attention plan of a micro-batch, built on the CPU once and reused: a step's
    old_log_prob, ref and update passes over the same rows (the same micro-batches, as the
    tree-aware planner makes them from the same trees) share one pack. The cache keeps the CPU
    copies only, the plan as block indices (its N x Q x K attention mask is built on the device at
    each use, `SegmentPlan.mask`); each use moves them to the device."""
    from collections import OrderedDict

    global _CACHE
    if _CACHE is None:
        _CACHE = OrderedDict()
    ids_cpu = input_ids.cpu()
    weights = torch.arange(1, ids_cpu.shape[1] + 1)
    key = (tuple(uids), tuple(mask_cpu.sum(-1).tolist()), int((ids_cpu * weights).sum()), kernel,
           int(response_length))
    hit = _CACHE.get(key)
    if hit is not None:
        _CACHE.move_to_end(key)
    else:
        pk_cpu = packing.pack(ids_cpu, mask_cpu, position_ids.cpu(), uids, response_length)
        hit = (pk_cpu, tree_attention.plan(pk_cpu, kernel, "cpu"))
        _CACHE[key] = hit
        while len(_CACHE) > CACHE_SIZE:
            _CACHE.popitem(last=False)
    pk_cpu, plan_cpu = hit
    return pk_cpu, pk_cpu.to(input_ids.device), plan_cpu.to(input_ids.device)


def tree_batch(data) -> bool:
    """Rows of tree runs: their uids carry topology, or they are all verl's padding rows (a rank
    whose share is padding must still take the tree path, as its peers do)."""
    if "uid" not in data.keys():
        return False
    uids = data["uid"]
    uids = list(uids.tolist() if hasattr(uids, "tolist") else uids)
    return micro_batch_uids(data) is not None or (bool(uids) and all(topology.is_padding_uid(u) for u in uids))


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


def tree_micro_batches(data, max_tokens: int, dp_group=None):
    """verl's `prepare_micro_batches` for a batch of tree rows with dynamic batching on: whole
    trees (or subtree pieces) per micro-batch, the budget counted in packed tokens
    (`treerpo.training.microbatch`), the same number of micro-batches on every data-parallel rank
    (as verl's `rearrange_micro_batches`: the fewest that fit on every rank). A rank with fewer
    trees than micro-batches splits its trees finer. Every rank agrees on a failure before any
    raises, so none waits in a collective the others left. Returns the micro-batches and their
    row indices (verl's `restore_dynamic_batch` puts outputs back)."""
    import torch.distributed as dist
    from verl.utils import tensordict_utils as tu

    uids = list(data["uid"].tolist() if hasattr(data["uid"], "tolist") else data["uid"])
    prompt_lengths = data["prompts"].offsets().diff().tolist()
    sync = dist.is_initialized() and dp_group is not None
    device = data["prompts"].device

    def agree(value: int, op) -> int:
        if not sync:
            return value
        t = torch.tensor([value], device=device)
        dist.all_reduce(t, op=op, group=dp_group)
        return int(t.item())

    try:
        items = microbatch.units(uids, prompt_lengths, max_tokens)
        error = ""
    except ValueError as e:  # a path over the budget: raised below, on every rank at once
        items, error = [], str(e)
    if agree(int(bool(error)), dist.ReduceOp.MAX if sync else None):
        raise ValueError(error or "another data-parallel rank holds a path over the micro-batch budget")
    k = len(microbatch.plan(items, max_tokens)) if items else 1
    while True:
        k = agree(k, dist.ReduceOp.MAX if sync else None)
        budget = max_tokens
        while len(items) < k and budget > 1:  # fewer units than micro-batches: split trees finer
            budget //= 2
            try:
                items = microbatch.units(uids, prompt_lengths, budget)
            except ValueError:  # the longest path no longer fits: this is as fine as it gets
                break
        enough = agree(int(len(items) >= k), dist.ReduceOp.MIN if sync else None)
        if not enough:
            raise ValueError(f"the {k} micro-batches every rank must run cannot all be filled: a rank holds "
                             f"{len(items)} trees and pieces (its batch is mostly padding rows)")
        groups = microbatch.partition(items, k)
        if agree(int(microbatch.fits(items, groups, max_tokens)), dist.ReduceOp.MIN if sync else None):
            break
        k += 1
    indices = [sorted(r for i in g for r in items[i].rows) for g in groups]
    return [tu.index_select_tensor_dict(data, idx) for idx in indices], indices


def _engine_class():
    from verl.utils import tensordict_utils as tu
    from verl.utils.device import get_device_id
    from verl.workers.engine.fsdp.transformer_impl import FSDPEngineWithLMHead

    class TreePackedEngine(FSDPEngineWithLMHead):
        """verl's FSDP LM engine whose forward packs the trees of a micro-batch (module docstring)."""

        def forward_backward_batch(self, data, loss_function, forward_only=False):
            """verl's loop, with tree-aware micro-batches when the batch holds tree rows and dynamic
            batching is on. verl builds its micro-batches with the module-level function
            `prepare_micro_batches` (verl/workers/engine/fsdp/transformer_impl.py:737) and offers no
            hook for it, so that one name is pointed at `tree_micro_batches` for the duration of
            this call (one engine call at a time per worker process); everything else, loss
            aggregation with the global token count included, is verl's. A verl hook would replace
            this: an engine method `prepare_micro_batches(data)` that the loop calls instead."""
            from verl.workers.engine.fsdp import transformer_impl as impl

            use_dynamic = tu.get_non_tensor_data(data=data, key="use_dynamic_bsz", default=True)
            if not use_dynamic or not tree_batch(data) or "max_token_len_per_gpu" not in data.keys():
                return super().forward_backward_batch(data, loss_function, forward_only)
            budget = int(data["max_token_len_per_gpu"])  # Ulysses (sp > 1) is refused in forward_step
            verls = impl.prepare_micro_batches
            impl.prepare_micro_batches = lambda data, dp_group=None, **kwargs: tree_micro_batches(data, budget, dp_group)
            try:
                return super().forward_backward_batch(data, loss_function, forward_only)
            finally:
                impl.prepare_micro_batches = verls

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
            # for good, not only around this forward: the backward's checkpoint recompute must take
            # the same attention; calls without a tree plan keep the model's own (tree_attention.use)
            tree_attention.use(self.module)
            with autocast():
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

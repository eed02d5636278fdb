"""A vLLM engine (`vllm.v1.engine.async_llm.AsyncLLM`) behind verl's `server_manager.generate` interface.

    engine = VLLMEngine.from_model("path/to/model", seed=0)        # sync; starts vLLM's engine core
    async with engine:                                             # aclose() on exit
        out = await engine.generate(request_id, prompt_ids=[...], sampling_params={...})
        out.token_ids, out.log_probs, out.stop_reason, out.extra_fields["num_cached_tokens"]

It is what `treerpo.engines.local.LocalEngine` is to transformers, for vLLM: token ids in, the
sampled token ids, their log-probs, the stop reason and vLLM's prefix-cache hits
(`RequestOutput.num_cached_tokens`) out, in a `LocalTokenOutput`. Automatic prefix caching is
on, so a tree's children reuse the KV blocks of their parent's prefix, as in verl's rollout.

- Request ids: a tree sends every call with the same request_id (verl's sticky routing), many
  of them concurrently; AsyncLLM needs a unique id per in-flight request, so each call runs as
  `f"{request_id}-{n}"` with a per-engine counter n.
- Sampling params (a dict, as verl passes them) become `vllm.SamplingParams`: `max_tokens` (or
  `max_new_tokens`; `default_max_tokens` when neither is given), `logprobs` (True / 0: the
  sampled token's log-prob, as verl means it; False / None: none; k: k more top tokens, still
  only the sampled one returned), `n` must be 1 (one output per call); every other key
  (temperature, top_p, top_k, min_p, seed, ignore_eos, stop_token_ids, repetition_penalty, ...)
  goes to SamplingParams unchanged, so an unknown key is SamplingParams' error. Outputs are not
  detokenized unless stop strings (`stop`) are asked for.
- Log-probs are vLLM's `processed_logprobs` by default (verl's rollout default): log_softmax of
  the logits after temperature and top-k / top-p, i.e. LocalEngine's log_softmax(logits / T)
  whenever top_p = 1 and top_k is off.
- Block size: vLLM's own default on GPUs (16); 32 on vLLM's CPU backend, whose default (128) is
  the granularity of its prefix cache (verl_ext/config/preset/cpu.yaml says why).
- On vLLM's CPU backend (`cpu_settings`), unless the caller says otherwise: the KV cache gets
  CPU_KVCACHE_GIB (4 GiB, `VLLM_CPU_KVCACHE_SPACE`) and the engine runs eager (no torch.compile).
  Left to itself vLLM sized its CPU cache from the host's memory and grew to 22.5 of 24 GiB in
  5 minutes of the rollout benchmark; compiling costs minutes on 2 cores. Nothing else depends
  on the platform.
- One event loop: AsyncLLM binds its output tasks and sockets to the loop of its first request,
  so an engine serves the loop it was first used in (a call from another loop is refused with a
  clear error rather than hanging). Scripts that start vLLM need an `if __name__ == "__main__":`
  guard (vLLM spawns its engine process).
"""

from __future__ import annotations

import asyncio
import gc
import itertools
from typing import Any, Optional

from treerpo.engines.local import LocalTokenOutput


CPU_KVCACHE_GIB = 4  # the KV cache the CPU benchmarks were measured with (docs/BENCHMARKS.md)


def cpu_settings(enforce_eager: Optional[bool], is_cpu: bool, environ: dict) -> bool:
    """On vLLM's CPU backend: VLLM_CPU_KVCACHE_SPACE set to CPU_KVCACHE_GIB in `environ` where
    unset (vLLM's engine process inherits it), and eager unless the caller chose. Returns
    enforce_eager (the caller's choice, else True on CPU and False elsewhere)."""
    if is_cpu:
        environ.setdefault("VLLM_CPU_KVCACHE_SPACE", str(CPU_KVCACHE_GIB))
    return bool(is_cpu) if enforce_eager is None else bool(enforce_eager)


def default_block_size() -> Optional[int]:
    """32 on vLLM's CPU backend, None (vLLM's default) elsewhere."""
    from vllm.platforms import current_platform

    return 32 if current_platform.is_cpu() else None


def to_sampling_params(params: dict, default_max_tokens: int = 256):
    """verl's sampling-params dict -> vllm.SamplingParams for one output (see the module doc)."""
    from vllm import SamplingParams
    from vllm.sampling_params import RequestOutputKind

    sp = dict(params)
    max_tokens = sp.pop("max_tokens", None)
    alias = sp.pop("max_new_tokens", None)
    max_tokens = int(max_tokens if max_tokens is not None else alias if alias is not None else default_max_tokens)
    if max_tokens < 1:
        raise ValueError(f"max_tokens must be >= 1, got {max_tokens}")
    lp = sp.pop("logprobs", None)
    if lp is None or lp is False:
        sp["logprobs"] = None
    elif lp is True:
        sp["logprobs"] = 0
    else:
        sp["logprobs"] = int(lp)
    if int(sp.pop("n", 1)) != 1:
        raise ValueError("n must be 1: one call returns one output (send n calls, as the tree does)")
    sp.setdefault("detokenize", bool(sp.get("stop")))
    sp["output_kind"] = RequestOutputKind.FINAL_ONLY
    return SamplingParams(max_tokens=max_tokens, **sp)


def stop_reason(finish_reason: Optional[str]) -> Optional[str]:
    """verl's TokenOutput convention: "completed" for stop / length, "aborted" for abort."""
    if finish_reason in ("stop", "length"):
        return "completed"
    if finish_reason == "abort":
        return "aborted"
    return finish_reason


class VLLMEngine:
    def __init__(self, engine, default_max_tokens: int = 256):
        """Wrap a started AsyncLLM (see `from_model` to start one)."""
        self.engine = engine
        self.default_max_tokens = default_max_tokens
        self.block_size = engine.vllm_config.cache_config.block_size
        self._ids = itertools.count()
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._closed = False
        self.stats = {"requests": 0, "prompt_tokens": 0, "generated_tokens": 0, "cached_tokens": 0}

    @classmethod
    def from_model(cls, model: str, *, seed: int = 0, dtype: str = "auto", max_model_len: Optional[int] = None,
                   block_size: Optional[int] = None, enforce_eager: Optional[bool] = None,
                   logprobs_mode: str = "processed_logprobs", default_max_tokens: int = 256,
                   **engine_kwargs: Any) -> "VLLMEngine":
        """Start vLLM on a model directory or hub id, prefix caching on; extra kwargs go to AsyncEngineArgs.
        `enforce_eager=None`: eager on vLLM's CPU backend, vLLM's default elsewhere (`cpu_settings`)."""
        import os

        from vllm.engine.arg_utils import AsyncEngineArgs
        from vllm.platforms import current_platform
        from vllm.v1.engine.async_llm import AsyncLLM

        enforce_eager = cpu_settings(enforce_eager, current_platform.is_cpu(), os.environ)
        block_size = block_size if block_size is not None else default_block_size()
        args = AsyncEngineArgs(model=model, seed=seed, dtype=dtype, max_model_len=max_model_len,
                               block_size=block_size, enable_prefix_caching=True, enforce_eager=enforce_eager,
                               logprobs_mode=logprobs_mode, **engine_kwargs)
        return cls(AsyncLLM.from_engine_args(args), default_max_tokens=default_max_tokens)

    async def generate(self, request_id: str, *, prompt_ids: list[int], sampling_params: dict,
                       **kwargs) -> LocalTokenOutput:
        from vllm.inputs import TokensPrompt

        self._check_loop()
        params = to_sampling_params(sampling_params, self.default_max_tokens)
        prompt = [int(t) for t in prompt_ids]
        if not prompt:
            raise ValueError(f"request {request_id}: empty prompt")
        final = None
        async for out in self.engine.generate(TokensPrompt(prompt_token_ids=prompt), params,
                                              f"{request_id}-{next(self._ids)}"):
            final = out
        if final is None or not final.outputs:
            return LocalTokenOutput(token_ids=[], stop_reason="aborted", extra_fields={"num_cached_tokens": 0})
        o = final.outputs[0]
        tokens = list(o.token_ids)
        log_probs = None
        if params.logprobs is not None and o.logprobs is not None:
            log_probs = [float(step[t].logprob) for t, step in zip(tokens, o.logprobs)]
        cached = int(getattr(final, "num_cached_tokens", None) or 0)
        self.stats["requests"] += 1
        self.stats["prompt_tokens"] += len(prompt)
        self.stats["generated_tokens"] += len(tokens)
        self.stats["cached_tokens"] += cached
        return LocalTokenOutput(token_ids=tokens, log_probs=log_probs, stop_reason=stop_reason(o.finish_reason),
                                extra_fields={"num_cached_tokens": cached})

    def _check_loop(self) -> None:
        if self._closed:
            raise RuntimeError("VLLMEngine: generate() after aclose()")
        loop = asyncio.get_running_loop()
        if self._loop is None:
            self._loop = loop
        elif self._loop is not loop or loop.is_closed():
            raise RuntimeError("VLLMEngine serves the event loop of its first request (vLLM's AsyncLLM binds to it); "
                               "run every call in that loop, e.g. one asyncio.run for the engine's whole use")

    async def aclose(self) -> None:
        """Shut vLLM's engine core down (idempotent)."""
        if not self._closed:
            self.close()
            await asyncio.sleep(0)  # let the cancelled output handler finish

    def close(self) -> None:
        """The same, from outside an event loop.

        AsyncLLM holds reference cycles, so without a collection here its `__del__` (which shuts
        down again) would run at interpreter exit, after vLLM's module globals are gone, and print
        "Exception ignored in AsyncLLM.__del__ ... 'NoneType' object is not callable".
        """
        if self._closed:
            return
        self._closed = True
        engine, self.engine = self.engine, None
        engine.shutdown()
        del engine
        gc.collect()

    async def __aenter__(self) -> "VLLMEngine":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.aclose()

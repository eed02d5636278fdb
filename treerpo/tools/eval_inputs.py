"""The inputs of `treerpo.tools.evaluate`, every one checked before any sampling.

Each --data file must be a readable parquet with verl's `prompt` and `reward_model` columns, at
least one row, chat messages and a ground truth in every row, and no benchmark may appear twice;
--model must be a directory with config.json when it is a local path (a name that is not a local
path is a hub id, left to transformers); --out must not be a file. A bad input raises
`InputError` with one line naming it; `treerpo.tools.evaluate.main` prints it and exits 2.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd


class InputError(Exception):
    """A bad input, named in a one-line message; main prints it and exits 2."""


class Parser(argparse.ArgumentParser):
    """argparse whose errors are InputErrors (one line, exit 2) instead of usage + exit."""

    def error(self, message):
        raise InputError(message)


def first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [""])[0]


# ---- inputs, all checked before any sampling ----------------------------------------------------
@dataclass
class Benchmark:
    name: str
    path: str
    rows: list[dict]  # {"prompt": chat messages, "truth": ground truth}


def is_missing(value) -> bool:
    """None, NaN or blank text."""
    if isinstance(value, float):
        return np.isnan(value)
    return value is None or (isinstance(value, str) and not value.strip())


def problem_of(path: str, i: int, record: dict) -> dict:
    """One parquet row as {"prompt", "truth"}; a row without either is an InputError naming it."""
    prompt, reward = record["prompt"], record["reward_model"]
    messages = list(prompt) if isinstance(prompt, (list, tuple, np.ndarray)) else []
    if not messages or not all(isinstance(m, dict) and isinstance(m.get("role"), str)
                               and isinstance(m.get("content"), str) for m in messages):
        raise InputError(f"--data {path}: row {i}: 'prompt' is not a list of chat messages with role and content")
    truth = reward.get("ground_truth") if isinstance(reward, dict) else None
    if is_missing(truth):
        raise InputError(f"--data {path}: row {i}: no ground truth (reward_model.ground_truth)")
    return {"prompt": [dict(m) for m in messages], "truth": str(truth)}


def load_benchmark(path: str) -> Benchmark:
    p = Path(path)
    if not p.is_file():
        raise InputError(f"--data {path}: {'not a file' if p.exists() else 'no such file'}")
    try:
        df = pd.read_parquet(p)
    except Exception as e:  # not parquet, truncated, unreadable
        raise InputError(f"--data {path}: cannot be read as parquet ({type(e).__name__}: {first_line(e)})") from None
    if len(df) == 0:
        raise InputError(f"--data {path}: no problems (0 rows)")
    missing = {"prompt", "reward_model"} - set(df.columns)
    if missing:
        raise InputError(f"--data {path}: not a verl parquet (no column {', '.join(sorted(missing))}; "
                         f"data_prep writes them)")
    rows = [problem_of(path, i, r) for i, r in enumerate(df.to_dict(orient="records"))]
    name = str(df["data_source"].iloc[0]) if "data_source" in df.columns else p.stem
    return Benchmark(name, path, rows)


def load_benchmarks(paths: list[str]) -> list[Benchmark]:
    benchmarks, seen = [], {}
    for path in paths:
        b = load_benchmark(path)
        if b.name in seen:
            raise InputError(f"--data {path}: benchmark {b.name!r} is also {seen[b.name]}")
        seen[b.name] = path
        benchmarks.append(b)
    return benchmarks


def is_hub_id(model: str) -> bool:
    """Whether transformers would look `model` up on the hub (the rule it applies to non-directories)."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(model)
        return True
    except HFValidationError:
        return False


def check_model(model: str) -> None:
    """A local path must be a model directory; a hub id is left to the loader (and its cache)."""
    p = Path(model)
    if p.is_dir():
        if not (p / "config.json").is_file():
            raise InputError(f"--model {model}: no config.json in it (not a Hugging Face model directory; "
                             f"merge a verl checkpoint with python -m verl.model_merger)")
    elif p.exists():
        raise InputError(f"--model {model}: not a directory")
    elif not is_hub_id(model):
        raise InputError(f"--model {model}: no such directory")


def load_error(model: str, e: Exception) -> InputError:
    where = "" if Path(model).is_dir() else " (not a local directory, so it was looked up on the Hugging Face hub)"
    return InputError(f"--model {model}: cannot be loaded{where}: {type(e).__name__}: {first_line(e)}")


def check_out(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out}: exists and is not a directory")


def pick_engine(engine: str) -> str:
    """"local", or "vllm" when asked for or (auto) when vLLM imports; --engine vllm without it is an InputError."""
    if engine == "local":
        return engine
    try:
        import vllm  # noqa: F401
    except Exception as e:  # not installed, or a broken install (e.g. a CUDA torchcodec on a CPU machine)
        if engine == "vllm":
            why = "is not installed" if isinstance(e, ModuleNotFoundError) and e.name == "vllm" else \
                f"does not import ({type(e).__name__}: {first_line(e)})"
            raise InputError(f"--engine vllm: vLLM {why}; use --engine local") from None
        return "local"
    return "vllm"


def tokenize(benchmark: Benchmark, tokenizer, model: str) -> list[list[int]]:
    prompts = []
    for i, r in enumerate(benchmark.rows):
        try:
            prompts.append(tokenizer.apply_chat_template(r["prompt"], add_generation_prompt=True, tokenize=True)
                           ["input_ids"])
        except Exception as e:  # e.g. a tokenizer without a chat template
            raise InputError(f"--data {benchmark.path}: row {i}: the chat template of --model {model} fails on it "
                             f"({type(e).__name__}: {first_line(e)})") from None
    return prompts

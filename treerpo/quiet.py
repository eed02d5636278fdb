"""Quiet by default: the third-party warnings our commands would print, silenced in one place.

Every message below comes from a library we use, fires on every run, and says nothing about the
user's run (verl's optional training engines this install does not have, ...). `install()` hides
exactly these, in this process and, through the environment, in every process it starts (verl's
trainer, its Ray workers, vLLM). Any other warning still shows. Our commands call it first
(`treerpo`, `python -m verl_ext.main`, `verl_ext.check`, data_prep, evaluate) unless asked not to:

    --verbose            (the commands that take it), or
    TREERPO_VERBOSE=1    (any of them, and verl's subprocesses)
"""

from __future__ import annotations

import logging
import os
import warnings

ENV = "TREERPO_VERBOSE"

# (message prefix, category): Python warnings, matched at the start of the message as
# `warnings.filterwarnings` and PYTHONWARNINGS do
WARNINGS = (
    # verl/workers/engine/__init__.py on every import: engines of other stacks, not installed
    ("torchtitan engine is not available", "UserWarning"),
    ("veomni engine is not available", "UserWarning"),
    ("automodel engine is not available", "UserWarning"),
    ("mindspeed engine is not available", "UserWarning"),
    ("megatron engine is not available", "UserWarning"),
    # verl's config check, every tree or GRPO run: those estimators never use a critic
    ("Disabled critic as algorithm.adv_estimator != gae", "UserWarning"),
)

# (logger, message prefix): log records of the same kind
LOG_RECORDS = (
    ("verl.plugin.platform.platform_manager", "Platform override from VERL_PLATFORM"),  # our CPU mode sets it
)

# environment defaults for this process (read when those libraries are first imported) and the
# processes it starts; a value the user set is kept
CHILD_ENV = {
    "VLLM_LOGGING_LEVEL": "ERROR",  # vLLM's start-up notes (Triton absent, eager mode, LD_PRELOAD hints)
    "TRANSFORMERS_VERBOSITY": "error",  # e.g. "Qwen2VLImageProcessor requires torchvision"
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",  # transformers' "Loading weights" bar on every model load
}


def verbose(flag: bool = False) -> bool:
    """True when the user asked for everything: the command's --verbose or TREERPO_VERBOSE=1."""
    return flag or os.environ.get(ENV, "").strip().lower() not in ("", "0", "false", "no")


class _DropPrefix(logging.Filter):
    def __init__(self, prefix: str):
        super().__init__()
        self.prefix = prefix

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.prefix)


def python_warnings_spec() -> str:
    """The PYTHONWARNINGS entries that silence WARNINGS in a child process."""
    return ",".join(f"ignore:{msg}:{cat}" for msg, cat in WARNINGS)


def install(verbose_flag: bool = False) -> bool:
    """Silence the listed third-party warnings here and in child processes, unless verbose.

    Returns True when it did (False: verbose, nothing changed). Safe to call more than once."""
    if verbose(verbose_flag):
        os.environ[ENV] = "1"  # the subprocesses we start are verbose too
        return False
    import builtins

    for msg, cat in WARNINGS:
        warnings.filterwarnings("ignore", message=_escape(msg), category=getattr(builtins, cat))
    for name, prefix in LOG_RECORDS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropPrefix) and f.prefix == prefix for f in logger.filters):
            logger.addFilter(_DropPrefix(prefix))
    spec = python_warnings_spec()
    current = os.environ.get("PYTHONWARNINGS", "")
    if spec not in current:
        os.environ["PYTHONWARNINGS"] = f"{current},{spec}" if current else spec
    for key, value in CHILD_ENV.items():
        os.environ.setdefault(key, value)
    return True


def _escape(msg: str) -> str:
    import re

    return re.escape(msg)

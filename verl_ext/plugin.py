"""Loaded by `import verl` in every verl process, through the `verl.plugins` entry point.

First, on a machine without an accelerator only, the CPU support (`verl_ext.cpu`): verl's
platform must be registered before anything asks verl for one. Then our names in verl's
registries, each registered when its registry's module is imported (verl_ext.import_hooks; most
verl processes never import them, and importing them here would cost each process seconds):

    verl.trainer.ppo.core_algos     estimators "treerpo", "treepo"      (verl_ext.estimators)
    verl.experimental.agent_loop    agent loops "tree_agent"            (verl_ext.agent_loop)
                                    "seeded_single_turn_agent"          (verl_ext.seeded_agent)
    verl.trainer.ppo.v1             trainer mode "tree_sync"            (verl_ext.trainer)
    verl.workers.engine.fsdp...     the tree-packed FSDP engine, only with tree.train.pack
                                    (verl_ext.packed_engine)

verl swallows plugin import errors at DEBUG level, so tests check that the registrations
happen (tests/test_plugin.py) rather than trusting this import.
"""

import importlib
import os

from verl_ext import cpu
from verl_ext.import_hooks import when_imported

if cpu.wanted():
    cpu.enable()

PACK_ENV = "TREERPO_TREE_PACK"  # "1": tree.train.pack is on (exported by verl_ext.main)

REGISTRATIONS = [
    ("verl.trainer.ppo.core_algos", "verl_ext.estimators"),
    ("verl.experimental.agent_loop", "verl_ext.agent_loop"),
    ("verl.experimental.agent_loop", "verl_ext.seeded_agent"),
    ("verl.trainer.ppo.v1", "verl_ext.trainer"),
]

for _registry, _ours in REGISTRATIONS:
    when_imported(_registry, lambda _module, ours=_ours: importlib.import_module(ours))

# tree.train.pack (verl_ext.main exports it): the packed FSDP engine in place of verl's; after the
# CPU support's hook on the same module, which registers verl's engine for device "cpu" first
if os.environ.get(PACK_ENV) == "1":
    when_imported("verl.workers.engine.fsdp.transformer_impl",
                  lambda _module: importlib.import_module("verl_ext.packed_engine").install())

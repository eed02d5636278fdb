"""Loaded by `import verl` in every verl process, through the `verl.plugins` entry point.

Registers the `treerpo` and `treepo` advantage estimators and the `tree_agent` agent loop.
verl swallows plugin import errors at DEBUG level, so tests check that the registrations
happened (tests/test_plugin.py) rather than trusting this import.
"""

from verl_ext import agent_loop  # noqa: F401  registers the "tree_agent" agent loop
from verl_ext import estimators  # noqa: F401  registers "treerpo" and "treepo"

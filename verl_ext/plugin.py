"""Loaded by `import verl` in every verl process, through the `verl.plugins` entry point.

Registers the `treerpo` and `treepo` advantage estimators, the `tree_agent` agent loop and the
`tree_sync` trainer mode. verl swallows plugin import errors at DEBUG level, so tests check that
the registrations happened (tests/test_plugin.py) rather than trusting this import.
"""

from verl_ext import agent_loop  # noqa: F401  registers the "tree_agent" agent loop
from verl_ext import estimators  # noqa: F401  registers "treerpo" and "treepo"
from verl_ext import trainer  # noqa: F401  registers trainer mode "tree_sync"

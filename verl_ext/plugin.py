"""Loaded by `import verl` in every verl process, through the `verl.plugins` entry point.

verl swallows plugin import errors at DEBUG level, so tests check that the registration happened
(tests/test_plugin.py) rather than trusting this import.
"""

from verl_ext import estimators  # noqa: F401  registers "treerpo" and "treepo"

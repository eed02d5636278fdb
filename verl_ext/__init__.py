"""The thin plumbing that plugs `treerpo` into verl 0.9.1 (see verl_ext/plugin.py)."""

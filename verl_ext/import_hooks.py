"""Run a function right after a module is imported for the first time (or at once, if it already is).

    when_imported("verl.trainer.ppo.core_algos", lambda module: ...)

verl imports our plugin in every process it starts (`verl.plugins` entry point): the driver, the
task runner, training workers, vLLM servers, reward, agent-loop and TransferQueue actors. Most
of them never look up an advantage estimator, an agent loop or a trainer mode, and importing
the verl modules that hold those registries costs seconds of CPU per process (about 5 s on 2
cores, most of a verl process's start-up beyond verl's own imports). So the plugin registers
each name when its registry's module is imported, in whichever process that happens.
"""

from __future__ import annotations

import importlib.abc
import sys
import threading
from typing import Callable

_lock = threading.RLock()
_hooks: dict[str, list[Callable]] = {}


def when_imported(name: str, fn: Callable) -> None:
    """Call `fn(module)` once `name` is imported; now if it already is."""
    with _lock:
        module = sys.modules.get(name)
        if module is not None:
            spec = getattr(module, "__spec__", None)
            if getattr(spec, "_initializing", False):
                raise RuntimeError(f"{name} is being imported right now; register the hook before importing it")
            fn(module)
            return
        _hooks.setdefault(name, []).append(fn)
        if not any(isinstance(f, _Finder) for f in sys.meta_path):
            sys.meta_path.insert(0, _Finder())


class _Finder(importlib.abc.MetaPathFinder):
    """Finds a hooked module with the other finders and wraps its loader; ignores everything else."""

    def find_spec(self, fullname, path, target=None):
        if fullname not in _hooks:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                break
        else:
            return None
        if spec.loader is not None and hasattr(spec.loader, "exec_module"):
            spec.loader = _HookedLoader(spec.loader)
        return spec


class _HookedLoader(importlib.abc.Loader):
    def __init__(self, loader):
        self._loader = loader

    def __getattr__(self, name):
        return getattr(self._loader, name)

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        # the module keeps its real loader, as if nothing had been in between
        module.__loader__ = self._loader
        if module.__spec__ is not None:
            module.__spec__.loader = self._loader
        self._loader.exec_module(module)
        with _lock:
            fns = _hooks.pop(module.__name__, [])
        for fn in fns:
            fn(module)

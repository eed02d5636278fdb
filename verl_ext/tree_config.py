"""Reading the `tree:` group of a verl run config (options defined in treerpo/tree/options.py)."""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig, OmegaConf

from treerpo.tree.options import AdvantageOptions, RolloutOptions


def _root(config: Any):
    if isinstance(config, DictConfig):
        root = config._get_root()  # OmegaConf keeps the parent chain of nested nodes
        return root if isinstance(root, DictConfig) else config
    return config


def _group(config: Any, name: str):
    root = _root(config)
    tree = root.get("tree") if hasattr(root, "get") else None
    node = tree.get(name) if tree is not None and hasattr(tree, "get") else None
    if isinstance(node, DictConfig):
        node = OmegaConf.to_container(node, resolve=True)
    return node


def advantage_options(config: Any) -> AdvantageOptions:
    """From `tree.advantage` of the run config `config` belongs to (any node of it, e.g. `algorithm`)."""
    if isinstance(config, AdvantageOptions):
        return config
    return AdvantageOptions.from_mapping(_group(config, "advantage"))


def rollout_options(config: Any) -> RolloutOptions:
    """From `tree.rollout` of the run config `config` belongs to."""
    if isinstance(config, RolloutOptions):
        return config
    return RolloutOptions.from_mapping(_group(config, "rollout"))


def train_pack(config: Any) -> bool:
    """`tree.train.pack` of the run config (false when absent); see verl_ext/packed_engine.py."""
    node = _group(config, "train") or {}
    unknown = set(node) - {"pack"}
    if unknown:
        raise ValueError(f"unknown tree.train option(s) {sorted(unknown)}: tree.train has only 'pack'")
    pack = node.get("pack", False)
    if not isinstance(pack, bool):
        raise ValueError(f"tree.train.pack must be true or false, got {pack!r}")
    return pack

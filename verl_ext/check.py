"""Compose a run config exactly as `verl_ext.main` would and validate it, without launching.

    python -m verl_ext.check [the same overrides]     # prints "config OK" or the error

With TREERPO_DUMP_CONFIG=<path> it also writes the composed, resolved config there as YAML
(docs/CPU.md and tests/test_cpu_preset.py diff a CPU run against a GPU launch script with it).

Runs verl's validate_config, turns the dataclass-backed sections verl checks at worker start
(algorithm, rollout, actor, critic) into their dataclasses, and reads the `tree` group, so a
typo or a key that would never reach the code fails here. Launch scripts run this when
CHECK_ONLY=1 (tests/test_launch_scripts.py does so for every script).
"""

from __future__ import annotations

import os

import hydra
from omegaconf import DictConfig, OmegaConf

from verl_ext.main import check_config


@hydra.main(config_path="config", config_name="tree_ppo_trainer", version_base=None)
def main(config: DictConfig) -> None:
    from verl.utils.config import omega_conf_to_dataclass

    OmegaConf.resolve(config)
    check_config(config)
    omega_conf_to_dataclass(config.algorithm)
    omega_conf_to_dataclass(config.actor_rollout_ref.rollout)
    omega_conf_to_dataclass(config.actor_rollout_ref.actor)
    if config.critic.get("enable"):
        omega_conf_to_dataclass(config.critic)
    dump = os.environ.get("TREERPO_DUMP_CONFIG")
    if dump:
        with open(dump, "w") as f:
            f.write(OmegaConf.to_yaml(config, resolve=True))
    print("config OK")


if __name__ == "__main__":
    from treerpo import quiet

    quiet.install()  # third-party warnings off unless TREERPO_VERBOSE=1 (treerpo/quiet.py)
    main()

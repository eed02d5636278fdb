"""Options set as Hydra overrides of verl's own ppo_trainer config reach the estimator."""

import pickle

import pytest
import torch
from hydra import compose, initialize_config_module
from omegaconf import OmegaConf
from verl.trainer.ppo.v1.utils import compute_advantage_for_multi_trajectories

from tests.test_estimators import DEV, as_dataproto, expected_tokens, hand_batch
from treerpo.tree.options import AdvantageOptions
from verl_ext.tree_config import advantage_options as options_from_config


def verl_config(*overrides):
    with initialize_config_module(config_module="verl.trainer.config", version_base=None):
        cfg = compose("ppo_trainer", overrides=list(overrides))
    OmegaConf.resolve(cfg)  # as TaskRunnerV1.run does
    return pickle.loads(pickle.dumps(cfg))  # as Ray hands it to the TaskRunner actor


def advantages(cfg):
    uids, rewards, mask = hand_batch()
    data = as_dataproto(uids, rewards, mask)
    keys = [f"k{i}_0_0" for i in range(len(uids))]
    out = compute_advantage_for_multi_trajectories(
        data, keys, adv_estimator=cfg.algorithm.adv_estimator, config=cfg.algorithm
    )
    return out.batch["advantages"]


def test_overrides_reach_estimator_inside_trainer_call():
    cfg = verl_config("algorithm.adv_estimator=treerpo", "+tree.advantage.norm=mean", "+tree.advantage.tau=0.4")
    assert options_from_config(cfg.algorithm) == AdvantageOptions(norm="mean", tau=0.4)
    exp = {k: v for k, v in DEV.items() if k not in ("a0", "a1")}  # tau 0.4 prunes {a0, a1}
    torch.testing.assert_close(advantages(cfg), expected_tokens(exp), atol=1e-6, rtol=0)


def test_without_tree_group_defaults_apply():
    cfg = verl_config("algorithm.adv_estimator=treerpo")
    assert options_from_config(cfg.algorithm) == AdvantageOptions()


def test_typo_in_override_fails():
    cfg = verl_config("algorithm.adv_estimator=treepo", "+tree.advantage.agregation=group_size")
    with pytest.raises(ValueError, match="agregation"):
        advantages(cfg)


def test_entry_point_yaml_defaults_equal_the_documented_defaults():
    """verl_ext/config/tree_ppo_trainer.yaml repeats the tree defaults of treerpo/tree/options.py."""
    from pathlib import Path

    from treerpo.tree.options import RolloutOptions

    yaml = OmegaConf.load(Path(__file__).parents[1] / "verl_ext" / "config" / "tree_ppo_trainer.yaml")
    assert RolloutOptions.from_mapping(OmegaConf.to_container(yaml.tree.rollout)) == RolloutOptions()
    assert AdvantageOptions.from_mapping(OmegaConf.to_container(yaml.tree.advantage)) == AdvantageOptions()


def test_rollout_overrides_reach_the_sampler_options():
    """`tree.rollout.*` overrides (here the TreeRPO growth form) reach the options the agent loop reads."""
    from treerpo.tree.options import RolloutOptions
    from verl_ext.tree_config import rollout_options

    cfg = verl_config("+tree.rollout.expansion=level", "+tree.rollout.branching=2")
    assert rollout_options(cfg.actor_rollout_ref.rollout) == RolloutOptions(expansion="level", branching=2)
    with pytest.raises(ValueError, match="tree.rollout.expansion"):
        rollout_options(verl_config("+tree.rollout.expansion=eager"))

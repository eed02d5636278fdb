"""`tree_sync` mini-batch arithmetic: verl's number of updates per step, each an equal share of the leaves."""


import pytest
from omegaconf import OmegaConf
from verl.trainer.ppo.v1.trainer_sync import PPOTrainerSync

from verl_ext.trainer import TreeSyncTrainer


def make_trainer(agent_loop="tree_agent", n=1, train_batch=16, mini=8):
    trainer = object.__new__(TreeSyncTrainer)
    trainer.config = OmegaConf.create({
        "data": {"train_batch_size": train_batch},
        "actor_rollout_ref": {"actor": {"ppo_mini_batch_size": mini},
                              "rollout": {"n": n, "agent": {"default_agent_loop": agent_loop}}},
        "trainer": {"critic_warmup": 0},
    })
    trainer.use_critic = False
    trainer.global_steps = 1
    return trainer


class FakeBatch(list):
    pass


@pytest.fixture
def seen(monkeypatch):
    calls = []

    def fake_update(self, batch, metrics):
        actor = self.config.actor_rollout_ref.actor
        calls.append(actor.ppo_mini_batch_size * self.config.actor_rollout_ref.rollout.n)
        return batch

    monkeypatch.setattr(PPOTrainerSync, "_update_actor", fake_update)
    return calls


def test_early_stopped_trees_split_into_verls_number_of_updates(seen):
    trainer = make_trainer(train_batch=16, mini=8)  # 2 updates per step, as verl's GRPO would make
    multiple = trainer._get_required_batch_multiple(dp_size=1)
    assert multiple % 2 == 0
    rows = 88  # 16 trees of up to 8 leaves, some paths stopped early: 88 rows
    padded = rows + (-rows) % multiple  # what verl's upsample_batch_to_divisible_size makes of it
    trainer._update_actor(FakeBatch(range(padded)), {})
    assert seen == [padded // 2]
    assert trainer.config.actor_rollout_ref.actor.ppo_mini_batch_size == 8  # restored


def test_full_trees_give_grpos_mini_batch(seen):
    trainer = make_trainer(train_batch=64, mini=16)
    rows = 64 * 64  # TreeRPO N=4, D=3: 64 leaves per prompt
    assert rows % trainer._get_required_batch_multiple(dp_size=8) == 0
    trainer._update_actor(FakeBatch(range(rows)), {})
    assert seen == [16 * 64]  # ppo_mini_batch_size prompts x leaves, as GRPO with n = 64


def test_dp_size_and_updates_both_divide_the_padded_batch():
    trainer = make_trainer(train_batch=64, mini=16)
    m = trainer._get_required_batch_multiple(dp_size=8)
    assert m % 8 == 0 and m % (4 * 8) == 0


def test_flat_runs_keep_verls_arithmetic(seen):
    trainer = make_trainer(agent_loop="single_turn_agent", n=8, train_batch=16, mini=8)
    assert trainer._get_required_batch_multiple(dp_size=1) == 64
    trainer._update_actor(FakeBatch(range(128)), {})
    assert seen == [64]


def test_unpadded_batch_is_an_error(seen):
    trainer = make_trainer(train_batch=16, mini=4)  # 4 updates
    with pytest.raises(RuntimeError, match="do not split"):
        trainer._update_actor(FakeBatch(range(10)), {})

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


# ---- data-parallel ranks: whole trees per rank -----------------------------------------------------
class FakeMeta:
    """The parts of TransferQueue's KVBatchMeta that _balance_batch uses."""

    def __init__(self, keys, tags):
        self.keys, self.tags = list(keys), list(tags)

    def __len__(self):
        return len(self.keys)

    def reorder(self, order):
        assert sorted(order) == list(range(len(self.keys)))
        self.keys = [self.keys[i] for i in order]
        self.tags = [self.tags[i] for i in order]


def step_batch(rng, trees=64, leaves=8):
    """A step's rows as TransferQueue holds them: keys <prompt uid>_<session>_<leaf>, trees whose
    paths stopped early have fewer leaves, rows of one tree not adjacent (completion order)."""
    keys, tags = [], []
    for t in range(trees):
        for leaf in range(rng.randint(1, leaves)):
            keys.append(f"u{t:03d}_0_{leaf}")
            tags.append({"seq_len": rng.randint(20, 60)})
    order = list(range(len(keys)))
    rng.shuffle(order)
    return FakeMeta([keys[i] for i in order], [tags[i] for i in order])


@pytest.mark.parametrize("seed", range(3))
def test_balance_batch_keeps_trees_whole_per_rank_at_dp_8(seed, monkeypatch):
    import random

    from verl.trainer.ppo import padding_utils

    def upsample(batch, multiple, eos):  # verl's no-op rows, as many as the multiple asks for
        n = multiple - len(batch) % multiple if len(batch) % multiple else 0
        return FakeMeta(batch.keys + [f"pad{i}_0_0" for i in range(n)],
                        batch.tags + [{"seq_len": 2, "is_padding": True}] * n)

    monkeypatch.setattr(padding_utils, "upsample_batch_to_divisible_size", upsample)
    trainer = make_trainer(train_batch=64, mini=16)  # 4 updates a step
    trainer.actor_rollout_wg = type("WG", (), {"_dispatch_info": {"actor": list(range(8))}})()
    trainer.tokenizer = type("Tok", (), {"eos_token_id": 0})()
    batch = step_batch(random.Random(seed))
    rows = len(batch)
    metrics = {}
    out = trainer._balance_batch(batch, metrics)
    size = len(out) // 8
    assert len(out) % trainer._get_required_batch_multiple(8) == 0  # what tree_sync's updates need
    rank_of = {}
    for i, key in enumerate(out.keys):
        if not key.startswith("pad"):
            rank_of.setdefault(key.rsplit("_", 2)[0], set()).add(i // size)
    assert len(rank_of) == 64 and all(len(r) == 1 for r in rank_of.values())  # no tree cut across ranks
    loads = [sum(t["seq_len"] for t in out.tags[r * size:(r + 1) * size] if not t.get("is_padding"))
             for r in range(8)]
    assert max(loads) - min(loads) <= 8 * 60  # at most one tree's tokens apart
    assert metrics["tree/padding_rows_for_ranks"] == len(out) - rows
    # the mini-batch rewrite then splits each rank's share into verl's 4 updates
    assert size % 4 == 0

"""`tree.rollout.seeded_segments`: every engine call carries a seed that is a function of the
node it generates, so an engine that samples from the seed (as vLLM does for seeded requests)
gives the same tree whatever order its calls complete in, and whatever the prompt's verl uid."""

import asyncio
import random

import pytest

from tests.fake_engine import FakeOutput
from treerpo.tree.options import RolloutOptions
from treerpo.sampling.sampler import sample_tree, segment_seed
from treerpo.sampling.segments import SegmentSource

PROMPT = [5, 6, 7]
EOS = 2


class SeedSampler:
    """Draws a call's tokens from its seed alone (EOS in 30% of calls); without a seed, from its
    own running generator. Calls take a random number of event-loop turns."""

    def __init__(self, delay_seed=0):
        self.delays = random.Random(delay_seed)
        self.unseeded = random.Random(99)
        self.params = []

    async def generate(self, request_id, *, prompt_ids, sampling_params):
        self.params.append(dict(sampling_params))
        seed = sampling_params.get("seed")
        r = random.Random(seed) if seed is not None else self.unseeded
        n = sampling_params["max_tokens"]
        toks = [r.randrange(10, 500) for _ in range(n)]
        if r.random() < 0.3:
            toks[r.randrange(n)] = EOS
        for _ in range(self.delays.randint(1, 20)):
            await asyncio.sleep(0)
        return FakeOutput(toks, [-1.0] * len(toks))


def grow(opts, seed_key, uid="u", delay_seed=0):
    eng = SeedSampler(delay_seed)
    tree = asyncio.run(sample_tree(PROMPT, uid, SegmentSource(eng, {"temperature": 1.0}, EOS), opts,
                                   opts.max_response_tokens, seed_key=seed_key))
    return tree, eng


def signature(tree):
    return [(n.path(), tuple(n.token_ids), n.stop_reason) for n in sorted(tree.iter_nodes(), key=lambda n: n.node_id)]


TREERPO = RolloutOptions(method="treerpo", branching=3, depth=3, step_tokens=4)
TREEPO = RolloutOptions(method="treepo", leaves=8, branch=2, segment_tokens=4, max_segments=4)


@pytest.mark.parametrize("opts", [TREERPO, TREEPO], ids=["treerpo", "treepo"])
def test_seeded_trees_repeat_whatever_the_completion_order_and_uid(opts):
    first, eng = grow(opts, "k", uid="uuid-1", delay_seed=1)
    again, _ = grow(opts, "k", uid="uuid-2", delay_seed=2)
    assert signature(first) == signature(again)
    seeds = [p["seed"] for p in eng.params]
    assert len(set(seeds)) == len(seeds)  # every node its own stream (siblings included)
    other, _ = grow(opts, "k2", uid="uuid-1", delay_seed=1)
    assert signature(other) != signature(first)


def test_barrier_free_and_level_treerpo_draw_the_same_seeded_tree():
    from dataclasses import replace

    bf, _ = grow(replace(TREERPO, expansion="async"), "k", delay_seed=3)
    lv, _ = grow(replace(TREERPO, expansion="level"), "k", delay_seed=4)
    assert signature(bf) == signature(lv)
    assert len(bf.leaves()) < 27  # EOS ended some paths early: the shapes were not fixed


def test_the_seed_is_the_nodes_path_and_the_run_seed():
    tree, eng = grow(TREERPO, "k")
    by_prefix = {}
    for node in tree.iter_nodes():
        if node.parent is not None:
            by_prefix[node.path()] = segment_seed(TREERPO.seed, "k", node.path())
    assert sorted(p["seed"] for p in eng.params) == sorted(by_prefix.values())
    assert segment_seed(1, "k", (0,)) != segment_seed(0, "k", (0,))
    assert 0 <= segment_seed(0, "k", (2, 1, 0)) < 2**31


def test_unseeded_calls_carry_no_seed():
    _, eng = grow(TREERPO, None)
    assert eng.params and all("seed" not in p for p in eng.params)


def test_tree_seed_key_names_prompt_and_step():
    pytest.importorskip("verl")
    from verl_ext.agent_loop import tree_seed_key

    assert tree_seed_key([1, 2, 3], 4) == tree_seed_key((1, 2, 3), "4")
    assert len({tree_seed_key([1, 2, 3], 4), tree_seed_key([1, 2, 3], 5), tree_seed_key([1, 2, 4], 4)}) == 3


def test_option_is_read_and_typed():
    assert RolloutOptions.from_mapping({"seeded_segments": True}).seeded_segments is True
    assert RolloutOptions().seeded_segments is False

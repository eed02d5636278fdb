"""The JSONL tree dump (`tree.rollout.dump_path`) on trees whose leaves end at different lengths."""

import json

import pytest

from tests.helpers import build_tree
from treerpo.tree.options import AdvantageOptions
from treerpo.advantages.per_tree import tree_record
from treerpo.tree.record import append_jsonl


@pytest.mark.parametrize("method", ["treerpo", "treepo"])
def test_leaves_of_different_lengths(tmp_path, method):
    # one path stops early (EOS after 2 tokens), the others run to 7 and 9 tokens: the verl run found
    # this case, which every earlier test tree (all leaves of one length) hid
    tree = build_tree("p", [(3, [(4, 1.0), (6, 0.0)]), (2, 1.0)])
    tree.nodes[1].global_steps = (4, 4)
    rec = tree_record(tree, lambda ids: " ".join(map(str, ids)), method, step=4)
    leaves = [n for n in rec["nodes"] if n["stop"] is not None]
    assert sorted(n["tokens"] for n in leaves) == [2, 4, 6]
    assert all(n["advantage"] is not None for n in (leaves if method == "treepo" else rec["nodes"]))
    node = next(n for n in rec["nodes"] if n["path"] == [0])
    assert node["token_ids"] == [100, 101, 102] and node["global_steps"] == [4, 4]
    assert rec["prompt_ids"] == [1, 2, 3] and rec["step"] == 4
    append_jsonl(str(tmp_path / "t.jsonl"), rec)
    assert json.loads((tmp_path / "t.jsonl").read_text())["prompt_uid"] == "p"


def test_pruned_flags_and_options_are_recorded():
    # a group of one (node 1's single child) and a group of two that disagree (the root's)
    tree = build_tree("p", [(2, [(1, 1.0)]), (3, 0.0)])
    opts = AdvantageOptions(norm="mean", tau=0.2)
    rec = tree_record(tree, str, "treerpo", opts)
    pruned = {tuple(n["path"]): n["pruned"] for n in rec["nodes"]}
    assert pruned == {(0,): False, (1,): False, (0, 0): True}
    assert rec["advantage_options"]["tau"] == 0.2 and rec["advantage_options"]["norm"] == "mean"
    assert all(n["pruned"] is None for n in tree_record(tree, str, "treepo")["nodes"])

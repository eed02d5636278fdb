"""`treerpo view`: the view records (groups, answers, summaries) and the CLI, without a browser."""

import json
import random

import pytest

from tests.helpers import build_tree, random_tree
from treerpo.tree.options import AdvantageOptions
from treerpo.tree.tree import StopReason
from treerpo.advantages.per_tree import tree_record
from treerpo.tree.record import append_jsonl
from treerpo.tools.tree_view import question, read_dump, view_tree, write_view
from treerpo.cli import main as cli


def decode(ids):
    return " ".join(map(str, ids))


def test_treerpo_groups_summary_and_answers():
    # root: two children; the first has three leaves with rewards 1, 0, 0 (kept), the second a
    # single child (a group of one) whose two leaves agree (zero variance)
    tree = build_tree("p", [(3, [(2, 1.0), (2, 0.0), (2, 0.0)]), (4, [(1, [(2, 1.0), (2, 1.0)])])])
    rec = tree_record(tree, decode, "treerpo", AdvantageOptions(norm="mean", tau=0.1), step=3)
    v = view_tree(rec)
    states = {int(k): g["state"] for k, g in v["groups"].items()}
    first, second = (n["id"] for n in v["nodes"] if n["depth"] == 1)
    only = next(n["id"] for n in v["nodes"] if n["parent"] == second)
    assert states == {0: "kept", first: "kept", second: "single", only: "zero-variance"}
    s = v["summary"]
    assert (s["leaves"], s["depth"], s["groups"], s["zero_variance_groups"], s["pruned_groups"]) == (5, 3, 4, 1, 2)
    assert s["tokens"] == 3 + 4 + 1 + 5 * 2 and s["flat_tokens"] == 3 * 5 + 2 * 7
    assert s["accuracy"] == pytest.approx(3 / 5)
    by_id = {n["id"]: n for n in rec["nodes"]}
    for n in v["nodes"]:  # the view keeps the dump's numbers
        assert n["value"] == by_id[n["id"]]["value"] and n["adv"] == by_id[n["id"]]["advantage"]
        assert n["group"] == by_id[n["id"]]["parent"]
    assert v["step"] == 3 and v["options"]["tau"] == 0.1


def test_extracted_answer_spans_segments():
    # a boxed answer cut between two segments: the answer is read from the whole path's text
    tree = build_tree("p", [(2, [(2, 1.0)]), (2, 0.0)])
    texts = {100: "7+5=12\n", 101: "\\box", 102: "ed{12}", 103: "<eos>", 104: "12", 105: "<eos>"}
    v = view_tree(tree_record(tree, lambda ids: "".join(texts.get(i, "") for i in ids), "treerpo"))
    leaves = [(n["answer"], n["reward"]) for n in v["nodes"] if "reward" in n]
    assert leaves == [("12", 1.0), (None, 0.0)]


def test_pruned_groups_in_an_older_dump_are_inferred():
    # sibling values differ (1 vs 0.5: std 0.35) but tau=0.5 prunes the group: all advantages 0
    tree = build_tree("p", [(2, [(1, 1.0), (1, 1.0)]), (2, [(1, 1.0), (1, 0.0)])])
    rec = tree_record(tree, decode, "treerpo", AdvantageOptions(norm="mean", tau=0.5))
    assert view_tree(rec)["groups"]["0"]["state"] == "pruned"
    for n in rec["nodes"]:
        del n["pruned"]  # dumps written before the field existed
    assert view_tree(rec)["groups"]["0"]["state"] == "pruned"
    rec = tree_record(tree, decode, "treerpo", AdvantageOptions(norm="mean", tau=0.0))
    assert view_tree(rec)["groups"]["0"]["state"] == "kept"


@pytest.mark.parametrize("seed", range(20))
def test_treepo_groups_reproduce_the_estimators_advantage(seed):
    # A_i = mean over the leaf's groups G of (R_i - mean_G R): the groups the viewer shows must give
    # back the advantage treerpo.advantages.segment wrote into the dump
    tree = random_tree(random.Random(seed), f"p{seed}", max_depth=4, max_branch=3)
    rec = tree_record(tree, decode, "treepo")
    v = view_tree(rec)
    by_id = {n["id"]: n for n in rec["nodes"]}
    for n in v["nodes"]:
        if n["groups"] is None:
            continue
        deltas = [n["reward"] - v["groups"][str(g)]["mean"] for g in n["groups"]]
        assert sum(deltas) / len(deltas) == pytest.approx(by_id[n["id"]]["advantage"], abs=1e-9)


@pytest.mark.parametrize("seed", range(10))
def test_treepo_node_advantage_is_the_estimators_once_credit(seed):
    import torch

    from treerpo.tree import node_table
    from treerpo.advantages.segment import treepo_node_advantages, treepo_row_advantages
    from treerpo.sampling.rows import leaf_rows

    tree = random_tree(random.Random(seed), f"p{seed}", max_depth=4, max_branch=3)
    v = {n["id"]: n for n in view_tree(tree_record(tree, decode, "treepo"))["nodes"]}
    rows = leaf_rows(tree)
    length = max(r.leaf.end for r in rows)
    mask = (torch.arange(length)[None, :] < torch.tensor([r.leaf.end for r in rows])[:, None]).float()
    table = node_table.build([r.uid for r in rows], mask)
    rewards = torch.tensor([float(r.leaf.reward) for r in rows], dtype=torch.float64)
    node_adv = treepo_node_advantages(table, treepo_row_advantages(table, rewards, AdvantageOptions()))
    for r, row in enumerate(rows):
        for j, node in enumerate(row.leaf.lineage()[:-1]):
            assert v[node.node_id]["adv_below"] == pytest.approx(float(node_adv[table.row_nodes[r, j]]), abs=1e-9)


@pytest.mark.parametrize("seed", range(20))
def test_treerpo_states_match_the_estimators_pruning(seed):
    tree = random_tree(random.Random(seed), f"p{seed}", max_depth=4, max_branch=3)
    rec = tree_record(tree, decode, "treerpo", AdvantageOptions(norm="group", tau=0.3))
    v = view_tree(rec)
    for n in rec["nodes"]:
        state = v["groups"][str(n["parent"])]["state"]
        assert n["pruned"] == (state != "kept")


def test_question_strips_the_chat_template():
    assert question("<|im_start|>user\n7 *5 -8<|im_end|>\n<|im_start|>assistant\n") == "7 *5 -8"


def test_cli_view_filters_and_errors(tmp_path, capsys):
    dump = tmp_path / "trees.jsonl"
    for step, uid in ((1, "aa-1"), (1, "bb-2"), (2, "aa-1")):
        tree = build_tree(uid, [(2, 1.0), (3, 0.0)])
        append_jsonl(str(dump), tree_record(tree, decode, "treerpo", step=step))
    assert cli(["view", str(dump)]) == 0
    html = (tmp_path / "trees.html").read_text()
    assert "aa-1" in html and "bb-2" in html and "https://" not in html and "http://" not in html
    assert cli(["view", str(dump), "-o", str(tmp_path / "s.html"), "--step", "1", "--prompt", "aa"]) == 0
    data = (tmp_path / "s.html").read_text().split('type="application/json">')[1].split("</script>")[0]
    trees = json.loads(data.replace("<\\/", "</"))["trees"]
    assert [(t["step"], t["uid"]) for t in trees] == [(1, "aa-1")]
    assert "1 trees" in capsys.readouterr().out
    assert cli(["view", str(dump), "--step", "9"]) == 1
    assert cli(["view", str(tmp_path / "missing.jsonl")]) == 1
    assert len(list(read_dump(str(dump), prompt="aa"))) == 2


def test_text_cannot_close_the_data_script(tmp_path):
    tree = build_tree("p", [(2, 1.0), (2, 0.0)])
    rec = tree_record(tree, lambda ids: "</script><b>x", "treerpo")
    append_jsonl(str(tmp_path / "t.jsonl"), rec)
    write_view(str(tmp_path / "t.jsonl"), str(tmp_path / "t.html"))
    assert (tmp_path / "t.html").read_text().count("</script>") == 2  # the page's own two scripts

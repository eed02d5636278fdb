"""`treerpo view` in a real browser: headless Chromium draws every node of a dump the sampler made
on the tiny model, with its numbers; a 1,000-tree page draws its first tree within seconds.

Needs a Chromium binary (Debian: `apt-get install chromium`; .ci/run installs it); skipped,
saying so, when there is none.
"""

import json
import shutil
import subprocess
import time
from html.parser import HTMLParser
from pathlib import Path

import pytest

from treerpo.tiny.sample_dump import sample_dump
from treerpo.tools.tree_view import advantage_scale, read_dump, view_tree, view_trees, write_view

CHROMIUM = next((b for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)), None)
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no Chromium binary on PATH (Debian: apt-get install "
                                                        "chromium); the viewer's browser test needs one")


def chromium(url: str, *flags: str, timeout: float = 120) -> str:
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
           "--no-first-run", *flags, url]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=True).stdout


class Nodes(HTMLParser):
    """Every drawn node box (div.node): its data-* attributes and its visible text."""

    def __init__(self):
        super().__init__()
        self.nodes, self.body, self._stack = [], {}, []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "body":
            self.body = a
        if tag == "div" and "node" in (a.get("class") or "").split():
            self.nodes.append({"attrs": a, "text": ""})
            self._stack.append(0)
        elif self._stack and tag not in ("br", "img", "input"):
            self._stack[-1] += 1

    def handle_endtag(self, tag):
        if self._stack:
            if self._stack[-1] == 0:
                self._stack.pop()
            else:
                self._stack[-1] -= 1

    def handle_data(self, data):
        if self._stack:
            self.nodes[-1]["text"] += data


def parse(dom: str) -> Nodes:
    p = Nodes()
    p.feed(dom)
    return p


def js_fixed(x: float, digits: int, sign: bool) -> str:
    """What the page prints: toFixed, with a + before positive numbers where it signs them."""
    return ("+" if sign and x > 0 else "") + f"{x:.{digits}f}"


@pytest.fixture(scope="module")
def sampled(tmp_path_factory):
    """A dump made by the sampler on the tiny model (the shipped warm-up): 2 TreeRPO trees, 1 TreePO."""
    d = tmp_path_factory.mktemp("view")
    dump = d / "trees.jsonl"
    sample_dump(str(dump), "treerpo", prompts=2, seed=0, step=1)
    sample_dump(str(dump), "treepo", prompts=1, seed=1, step=2)
    return dump


def test_every_node_is_drawn_with_its_numbers(sampled, tmp_path):
    html = tmp_path / "trees.html"
    write_view(str(sampled), str(html))
    dom = chromium(html.resolve().as_uri() + "#all", "--dump-dom")
    drawn = parse(dom).nodes
    records = list(read_dump(str(sampled)))
    expected = {(str(i), str(n["id"])): n for i, rec in enumerate(records) for n in rec["nodes"]}
    boxes = {(b["attrs"]["data-tree"], b["attrs"]["data-id"]): b for b in drawn}
    assert len(drawn) == len(boxes) == len(expected) > 0 and boxes.keys() == expected.keys()
    leaves, scale = 0, advantage_scale(view_trees(records))
    for key, n in expected.items():
        text = boxes[key]["text"]
        assert f"#{n['id']}" in text and f"{n['tokens']} tok" in text
        assert "V " + js_fixed(n["value"], 2, False) in text
        if n["advantage"] is None:  # a TreePO node above the leaves: the mean A_i below it
            assert records[int(key[0])]["method"] == "treepo" and n["stop"] is None
            shown = next(x for x in view_tree(records[int(key[0])])["nodes"] if x["id"] == n["id"])["adv_below"]
            assert "Ā " + js_fixed(shown, 3, True) in text
        else:
            assert "A " + js_fixed(n["advantage"], 3, True) in text
        if n["stop"] is not None:
            leaves += 1
            assert n["stop"] in text and "R " + js_fixed(n["reward"], 2, False) in text
            assert "ans " in text
        style = boxes[key]["attrs"]["style"]
        if n["advantage"] is not None and (n["advantage"] == 0.0 or abs(n["advantage"]) > 0.05 * scale):
            assert ("rgb(255, 255, 255)" in style) == (n["advantage"] == 0.0)  # colour: white for A = 0 only
    assert leaves > 0
    for i, rec in enumerate(records):  # nodes of a group without signal are marked
        v = view_tree(rec)
        for n in v["nodes"]:
            g = n["group"] if v["method"] == "treerpo" else (n["id"] if n["subgroup"] else None)
            dead = g is not None and v["groups"][str(g)]["state"] != "kept"
            assert ("dead" in boxes[(str(i), str(n["id"]))]["attrs"]["class"].split()) == dead
    assert dom.count('class="tree"') == len(records)
    methods = {rec["method"] for rec in records}
    assert methods == {"treerpo", "treepo"}


def test_a_thousand_trees_open_fast(sampled, tmp_path):
    base = list(read_dump(str(sampled)))
    big = tmp_path / "big.jsonl"
    with open(big, "w") as f:
        for k in range(1000):  # the sampled trees again and again, each under its own step and uid
            rec = dict(base[k % len(base)], step=k // 8, prompt_uid=f"p{k}")
            f.write(json.dumps(rec) + "\n")
    html = tmp_path / "big.html"
    write_view(str(big), str(html))
    t0 = time.perf_counter()
    dom = chromium(html.resolve().as_uri(), "--dump-dom")
    wall = time.perf_counter() - t0
    page = parse(dom)
    first_ms = float(page.body["data-first-render-ms"])
    print(f"\n1,000-tree page ({html.stat().st_size / 1e6:.1f} MB): first tree drawn {first_ms / 1000:.2f} s after "
          f"navigation start; headless Chromium start to DOM dump {wall:.2f} s")
    assert len(page.nodes) == len(base[0]["nodes"])  # only the first tree is built
    assert dom.count("s0 · acc") == 8 and "1-200 of 1000" in dom  # the list is paged
    assert first_ms < 5000


def test_screenshot(sampled, tmp_path):
    html = tmp_path / "trees.html"
    write_view(str(sampled), str(html))
    png = tmp_path / "shot.png"
    chromium(html.resolve().as_uri() + "#t=0", f"--screenshot={png}", "--window-size=1200,700")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000

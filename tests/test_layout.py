"""The layout's rules, checked on the source: package dependencies, references, prose hygiene.

    treerpo.tree       imports nothing else of ours (the core everything builds on)
    sampling, advantages  import treerpo.tree, never each other
    treerpo            never imports verl_ext (verl_ext imports treerpo)
    packages           no import cycle among them
    docs               every `*.md` path cited in code or docs exists; no machine paths; no
                       mention of the project's issue numbers
"""

from __future__ import annotations

import ast
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ["treerpo.tree", "treerpo.sampling", "treerpo.advantages", "treerpo.training", "treerpo.engines",
            "treerpo.reward", "treerpo.tools", "treerpo.tiny", "treerpo.cli", "treerpo.quiet", "treerpo.stats", "verl_ext",
            "data_prep", "benchmarks"]  # verl_ext.cpu is part of verl_ext: it uses verl_ext's import hooks


def package_of(module: str) -> str | None:
    """The most specific entry of PACKAGES that `module` is (or is inside)."""
    best = None
    for p in PACKAGES:
        if (module == p or module.startswith(p + ".")) and (best is None or len(p) > len(best)):
            best = p
    return best


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def imports(path: Path) -> set[str]:
    """Every module this file imports, at the top or inside a function."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
            out.update(f"{node.module}.{a.name}" for a in node.names)
    return out


def edges() -> dict[str, set[str]]:
    """Package -> the packages of ours it imports."""
    graph: dict[str, set[str]] = {p: set() for p in PACKAGES}
    for top in ("treerpo", "verl_ext", "data_prep", "benchmarks"):
        for path in (ROOT / top).rglob("*.py"):
            src = package_of(module_name(path))
            for mod in imports(path):
                dst = package_of(mod)
                if src and dst and dst != src:
                    graph[src].add(dst)
    return graph


def test_the_tree_core_imports_nothing_else_of_ours():
    assert edges()["treerpo.tree"] == set()


def test_sampling_and_advantages_never_import_each_other():
    graph = edges()
    assert "treerpo.advantages" not in graph["treerpo.sampling"]
    assert "treerpo.sampling" not in graph["treerpo.advantages"]
    assert graph["treerpo.sampling"] <= {"treerpo.tree"} and graph["treerpo.advantages"] <= {"treerpo.tree"}


def test_treerpo_never_imports_verl_ext():
    graph = edges()
    for p in PACKAGES:
        if p.startswith("treerpo."):
            assert not {d for d in graph[p] if d.startswith("verl_ext")}, (p, graph[p])


def test_no_import_cycle_among_the_packages():
    graph = edges()
    state: dict[str, int] = {}

    def visit(p: str, stack: list[str]) -> None:
        state[p] = 1
        for q in graph[p]:
            if state.get(q) == 1:
                raise AssertionError("import cycle: " + " -> ".join(stack[stack.index(q):] + [q]))
            if q not in state:
                visit(q, stack + [q])
        state[p] = 2

    for p in PACKAGES:
        if p not in state:
            visit(p, [p])


def tracked(*patterns: str) -> list[Path]:
    out = subprocess.run(["git", "ls-files", *patterns], cwd=ROOT, capture_output=True, text=True)
    if out.returncode != 0:
        pytest.skip("not a git checkout")
    return [ROOT / f for f in out.stdout.split()]


TEXT = ("*.py", "*.md", "*.sh", "*.yaml", "*.ini", "*.txt", ".ci/*", ".gitignore")


def test_every_cited_markdown_file_exists():
    # documents: docs/..., examples/..., or an upper-case name (README.md, DESIGN.md); a run's
    # outputs (results.md under runs/) are not documents of the repository
    cited = re.compile(r"(?<![\w/.$-])((?:docs|examples)/[\w./-]+\.md|[A-Z][A-Z_]*\.md)\b")
    missing = []
    for path in tracked(*TEXT):
        for n, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
            for ref in cited.findall(line):
                here = (path.parent / ref, ROOT / ref, ROOT / "docs" / ref)
                if not any(p.exists() for p in here):
                    missing.append(f"{path.relative_to(ROOT)}:{n}: {ref}")
    assert not missing, "\n".join(missing)


def test_no_machine_paths_and_no_issue_numbers():
    bad = []
    machine = re.compile(r"(?<![\w.])/(?:work|home|root|tmp/x|tmp/q)/")
    issue = re.compile(r"\bissues? [0-9]", re.IGNORECASE)
    for path in tracked(*TEXT):
        if "fixtures" in path.parts or path.name == "test_layout.py":
            continue
        for n, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
            if machine.search(line) or issue.search(line):
                bad.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()[:100]}")
    assert not bad, "\n".join(bad)

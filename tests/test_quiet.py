"""Quiet by default (treerpo/quiet.py): verl's import warnings gone, in child processes too; the
user's own warnings and TREERPO_VERBOSE=1 still show everything."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def python(code: str, *args: str, verbose: bool = False) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("TREERPO_VERBOSE", "PYTHONWARNINGS")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    if verbose:
        env["TREERPO_VERBOSE"] = "1"
    return subprocess.run([sys.executable, "-c", code, *args], env=env, cwd=ROOT, capture_output=True, text=True,
                          timeout=300)


# the parent installs the filters; a child process (as verl's trainer and its Ray workers are) imports verl
CHILD_IMPORTS_VERL = """
import subprocess, sys
from treerpo import quiet
quiet.install()
sys.exit(subprocess.run([sys.executable, "-c", "import verl.workers.engine"]).returncode)
"""


def test_verl_engine_warnings_silenced_in_children_unless_verbose():
    pytest.importorskip("verl")
    loud = python(CHILD_IMPORTS_VERL, verbose=True)
    assert loud.returncode == 0
    if "engine is not available" not in loud.stderr:
        pytest.skip("this install has all of verl's optional engines: nothing to silence")
    quiet = python(CHILD_IMPORTS_VERL)
    assert quiet.returncode == 0
    assert "engine is not available" not in quiet.stderr and "Warning" not in quiet.stderr, quiet.stderr


def test_own_warnings_still_show():
    code = ("import warnings\nfrom treerpo import quiet\nassert quiet.install()\n"
            "warnings.warn('megatron engine is not available: x')\nwarnings.warn('reward is NaN in your run')\n")
    out = python(code)
    assert out.returncode == 0 and "reward is NaN in your run" in out.stderr and "megatron" not in out.stderr


def test_verbose_flag_and_env():
    from treerpo import quiet

    assert quiet.verbose(True)
    old = os.environ.pop(quiet.ENV, None)
    try:
        assert not quiet.verbose(False)
        os.environ[quiet.ENV] = "0"
        assert not quiet.verbose(False)
        os.environ[quiet.ENV] = "1"
        assert quiet.verbose(False)
    finally:
        os.environ.pop(quiet.ENV, None)
        if old is not None:
            os.environ[quiet.ENV] = old
    for entry in quiet.python_warnings_spec().split(","):  # valid PYTHONWARNINGS: action:message:category
        action, message, category = entry.split(":")
        assert action == "ignore" and message and category == "UserWarning"


# `treerpo train` up to the point where its progress bar starts: verl's launch replaced by a marker
TRAIN_UNTIL_LAUNCH = """
import sys
from treerpo import cli
from treerpo.tiny import launch
def stop(*a, **k):
    print("PROGRESS STARTS HERE", flush=True)
    raise SystemExit(0)
launch._run_verl = stop
cli.main(["train", "--out", sys.argv[1]])
"""


def test_train_prints_no_third_party_warning_before_its_progress(tmp_path):
    out = python(TRAIN_UNTIL_LAUNCH, str(tmp_path / "run"))
    both = out.stdout + out.stderr
    assert "PROGRESS STARTS HERE" in out.stdout, both
    before = out.stdout.split("PROGRESS STARTS HERE")[0].splitlines() + out.stderr.splitlines()
    lines = [line for line in before if line.strip()]
    assert lines and all(line.startswith(("base model:", "verl:")) for line in lines), lines


def test_help_lists_every_subcommand_on_one_line_and_documents_every_option():
    import argparse

    from treerpo.cli import build_parser

    out = python("from treerpo.cli import main; main(['--help'])").stdout
    listing = [line for line in out.split("positional arguments:")[1].split("options:")[0].splitlines()[2:]
               if line.strip()]
    assert [line.split()[0] for line in listing] == ["train", "warmup", "view"]  # one line each
    ap = build_parser()
    subs = next(a for a in ap._actions if isinstance(a, argparse._SubParsersAction))
    assert sorted(subs.choices) == ["train", "view", "warmup"]
    for name, parser in subs.choices.items():
        undocumented = [a.dest for a in parser._actions if not a.help and not isinstance(a, argparse._HelpAction)]
        assert not undocumented, f"treerpo {name}: options without help {undocumented}"
        assert parser.description, f"treerpo {name} --help has no description"

"""The plugin registers through verl's entry point, in a fresh process, without importing us."""

import subprocess
import sys


def test_entry_point_registers_estimators_in_fresh_process():
    code = (
        "import sys, verl; from verl.trainer.ppo.core_algos import get_adv_estimator_fn as g; "
        "g('treerpo'); g('treepo'); "
        "from verl.experimental.agent_loop.agent_loop import _agent_loop_registry as r; assert 'tree_agent' in r and 'seeded_single_turn_agent' in r; "
        "from verl.trainer.ppo.v1 import get_trainer_cls; get_trainer_cls('tree_sync'); "
        "assert 'verl_ext.plugin' in sys.modules, 'registered by something other than the entry point'"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd="/")
    assert out.returncode == 0, out.stderr[-2000:]


def test_plugin_can_be_disabled():
    """With VERL_USE_EXTERNAL_PLUGINS=none the names are unknown: registration really is the entry point's."""
    code = "import verl; from verl.trainer.ppo.core_algos import get_adv_estimator_fn as g; g('treerpo')"
    env = {"VERL_USE_EXTERNAL_PLUGINS": "none", "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd="/", env=env)
    assert out.returncode != 0 and "treerpo" in out.stderr

"""Our agent-loop worker survives the trip Ray makes it take: cloudpickle, then a fresh process.

Ray wraps every method of an actor class (inherited ones too) and ships the class with
cloudpickle. verl's `AgentLoopWorkerTQ` is only reachable through its Ray wrapper, so its
inherited methods travel by value; a subclass that relied on verl's __init__ failed in the actor
with "super(type, obj): obj must be an instance or subtype of type". This test makes the same
trip without a Ray cluster: pickle Ray's actor class here, unpickle and construct it in a new
interpreter. The constructor then gets past verl's `super().__init__` and fails only on the
missing arguments.
"""

import subprocess
import sys
import textwrap
from pathlib import Path

import cloudpickle

from verl_ext.tree_worker import TreeAgentLoopWorkerTQ

ROOT = Path(__file__).resolve().parents[1]


def test_worker_class_constructs_after_cloudpickle_in_a_fresh_process(tmp_path):
    pkl = tmp_path / "actor_class.pkl"
    pkl.write_bytes(cloudpickle.dumps(TreeAgentLoopWorkerTQ.__ray_metadata__.modified_class))
    code = textwrap.dedent(
        f"""
        import cloudpickle
        cls = cloudpickle.loads(open({str(pkl)!r}, "rb").read())
        obj = object.__new__(cls)
        try:
            cls.__init__(obj, None)
        except TypeError as e:
            print(e)
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    message = out.stdout.strip().splitlines()[-1]
    assert "super(type, obj)" not in message
    assert "llm_client" in message  # verl's AgentLoopWorker.__init__ was reached: the super() chain held

"""The CPU run differs from the GPU launch scripts only by the CPU preset and sizes.

verl_ext.cpu.config_diff composes both configs as their launches would (verl_ext.check) and
labels every differing key: preset, size, or derived by verl's config from one of those. Any
other difference fails here. docs/CPU.md shows the treerpo table.
"""

import functools
import subprocess
import sys
from pathlib import Path

import pytest

from verl_ext.cpu import config_diff

ROOT = Path(__file__).resolve().parents[1]
diff = functools.lru_cache(maxsize=None)(config_diff.diff)  # each compose starts verl twice: once per estimator


@pytest.mark.parametrize("estimator", ["grpo", "treerpo", "treepo"])
def test_cpu_run_differs_from_gpu_script_only_by_preset_and_sizes(estimator):
    rows = diff(estimator)
    other = [r for r in rows if r[3] == "OTHER"]
    assert not other, "\n" + config_diff.markdown(other)
    labels = {r[0]: r[3] for r in rows}
    # the preset really is what makes the run a CPU run
    for key in ("trainer.device", "actor_rollout_ref.actor.strategy", "actor_rollout_ref.rollout.enable_sleep_mode",
                "actor_rollout_ref.model.override_config.attn_implementation"):
        assert labels.get(key) == "preset", key
    # and the algorithm is the GPU recipe's: these keys are not among the differences
    for key in ("algorithm.adv_estimator", "actor_rollout_ref.actor.kl_loss_coef", "actor_rollout_ref.actor.loss_agg_mode",
                "actor_rollout_ref.rollout.temperature", "tree.advantage.norm", "actor_rollout_ref.rollout.name",
                "reward.custom_reward_function.path", "trainer.v1.trainer_mode"):
        assert key not in labels, key


def test_docs_show_the_current_diff():
    doc = (ROOT / "docs" / "CPU.md").read_text()
    table = config_diff.markdown(diff("treerpo"))
    for line in table.splitlines()[2:]:
        key = line.split("|")[1].strip()
        assert key in doc, f"docs/CPU.md lacks {key}; regenerate with python -m verl_ext.cpu.config_diff"


def test_full_determinism_with_tree_sampling_is_refused_at_config_time(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "treerpo.cli", "train", "--check-only", "--out", str(tmp_path / "r"),
         "actor_rollout_ref.rollout.full_determinism=True"],
        capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert out.returncode != 0
    assert "full_determinism" in out.stderr and "request_id" in out.stderr

"""`seeded_single_turn_agent`: every request carries a seed fixed by the problem and sample index."""

import asyncio

import pytest
from omegaconf import OmegaConf
from verl.experimental.agent_loop.single_turn_agent_loop import SingleTurnAgentLoop

from verl_ext.seeded_agent import SeededSingleTurnAgentLoop, problem_seed

PROMPT = [{"role": "user", "content": "What is 3 + 4?"}]
OTHER = [{"role": "user", "content": "What is 3 + 5?"}]


def test_problem_seed_is_stable_per_problem_sample_and_run():
    assert problem_seed(PROMPT) == problem_seed([dict(PROMPT[0])])  # the same text, another object
    seeds = {problem_seed(p, s, r) for p in (PROMPT, OTHER) for s in range(4) for r in (42, 43)}
    assert len(seeds) == 16  # problems, samples and run seeds all tell draws apart
    assert all(0 <= s < 2**31 for s in seeds)


def agent(n: int, seed: int = 42):
    loop = object.__new__(SeededSingleTurnAgentLoop)  # run() needs only the rollout config
    loop.rollout_config = OmegaConf.create({"seed": seed, "val_kwargs": {"n": n}})
    return loop


def test_seeded_agent_adds_the_seed_to_verl_sampling_params(monkeypatch):
    seen = []

    async def single_turn_run(self, sampling_params, **kwargs):
        seen.append(sampling_params)

    monkeypatch.setattr(SingleTurnAgentLoop, "run", single_turn_run)
    params = {"temperature": 1.0, "top_p": 1.0}
    for session_id in (0, 1, 0):
        asyncio.run(agent(2).run(params, raw_prompt=PROMPT, session_id=session_id))
    assert [p["seed"] for p in seen] == [problem_seed(PROMPT, 0, 42), problem_seed(PROMPT, 1, 42),
                                         problem_seed(PROMPT, 0, 42)]
    assert seen[0]["temperature"] == 1.0 and "seed" not in params  # verl's dict is left as it was


def test_seeded_agent_refuses_repeats_it_cannot_tell_apart(monkeypatch):
    async def single_turn_run(self, sampling_params, **kwargs):
        return sampling_params

    monkeypatch.setattr(SingleTurnAgentLoop, "run", single_turn_run)
    assert asyncio.run(agent(1).run({}, raw_prompt=PROMPT))["seed"] == problem_seed(PROMPT, 0, 42)
    with pytest.raises(ValueError, match="session_id"):
        asyncio.run(agent(4).run({}, raw_prompt=PROMPT))


def test_tiny_run_names_this_agent():
    from treerpo.tiny import recipe
    from verl_ext import seeded_agent

    assert recipe.SEEDED_AGENT == seeded_agent.NAME

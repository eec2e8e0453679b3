"""Task suites: deterministic generators with seeds and automatic scoring (arith, lookup, mixed)
and a JSONL loader for user datasets."""

from interleaf.agents.tasks.arith import arith_suite, arith_tasks
from interleaf.agents.tasks.jsonl import jsonl_suite, load_jsonl_tasks
from interleaf.agents.tasks.lookup import lookup_suite
from interleaf.agents.tasks.mixed import mixed_suite
from interleaf.agents.tasks.registry import SUITES, load_suite, register_suite
from interleaf.agents.tasks.scoring import normalize_text, parse_number, score_answer
from interleaf.agents.tasks.task import Task, TaskSuite

__all__ = [
    "SUITES",
    "Task",
    "TaskSuite",
    "arith_suite",
    "arith_tasks",
    "jsonl_suite",
    "load_jsonl_tasks",
    "load_suite",
    "lookup_suite",
    "mixed_suite",
    "normalize_text",
    "parse_number",
    "register_suite",
    "score_answer",
]

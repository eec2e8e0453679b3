"""Task suites: deterministic generators with seeds and automatic scoring (arith, lookup, mixed),
a JSONL loader for user datasets, and the worked examples (exemplars) each suite offers."""

from interleaf.agents.tasks.arith import arith_exemplars, arith_suite, arith_tasks
from interleaf.agents.tasks.jsonl import TaskFileError, jsonl_suite, last_boxed, load_jsonl_tasks
from interleaf.agents.tasks.lookup import lookup_suite
from interleaf.agents.tasks.mixed import mixed_suite
from interleaf.agents.tasks.registry import SUITES, load_suite, register_suite, registered_suites
from interleaf.agents.tasks.scoring import SCORERS, math_equal, normalize_text, parse_math, parse_number, score_answer
from interleaf.agents.tasks.task import ANSWER_PATTERNS, AnswerType, Exemplar, ExemplarStep, Task, TaskSuite

__all__ = [
    "ANSWER_PATTERNS",
    "SCORERS",
    "SUITES",
    "AnswerType",
    "Exemplar",
    "ExemplarStep",
    "Task",
    "TaskFileError",
    "TaskSuite",
    "arith_exemplars",
    "arith_suite",
    "arith_tasks",
    "jsonl_suite",
    "last_boxed",
    "load_jsonl_tasks",
    "load_suite",
    "lookup_suite",
    "math_equal",
    "mixed_suite",
    "normalize_text",
    "parse_math",
    "parse_number",
    "register_suite",
    "registered_suites",
    "score_answer",
]

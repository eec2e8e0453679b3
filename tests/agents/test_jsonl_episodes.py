"""User datasets (JSONL) run by the shipped ``tir`` agent as a Ray actor runs them: off the main
thread, with the turn grammars the agent really sends (checked with xgrammar, tests.grammar_check)."""

from __future__ import annotations

import asyncio
import dataclasses
import re
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from interleaf.agents import Agent, ScriptedModel, Task, load_suite
from interleaf.agents.agent import default_agent
from interleaf.telemetry.records import TerminationReason, Trajectory
from interleaf.tools import calculator, format_answer, format_tool_call
from tests.grammar_check import can_end

DOCS = Path(__file__).resolve().parents[2] / "docs" / "agents.md"


def documented_jsonl_lines() -> str:
    """The JSON block of docs/agents.md's "JSONL datasets" section, as a user would copy it."""
    section = DOCS.read_text().split("### JSONL datasets", 1)[1]
    block = re.search(r"```json\n(.*?)```", section, re.DOTALL)
    assert block is not None, "docs/agents.md: the JSONL datasets section has no json block"
    return block[1]


def in_a_thread(run: Callable[[], Any]) -> Any:
    """``run()`` on another thread, as a Ray actor's event loop runs episodes (where signal-based
    timeouts refuse to work); its exception, if any, is raised here."""
    out: dict[str, Any] = {}

    def target() -> None:
        try:
            out["value"] = run()
        except BaseException as exc:  # raised again on the test's thread
            out["error"] = exc

    worker = threading.Thread(target=target)
    worker.start()
    worker.join()
    if "error" in out:
        raise out["error"]
    return out["value"]


def tir(tools: list[Any]) -> Agent:
    return dataclasses.replace(default_agent(), tools=tools)


def check_grammars(model: ScriptedModel, script: list[str]) -> None:
    """Every scripted turn is one the agent's grammar for that turn allows."""
    for call, text in zip(model.calls, script, strict=True):
        assert call.constraint is not None and can_end(call.constraint.value, text), text


def test_the_documented_jsonl_lines_run_and_score_with_the_tir_agent(tmp_path: Path) -> None:
    path = tmp_path / "docs_example.jsonl"
    path.write_text(documented_jsonl_lines())
    calls = {"What is 7 * 8?": "7 * 8", "Simplify 2/4.": "2/4", "Find sin 60°.": "60"}

    async def run_all() -> list[tuple[Trajectory, ScriptedModel, list[str]]]:
        suite = load_suite(str(path), 10)  # in the thread too: inferring answer types parses them
        agent = tir(suite.make_tools())
        out = []
        for task in suite.tasks:
            script = [format_answer(task.answer or "")]
            if task.tools:
                script.insert(0, format_tool_call("calculator", {"expression": calls[task.question]}))
            model = ScriptedModel(script)
            traj = await agent.run(task, model, system_extra=suite.system_prompt, exemplars=suite.exemplars)
            out.append((traj, model, script))
        return out

    results = in_a_thread(lambda: asyncio.run(run_all()))
    assert len(results) == 4
    for traj, model, script in results:
        assert (traj.termination, traj.error) == (TerminationReason.ANSWERED, None), traj.task_id
        assert traj.correct, (traj.task_id, traj.answer, traj.expected)
        check_grammars(model, script)  # "\frac{1}{2}" after the calculator's "0.5"; "Paris" at once


@pytest.mark.parametrize(
    ("answer_type", "answer"), [("text", "Paris"), ("expression", r"\frac{4048}{2}")]
)  # fmt: skip
async def test_a_calculator_result_does_not_ground_a_text_or_expression_answer(answer_type: str, answer: str) -> None:
    task = Task(id="t", question="Which city hosted the Olympics 4 years after 2020?", answer=answer,
                answer_type=answer_type, tools=["calculator"])  # fmt: skip
    script = [format_tool_call("calculator", {"expression": "2020 + 4"}), format_answer(answer)]
    model = ScriptedModel(script)
    traj = await tir([calculator]).run(task, model)
    assert traj.turns[0].tool_calls[0].result == "2024"
    check_grammars(model, script)
    assert traj.correct


async def test_a_scorer_that_fails_keeps_the_trajectory_and_names_the_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken_scorer(answer: str | None, expected: str, scorer: str = "text") -> float:
        raise RuntimeError("scorer exploded")

    monkeypatch.setattr("interleaf.agents.tasks.task.score_answer", broken_scorer)
    task = Task(id="t-7", question="What is 2 + 3?", answer="5", scorer="math", answer_type="number")
    traj = await Agent(name="plain").run(task, ScriptedModel([format_answer("5")]))
    assert (traj.task_id, traj.answer, len(traj.turns)) == ("t-7", "5", 1)
    assert traj.turns[0].completion_ids  # the tokens are kept
    assert traj.termination == TerminationReason.ERROR
    assert traj.error == "scoring the answer failed (scorer 'math'): RuntimeError: scorer exploded"
    assert (traj.score, traj.correct) == (None, None)

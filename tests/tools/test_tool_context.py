"""``ToolContext``'s scratch directory: made on first use, removed only if it was made, and an episode
whose tools never ask for it touches the disk not at all (an empty mkdtemp + rmtree cost ~2.6 ms per
episode on this machine's disk)."""

from __future__ import annotations

import tempfile
import threading
from pathlib import Path

import pytest

from interleaf.agents import Agent, Budgets, ScriptedModel, Task
from interleaf.telemetry.records import TerminationReason
from interleaf.tools import ToolContext, format_answer, format_tool_call, tool


def test_the_scratch_dir_is_made_on_first_use_and_removed_by_its_maker(tmp_path: Path) -> None:
    ctx = ToolContext.create("ep1", root=tmp_path)
    assert not ctx.has_scratch and list(tmp_path.iterdir()) == []
    scratch = ctx.scratch_dir
    assert scratch.is_dir() and scratch.parent == tmp_path and scratch.name.startswith("interleaf-ep1-")
    assert ctx.scratch_dir == scratch  # the same one on every access
    (scratch / "out.txt").write_text("x")
    ctx.remove_scratch()
    assert not scratch.exists() and not ctx.has_scratch
    ctx.remove_scratch()  # idempotent


def test_a_given_scratch_dir_is_never_removed(tmp_path: Path) -> None:
    with ToolContext(episode_id="ep", scratch_dir=tmp_path) as ctx:
        assert ctx.scratch_dir == tmp_path and ctx.has_scratch
    assert tmp_path.is_dir()


def test_as_a_context_manager_it_removes_what_it_made(tmp_path: Path) -> None:
    with ToolContext.create("ep", root=tmp_path) as ctx:
        scratch = ctx.scratch_dir
    assert not scratch.exists()
    with ToolContext.create("ep", root=tmp_path):
        pass  # never asked for: nothing made, nothing to remove
    assert list(tmp_path.iterdir()) == []


def test_threads_asking_at_once_share_one_directory(tmp_path: Path) -> None:
    ctx = ToolContext.create("ep", root=tmp_path)
    start = threading.Barrier(8)
    seen: list[Path] = []

    def ask() -> None:
        start.wait()
        seen.append(ctx.scratch_dir)

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(seen)) == 1 and len(list(tmp_path.iterdir())) == 1
    ctx.remove_scratch()
    assert list(tmp_path.iterdir()) == []


@tool
def write_note(text: str, ctx: ToolContext) -> str:
    """Write a note into the episode's scratch directory."""
    path = ctx.scratch_dir / "note.txt"
    path.write_text(text)
    return str(path)


@tool
def count_temp() -> int:
    """Entries in the system temp dir (the test points it at an empty directory)."""
    return len(list(Path(tempfile.gettempdir()).iterdir()))


@pytest.fixture
def temp_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The system temp dir an episode's scratch directory goes to, private to the test."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    return tmp_path


async def test_an_episode_whose_tools_do_not_write_makes_no_scratch_dir(temp_root: Path) -> None:
    agent = Agent(name="t", tools=[count_temp], grammar=None, budgets=Budgets(max_turns=3))
    model = ScriptedModel([format_tool_call("count_temp", {}), format_answer("0")])
    traj = await agent.run(Task(id="t", question="how many?", answer="0"), model)
    assert traj.termination == TerminationReason.ANSWERED
    assert traj.turns[0].tool_calls[0].result == "0"  # mid-episode: no directory was made for it
    assert list(temp_root.iterdir()) == []


async def test_an_episode_whose_tool_writes_gets_its_dir_and_it_is_removed_at_the_end(temp_root: Path) -> None:
    agent = Agent(name="t", tools=[write_note], grammar=None, budgets=Budgets(max_turns=3))
    model = ScriptedModel([format_tool_call("write_note", {"text": "hello"}), format_answer("done")])
    traj = await agent.run(Task(id="t", question="note it"), model)
    written = Path(traj.turns[0].tool_calls[0].result)
    assert traj.termination == TerminationReason.ANSWERED
    assert written.parent.parent == temp_root and written.parent.name.startswith(f"interleaf-{traj.id}-")
    assert not written.parent.exists() and list(temp_root.iterdir()) == []

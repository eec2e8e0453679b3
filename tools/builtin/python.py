"""The ``python`` tool: run code in the sandbox, answer in SandboxFusion's format."""

from __future__ import annotations

from interleaf.tools.context import ToolContext
from interleaf.tools.errors import ToolArgumentError, ToolError, ToolInfraError, ToolTimeout
from interleaf.tools.sandbox import Mode, SandboxLimits, run_python
from interleaf.tools.tool import Tool, tool

__all__ = ["make_python_tool", "python_tool"]

_DEADLINE_MARGIN_S = 0.5
"""When the episode's deadline comes before ``wall_s``, the sandbox's wall clock is set this much
earlier than it, so the sandbox is killed and its partial output read before ``Toolset.call``'s own
timeout (the deadline) abandons the call and with it the output."""

_DESCRIPTION = (
    "Execute Python 3 code in a sandbox and return its stdout and stderr. Print what you want to see; "
    "variables do not persist between calls, files in the working directory do. No network access."
)


def make_python_tool(
    limits: SandboxLimits | None = None,
    *,
    name: str = "python",
    mode: Mode | None = None,
    max_output_tokens: int | None = 1024,
) -> Tool:
    """A python tool with its own sandbox limits (``python_tool`` uses the defaults).

    A non-zero exit, or processes left running when the code ended (the sandbox kills them), come
    back as ``ToolError`` and a wall-clock kill as ``ToolTimeout``, all with the SandboxFusion text,
    so the model sees the traceback and the trajectory marks the error. A host that cannot contain
    the code (no bubblewrap, and ``mode="plain"`` not chosen) is a ``ToolInfraError``.
    """
    limits = limits or SandboxLimits()

    async def python(code: str, ctx: ToolContext) -> str:
        """Run ``code``.

        Args:
            code: Python source to execute; use print() to show results.
        """
        run_limits = limits
        remaining = ctx.remaining_s()
        if remaining is not None and remaining - _DEADLINE_MARGIN_S < limits.wall_s:
            run_limits = limits.model_copy(update={"wall_s": max(remaining - _DEADLINE_MARGIN_S, 0.1)})
        try:
            run = await run_python(code, ctx.scratch_dir / "python", run_limits, mode=mode)
        except UnicodeEncodeError as exc:  # Toolset.call refuses these first; run_python callers may not
            raise ToolArgumentError(f"field 'code': not Unicode text at index {exc.start}: {exc.reason}") from None
        except (RuntimeError, OSError) as exc:
            raise ToolInfraError(f"python sandbox could not run: {exc}", tool=name) from exc
        text = run.sandbox_fusion_text()
        if run.timed_out:
            raise ToolTimeout(text)
        if run.exit_code != 0 or run.killed_processes:
            raise ToolError(text)
        return text

    # The sandbox enforces its own wall clock (and keeps partial output); the tool timeout is a backstop.
    return tool(
        python,
        name=name,
        description=_DESCRIPTION,
        timeout_s=limits.wall_s + 30.0,
        max_output_tokens=max_output_tokens,
        # Calls of one episode share its scratch dir and sandbox uid (one process cap): run them in turn.
        parallel_safe=False,
    )


python_tool = make_python_tool()

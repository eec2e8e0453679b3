"""``Toolset``: the registry an agent calls tools through, and where the error taxonomy is applied."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Iterable, Iterator
from typing import Any

from interleaf.tools.context import ToolContext
from interleaf.tools.errors import (
    ToolArgumentError,
    ToolError,
    ToolInfraError,
    ToolTimeout,
    UnknownToolError,
)
from interleaf.tools.json_arguments import ArgumentsError, argument_problem, loads
from interleaf.tools.output import render_output, shown_text, truncate_tokens
from interleaf.tools.result import ToolResult
from interleaf.tools.tool import Tool

__all__ = ["Toolset"]

log = logging.getLogger(__name__)

_RETRY_BACKOFF_S = 0.1
"""Pause before the first retry; each later one waits twice as long as the one before."""


def _short(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


class Toolset:
    """An ordered set of uniquely named tools.

    ``call`` never raises for problems the model can fix (they come back as
    ``ToolResult(is_error=True)``); it raises ``ToolInfraError`` when the episode must end.
    """

    def __init__(self, tools: Iterable[Tool | Toolset] = ()) -> None:
        self._tools: dict[str, Tool] = {}
        for item in tools:
            for t in item if isinstance(item, Toolset) else [item]:
                self.add(t)

    def add(self, t: Tool) -> None:
        """Register ``t``; names must be unique."""
        if not isinstance(t, Tool):
            raise TypeError(f"Toolset entries must be Tool objects (decorate with @tool); got {t!r}")
        if t.name in self._tools:
            raise ValueError(f"duplicate tool name {t.name!r}: rename one with @tool(name=...)")
        self._tools[t.name] = t

    @property
    def names(self) -> list[str]:
        """Tool names in registration order."""
        return list(self._tools)

    def get(self, name: str) -> Tool:
        """The tool called ``name``; ``UnknownToolError`` lists the available ones."""
        try:
            return self._tools[name]
        except (KeyError, TypeError):
            raise UnknownToolError(
                f"Unknown tool {name!r}. Available tools: {', '.join(self._tools) or 'none'}."
            ) from None

    def schemas(self) -> list[dict[str, Any]]:
        """OpenAI function entries for every tool (what goes into the chat template's ``tools``)."""
        return [t.openai_schema() for t in self._tools.values()]

    def __iter__(self) -> Iterator[Tool]:
        return iter(self._tools.values())

    def __len__(self) -> int:
        return len(self._tools)

    def __contains__(self, name: object) -> bool:
        return name in self._tools

    def __add__(self, other: Toolset) -> Toolset:
        return Toolset([self, other])

    def __repr__(self) -> str:
        return f"Toolset({self.names})"

    @staticmethod
    def parse_arguments(tool_name: str, arguments: dict[str, Any] | str | None) -> dict[str, Any]:
        """Arguments as a dict; a string must hold a JSON object (empty means no arguments).

        Raises ``ToolArgumentError`` for text that is not JSON or not an object, and for arguments no
        tool can take (``interleaf.tools.json_arguments``: NaN, huge integers, deep nesting, lone
        surrogates), naming the field.
        """
        if arguments is None:
            return {}
        if isinstance(arguments, str):
            if not arguments.strip():
                return {}
            try:
                arguments = loads(arguments)
            except json.JSONDecodeError as exc:
                raise ToolArgumentError(
                    f"Arguments for tool '{tool_name}' are not valid JSON ({exc.msg} at position {exc.pos}): "
                    f'{_short(arguments)!r}. Send a JSON object such as {{"name": value}}.'
                ) from None
            except ArgumentsError as exc:
                raise ToolArgumentError(f"Arguments for tool '{tool_name}' cannot be used: {exc}.") from None
        if not isinstance(arguments, dict):
            raise ToolArgumentError(
                f"Arguments for tool '{tool_name}' must be a JSON object, got {type(arguments).__name__}: "
                f"{_short(repr(arguments))}."
            )
        if (problem := argument_problem(arguments)) is not None:
            field, why = problem
            raise ToolArgumentError(
                f"Invalid arguments for tool '{tool_name}':\n- field '{field}': {why}\n"
                "Fix the arguments and call again."
            )
        return arguments

    async def call(self, name: str, arguments: dict[str, Any] | str | None, ctx: ToolContext) -> ToolResult:
        """Validate, run (with timeout and retries), render and cap one tool call."""
        started = time.monotonic()
        attempts = 0
        t: Tool | None = None

        def result(text: str, exc: ToolError | None = None) -> ToolResult:
            limit = t.max_output_tokens if t is not None else None
            content, truncated = truncate_tokens(shown_text(text), limit, ctx.tokens)
            return ToolResult(
                content=content,
                is_error=exc is not None,
                error_type=None if exc is None else type(exc).__name__,
                truncated=truncated,
                duration_s=time.monotonic() - started,
                attempts=attempts,
            )

        def error(exc: ToolError) -> ToolResult:
            return result(str(exc), exc)

        try:
            t = self.get(name)
            args = t.validate(self.parse_arguments(name, arguments))
        except ToolError as exc:
            return error(exc)

        while True:
            attempts += 1
            timeout = t.timeout_s
            remaining = ctx.remaining_s()
            if remaining is not None:
                if remaining <= 0:
                    return error(ToolTimeout(f"Tool '{name}' was not run: the episode deadline has passed."))
                timeout = remaining if timeout is None else min(timeout, remaining)
            try:
                value = await asyncio.wait_for(t.invoke(args, ctx), timeout)
                break
            except ToolTimeout as exc:
                # Raised by the tool itself (e.g. the sandbox's own wall clock): no retry, it would recur.
                return error(exc)
            except ToolError as exc:
                return error(exc)
            except TimeoutError:
                by_deadline = remaining is not None and (t.timeout_s is None or remaining < t.timeout_s)
                if attempts <= t.retries and not by_deadline:
                    await self._back_off(attempts, ctx)
                    continue
                why = "the episode deadline" if by_deadline else f"its {t.timeout_s:g} s timeout"
                # Cancelling an async tool stops it; a sync one's thread cannot be stopped and runs on.
                fate = "was stopped" if t.is_async else "was abandoned (its thread cannot be stopped and runs on)"
                return error(ToolTimeout(f"Tool '{name}' timed out: it ran past {why} and {fate}."))
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if attempts <= t.retries:
                    log.warning("tool %s attempt %d failed: %r; retrying", name, attempts, exc)
                    await self._back_off(attempts, ctx)
                    continue
                if isinstance(exc, ToolInfraError):
                    exc.tool = exc.tool or name
                    raise
                raise ToolInfraError(
                    f"tool {name!r} failed with {type(exc).__name__}: {exc} (after {attempts} attempt(s)); "
                    "raise ToolError from the tool for failures the model should see",
                    tool=name,
                ) from exc

        try:
            text = render_output(value)
        except Exception as exc:  # a value whose __str__ raises: a bug in the tool
            raise ToolInfraError(
                f"tool {name!r} returned a {type(value).__name__} that cannot be shown as text: "
                f"{type(exc).__name__}: {exc}; return a str, a pydantic model or JSON-able data",
                tool=name,
            ) from exc
        return result(text)

    @staticmethod
    async def _back_off(attempts: int, ctx: ToolContext) -> None:
        """Wait before retry number ``attempts`` (0.1 s, doubling), never past the episode's deadline."""
        pause = _RETRY_BACKOFF_S * 2 ** (attempts - 1)
        remaining = ctx.remaining_s()
        await asyncio.sleep(pause if remaining is None else max(0.0, min(pause, remaining)))

    async def call_many(
        self, calls: list[tuple[str, dict[str, Any] | str | None]], ctx: ToolContext
    ) -> list[ToolResult]:
        """Run one turn's calls in the given order, results in that order: consecutive parallel-safe
        calls run concurrently; a call that is not runs alone, after every call before it and before
        every call after it."""
        results: list[ToolResult] = []
        batch: list[tuple[str, dict[str, Any] | str | None]] = []
        for call in calls:
            t = self._tools.get(call[0]) if isinstance(call[0], str) else None
            if t is None or t.parallel_safe:  # an unknown name is an error result: safe alongside anything
                batch.append(call)
                continue
            results += await asyncio.gather(*(self.call(n, a, ctx) for n, a in batch))
            batch = []
            results.append(await self.call(*call, ctx))
        results += await asyncio.gather(*(self.call(n, a, ctx) for n, a in batch))
        return results

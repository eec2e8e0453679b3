"""Import the tools of any MCP server (stdio subprocess or streamable HTTP) as interleaf tools."""

from __future__ import annotations

import json
import logging
import re
import shlex
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any, TextIO

import anyio
import httpx2
import jsonschema
import mcp_types
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.shared.exceptions import MCPError

from interleaf.tools.context import ToolContext
from interleaf.tools.errors import ToolArgumentError, ToolError, ToolInfraError, ToolTimeout
from interleaf.tools.tool import Tool
from interleaf.tools.toolset import Toolset

__all__ = ["mcp_toolset", "render_mcp_content"]

log = logging.getLogger(__name__)

# OpenAI's function-name rule is ^[a-zA-Z0-9_-]{1,64}$: no '.', so "git.git_status" would be refused there.
_INVALID_NAME_CHARS = re.compile(r"[^A-Za-z0-9_-]")
_VALID_SEPARATOR = re.compile(r"^[A-Za-z0-9_-]*$")
_LOST = (
    anyio.ClosedResourceError,
    anyio.BrokenResourceError,
    anyio.EndOfStream,
    ConnectionError,
    OSError,
    httpx2.HTTPError,  # the MCP SDK speaks HTTP through httpx2 (refused, unreachable, bad status)
)


def _leaves(exc: BaseException) -> list[BaseException]:
    """The exceptions inside (nested) exception groups: the MCP SDK's task groups wrap the real cause."""
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in _leaves(inner)]
    return [exc]


def _cause(exc: BaseException) -> str:
    """One line saying why: the innermost exceptions, their class and message (no group wrapper)."""
    causes = []
    for e in _leaves(exc):
        if isinstance(e, MCPError) and e.code == mcp_types.CONNECTION_CLOSED:
            causes.append("the server closed the connection (did the process exit? see its stderr)")
        else:
            causes.append(f"{type(e).__name__}: {e}" if str(e) else type(e).__name__)
    return "; ".join(causes)


def _is_connection_failure(exc: BaseException) -> bool:
    """True when every leaf is a lost/refused connection or an MCP protocol error (not a user's bug)."""
    return all(isinstance(e, (MCPError, *_LOST)) for e in _leaves(exc))


def _tool_name(prefix: str, separator: str, remote: str) -> str:
    """``prefix`` + ``separator`` + the server's name, made OpenAI-valid (other characters become '_')."""
    base = prefix.rstrip("._-")
    return _INVALID_NAME_CHARS.sub("_", f"{base}{separator}{remote}" if base else remote)[:64]


def _name_problem(remote: str, local: str, taken: dict[str, str]) -> str | None:
    """Why the server's tool ``remote`` (``local`` here) cannot join the tools already ``taken``
    (local name -> the server's), or None when it can."""
    if not remote:
        return "the server gave it an empty name"
    if local in taken:
        return (
            f"its name here, {local!r}, is already that of the server's tool {taken[local]!r} (names keep to "
            "OpenAI's ^[a-zA-Z0-9_-]{1,64}$: other characters become '_', longer names are cut); "
            "rename one on the server"
        )
    return None


def render_mcp_content(result: mcp_types.CallToolResult) -> str:
    """The text of an MCP tool result; non-text blocks are named rather than dropped silently."""
    parts: list[str] = []
    for block in result.content:
        if isinstance(block, mcp_types.TextContent):
            parts.append(block.text)
        elif isinstance(block, mcp_types.EmbeddedResource):
            res = block.resource
            text = getattr(res, "text", None)
            parts.append(text if text is not None else f"[binary resource {res.uri}]")
        elif isinstance(block, mcp_types.ResourceLink):
            parts.append(f"[resource link {block.uri}]")
        else:
            parts.append(f"[{block.type} content ({getattr(block, 'mime_type', '?')}) omitted]")
    if not parts and result.structured_content is not None:
        parts.append(json.dumps(result.structured_content, ensure_ascii=False))
    return "\n".join(parts)


_NAME_MAPS = ("properties", "$defs", "definitions", "dependentSchemas", "dependencies")
"""Schema keywords whose values map names (not keywords) to subschemas."""
_DATA_KEYS = ("enum", "const", "default", "examples")
"""Schema keywords whose values are data, not subschemas."""


def without_regexes(schema: Any) -> Any:
    """``schema`` for checking arguments on the client: without ``pattern`` and ``patternProperties``
    (and, where those were, ``additionalProperties`` / ``unevaluatedProperties``, which depend on them).

    Python's ``re`` backtracks and holds the GIL while it does: a server's ``^(a+)+$`` against 30
    characters from the model would stall the event loop for minutes, in a thread or not, and no
    timeout could stop it. The server checks its own patterns (a refusal comes back as a
    ``ToolArgumentError``).
    """
    removed = False

    def strip(node: Any) -> Any:
        nonlocal removed
        if isinstance(node, list):
            return [strip(item) for item in node]
        if not isinstance(node, dict):
            return node
        out: dict[str, Any] = {}
        for key, value in node.items():
            if (key == "pattern" and isinstance(value, str)) or key == "patternProperties":
                removed = True
            elif key in _NAME_MAPS and isinstance(value, dict):
                out[key] = {name: strip(sub) for name, sub in value.items()}
            elif key in _DATA_KEYS:
                out[key] = value
            else:
                out[key] = strip(value)
        if "patternProperties" in node:
            out.pop("additionalProperties", None)
        return out

    stripped = strip(schema)
    if removed:
        # Which keys count as evaluated may have hung on a pattern anywhere below: drop them all.
        def drop_unevaluated(node: Any) -> None:
            if isinstance(node, list):
                for item in node:
                    drop_unevaluated(item)
            elif isinstance(node, dict):
                node.pop("unevaluatedProperties", None)
                for value in node.values():
                    drop_unevaluated(value)

        drop_unevaluated(stripped)
    return stripped


def _validator(name: str, schema: dict[str, Any]) -> Callable[[dict[str, Any]], dict[str, Any]] | None:
    """A check of the arguments against the server's ``schema`` before the call (None when the
    schema cannot be used: the server judges alone), with the local tools' field/value messages."""
    try:
        checkable = without_regexes(schema)
        checker = jsonschema.validators.validator_for(checkable)(checkable)
        checker.check_schema(checkable)
    except (jsonschema.SchemaError, RecursionError, TypeError, ValueError):
        return None  # the server's schema is broken or too deep; let the server judge the arguments

    def validate(arguments: dict[str, Any]) -> dict[str, Any]:
        try:
            errors = sorted(checker.iter_errors(arguments), key=lambda e: [str(p) for p in e.path])
        except Exception as exc:  # a $ref that does not resolve, ...: the server judges
            log.debug("MCP tool %s: arguments not checked on the client: %r", name, exc)
            return arguments
        problems = []
        for err in errors:
            where = ".".join(str(p) for p in err.path)
            prefix = f"{where}." if where else ""
            instance = err.instance if isinstance(err.instance, dict) else {}
            if err.validator == "required":
                problems += [
                    f"- field '{prefix}{field}': required but missing"
                    for field in err.validator_value
                    if field not in instance
                ]
            elif err.validator == "additionalProperties":
                allowed = list(err.schema.get("properties", {}))
                problems += [
                    f"- field '{prefix}{field}': unexpected argument (value {instance[field]!r}); "
                    f"allowed: {', '.join(allowed) or 'none'}"
                    for field in instance
                    if field not in allowed
                ]
            else:
                problems.append(f"- field '{where or '(arguments)'}': {err.message}")
        if problems:
            raise ToolArgumentError(
                f"Invalid arguments for tool '{name}':\n" + "\n".join(problems) + "\nFix the arguments and call again."
            )
        return arguments

    return validate


def _make_tool(
    client: Client,
    spec: mcp_types.Tool,
    *,
    prefix: str,
    separator: str,
    timeout_s: float | None,
    max_output_tokens: int | None,
) -> Tool:
    remote = spec.name
    local = _tool_name(prefix, separator, remote)
    schema = dict(spec.input_schema or {"type": "object", "properties": {}})

    async def invoke(arguments: dict[str, Any], ctx: ToolContext) -> str:
        try:
            result = await client.call_tool(remote, arguments, read_timeout_seconds=timeout_s)
        except MCPError as exc:
            if exc.code == mcp_types.INVALID_PARAMS:
                raise ToolArgumentError(f"Tool '{local}' rejected the arguments: {exc.message}") from None
            if exc.code == mcp_types.REQUEST_TIMEOUT:
                raise ToolTimeout(f"Tool '{local}' timed out on the MCP server: {exc.message}") from None
            if exc.code == mcp_types.CONNECTION_CLOSED:
                raise ToolInfraError(f"MCP server connection closed while calling {remote!r}: {exc.message}") from exc
            raise ToolError(f"Tool '{local}' failed on the MCP server: {exc.message}") from None
        except _LOST as exc:
            raise ToolInfraError(f"lost the MCP server while calling {remote!r}: {exc!r}") from exc
        text = render_mcp_content(result)
        if result.is_error:
            raise ToolError(text or f"Tool '{local}' reported an error without a message.")
        return text

    return Tool.from_schema(
        name=local,
        description=spec.description or spec.title or remote,
        parameters=schema,
        invoke=invoke,
        validate=_validator(local, schema),
        timeout_s=timeout_s,
        max_output_tokens=max_output_tokens,
        parallel_safe=not (spec.annotations and spec.annotations.read_only_hint is False),
    )


def _server(
    command: list[str] | str | None,
    url: str | None,
    env: dict[str, str] | None,
    cwd: str | None,
    errlog: TextIO | None,
):
    if url is None and isinstance(command, str) and command.startswith(("http://", "https://")):
        url, command = command, None
    if (command is None) == (url is None):
        raise ValueError("mcp_toolset needs exactly one of command=[...] (stdio server) or url='http://...'")
    if url is not None:
        return url
    argv = shlex.split(command) if isinstance(command, str) else list(command or [])
    if not argv:
        raise ValueError(f"mcp_toolset command={command!r} is empty: give the server's argv, e.g. ['mcp-server-time']")
    params = StdioServerParameters(command=argv[0], args=argv[1:], env=env, cwd=cwd)
    if errlog is None:
        try:
            sys.stderr.fileno()
        except (AttributeError, OSError, ValueError):
            # A replaced sys.stderr (pytest capture, notebooks) has no descriptor to hand the child.
            return stdio_client(params, errlog=subprocess.DEVNULL)  # type: ignore[arg-type]
        return params
    return stdio_client(params, errlog=errlog)


@asynccontextmanager
async def mcp_toolset(
    command: list[str] | str | None = None,
    *,
    url: str | None = None,
    env: dict[str, str] | None = None,
    cwd: str | None = None,
    prefix: str = "",
    separator: str = "_",
    timeout_s: float | None = 30.0,
    max_output_tokens: int | None = 1024,
    errlog: TextIO | None = None,
) -> AsyncIterator[Toolset]:
    """Connect to an MCP server and yield its tools as a ``Toolset``; disconnect on exit.

    ``command`` launches a stdio server (its environment is the MCP SDK's safe default plus
    ``env``; the host's secrets are not passed on); ``url`` connects over streamable HTTP.
    Tool errors reported by the server come back as ``ToolError``; a server that cannot be started
    or reached, dies at start, or is lost later raises ``ToolInfraError`` naming the command or URL
    and the cause. ``prefix`` namespaces the tool names, joined by ``separator`` (``prefix="time"``
    -> ``time_get_current_time``); names keep to OpenAI's rule ``^[a-zA-Z0-9_-]{1,64}$``, so any other
    character (a ``.`` in a prefix such as ``"time."``) becomes ``_``. A server's tool with no name, or
    whose name so made is an earlier tool's (``a.b`` and ``a_b``), is left out with a warning naming
    the server and the tool. Arguments are checked against the server's schema before each call,
    except its regular expressions (``pattern``), which the server checks itself.
    """
    if not _VALID_SEPARATOR.match(separator):
        raise ValueError(f"mcp_toolset separator={separator!r}: use letters, digits, '_' or '-' (OpenAI's name rule)")
    server = _server(command, url, env, cwd, errlog)
    where = f"url={url!r}" if url is not None else f"command={command!r}"
    body_error: BaseException | None = None
    try:
        async with AsyncExitStack() as stack:
            try:
                client = await stack.enter_async_context(Client(server, read_timeout_seconds=timeout_s))
                specs: list[mcp_types.Tool] = []
                cursor = None
                while True:
                    page = await client.list_tools(cursor=cursor)
                    specs.extend(page.tools)
                    cursor = page.next_cursor
                    if cursor is None:
                        break
            except Exception as exc:
                if not _is_connection_failure(exc):
                    raise
                raise ToolInfraError(f"cannot connect to MCP server {where}: {_cause(exc)}") from exc
            tools, taken = Toolset(), {}
            for spec in specs:
                local = _tool_name(prefix, separator, spec.name)
                if (problem := _name_problem(spec.name, local, taken)) is not None:
                    log.warning("MCP server %s: tool %r left out: %s", where, spec.name, problem)
                    continue
                taken[local] = spec.name
                tools.add(
                    _make_tool(
                        client,
                        spec,
                        prefix=prefix,
                        separator=separator,
                        timeout_s=timeout_s,
                        max_output_tokens=max_output_tokens,
                    )
                )
            try:
                yield tools
            except BaseException as exc:
                body_error = exc
                raise
    except BaseExceptionGroup as group:
        # The SDK's task groups wrap a server that died (at start or during the block), and the
        # caller's own error too, in an ExceptionGroup: the caller gets its own error back unwrapped,
        # a dead server becomes a ToolInfraError naming the server and the cause.
        if body_error is not None and _leaves(group) == [body_error]:
            raise body_error from body_error.__cause__
        if body_error is not None or not _is_connection_failure(group):
            raise
        raise ToolInfraError(f"MCP server {where} failed: {_cause(group)}") from group

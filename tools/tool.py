"""``Tool`` and the ``@tool`` decorator: a typed Python function becomes a model-callable tool."""

from __future__ import annotations

import functools
import inspect
import math
import re
from collections.abc import Awaitable, Callable
from typing import Any, overload

from pydantic import BaseModel, ValidationError

from interleaf.tools.context import ToolContext
from interleaf.tools.errors import ToolArgumentError
from interleaf.tools.schema import (
    clean_schema,
    describe_validation_error,
    function_arguments,
    parse_docstring,
)
from interleaf.tools.worker_threads import run_in_thread

__all__ = ["Tool", "tool"]

_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
"""OpenAI's function-name rule (no dots: a name with one is refused by the official API)."""


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_limits(
    name: object, timeout_s: object, retries: object, max_output_tokens: object, parallel_safe: object
) -> None:
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(
            f"tool name {name!r} is invalid: use 1-64 letters, digits, '_' or '-' (OpenAI's function-name rule)"
        )
    if timeout_s is not None and not (
        isinstance(timeout_s, int | float) and not isinstance(timeout_s, bool) and 0 < timeout_s < math.inf
    ):
        raise ValueError(f"tool {name!r}: timeout_s={timeout_s!r} must be > 0 (a number of seconds, or None for none)")
    if not _is_int(retries) or retries < 0:  # type: ignore[operator]
        raise ValueError(f"tool {name!r}: retries={retries!r} must be >= 0 (a whole number)")
    if max_output_tokens is not None and (not _is_int(max_output_tokens) or max_output_tokens < 1):  # type: ignore[operator]
        raise ValueError(
            f"tool {name!r}: max_output_tokens={max_output_tokens!r} must be >= 1 (a whole number, or None)"
        )
    if not isinstance(parallel_safe, bool):
        raise ValueError(f"tool {name!r}: parallel_safe={parallel_safe!r} must be True or False")


class Tool:
    """A callable the model may invoke: name, description, JSON-schema parameters and limits.

    Build one with ``@tool`` from a function, or directly with ``Tool.from_schema`` for tools whose
    schema comes from elsewhere (MCP). Calling the object calls the wrapped function unchanged.
    """

    def __init__(
        self,
        fn: Callable[..., Any],
        *,
        name: str | None = None,
        description: str | None = None,
        timeout_s: float | None = 30.0,
        retries: int = 0,
        max_output_tokens: int | None = 1024,
        parallel_safe: bool = True,
    ) -> None:
        self.fn = fn
        self.name = fn.__name__ if name is None else name
        _check_limits(self.name, timeout_s, retries, max_output_tokens, parallel_safe)
        doc = parse_docstring(inspect.getdoc(fn))
        self.description = description if description is not None else doc.description
        self.timeout_s = timeout_s
        self.retries = retries
        self.max_output_tokens = max_output_tokens
        self.parallel_safe = parallel_safe
        self.is_async = inspect.iscoroutinefunction(fn)
        self.arguments_model: type[BaseModel] | None
        self.arguments_model, self._context_param = function_arguments(fn, tool_name=self.name, param_docs=doc.params)
        self.parameters: dict[str, Any] = clean_schema(self.arguments_model.model_json_schema())
        self._validator: Callable[[dict[str, Any]], dict[str, Any]] | None = None
        functools.update_wrapper(self, fn)

    @classmethod
    def from_schema(
        cls,
        *,
        name: str,
        description: str,
        parameters: dict[str, Any],
        invoke: Callable[[dict[str, Any], ToolContext], Awaitable[Any]],
        validate: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
        timeout_s: float | None = 30.0,
        retries: int = 0,
        max_output_tokens: int | None = 1024,
        parallel_safe: bool = True,
    ) -> Tool:
        """A tool from a ready JSON schema; ``invoke(arguments, ctx)`` does the work."""
        _check_limits(name, timeout_s, retries, max_output_tokens, parallel_safe)
        self = cls.__new__(cls)
        self.fn = invoke
        self.name, self.description, self.parameters = name, description, parameters
        self.timeout_s, self.retries = timeout_s, retries
        self.max_output_tokens, self.parallel_safe = max_output_tokens, parallel_safe
        self.is_async = True
        self.arguments_model, self._context_param = None, None
        self._validator = validate
        self._raw_invoke = invoke
        return self

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.fn(*args, **kwargs)

    def __repr__(self) -> str:
        return f"Tool(name={self.name!r}, timeout_s={self.timeout_s}, retries={self.retries})"

    def openai_schema(self) -> dict[str, Any]:
        """The OpenAI function-calling entry: ``{"type": "function", "function": {...}}``."""
        return {
            "type": "function",
            "function": {"name": self.name, "description": self.description, "parameters": self.parameters},
        }

    def validate(self, arguments: dict[str, Any]) -> dict[str, Any]:
        """Check and coerce ``arguments``; raise ``ToolArgumentError`` naming each bad field and value."""
        if self.arguments_model is None:
            return self._validator(arguments) if self._validator else arguments
        try:
            parsed = self.arguments_model.model_validate(arguments)
        except ValidationError as exc:
            allowed = list(self.arguments_model.model_fields)
            raise ToolArgumentError(describe_validation_error(self.name, exc, allowed)) from None
        return {field: getattr(parsed, field) for field in self.arguments_model.model_fields}

    async def invoke(self, arguments: dict[str, Any], ctx: ToolContext) -> Any:
        """Run the tool on validated arguments (sync functions in a thread of their own, which a
        timeout abandons: ``interleaf.tools.worker_threads``)."""
        if self.arguments_model is None:
            return await self._raw_invoke(arguments, ctx)
        kwargs = dict(arguments)
        if self._context_param:
            kwargs[self._context_param] = ctx
        if self.is_async:
            return await self.fn(**kwargs)
        return await run_in_thread(self.fn, **kwargs)


@overload
def tool(fn: Callable[..., Any], /) -> Tool: ...
@overload
def tool(
    *,
    name: str | None = None,
    description: str | None = None,
    timeout_s: float | None = 30.0,
    retries: int = 0,
    max_output_tokens: int | None = 1024,
    parallel_safe: bool = True,
) -> Callable[[Callable[..., Any]], Tool]: ...
def tool(
    fn: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    description: str | None = None,
    timeout_s: float | None = 30.0,
    retries: int = 0,
    max_output_tokens: int | None = 1024,
    parallel_safe: bool = True,
) -> Tool | Callable[[Callable[..., Any]], Tool]:
    """Make a tool from a typed function (sync or async); use bare or with options.

    Args:
        name: tool name shown to the model (default: the function name).
        description: overrides the docstring summary.
        timeout_s: wall-clock limit per attempt; ``None`` for none.
        retries: extra attempts after a timeout or infrastructure failure (never after ``ToolError``).
        max_output_tokens: cap on the text shown to the model; ``None`` for no cap.
        parallel_safe: whether calls may run concurrently with other calls in the same turn.
    """

    def wrap(f: Callable[..., Any]) -> Tool:
        return Tool(
            f,
            name=name,
            description=description,
            timeout_s=timeout_s,
            retries=retries,
            max_output_tokens=max_output_tokens,
            parallel_safe=parallel_safe,
        )

    return wrap(fn) if fn is not None else wrap

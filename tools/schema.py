"""From a typed Python function to an argument model and its JSON schema.

Type hints become a pydantic model (``extra="forbid"``, so unknown arguments are reported); the
docstring's summary becomes the tool description and its parameter section (Google ``Args:``,
Sphinx ``:param x:`` or numpy ``Parameters``) the per-argument descriptions.
"""

from __future__ import annotations

import inspect
import re
import typing
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model
from pydantic.fields import FieldInfo

from interleaf.tools.context import ToolContext

__all__ = [
    "ParsedDocstring",
    "clean_schema",
    "describe_validation_error",
    "function_arguments",
    "parse_docstring",
]

_GOOGLE_SECTIONS = re.compile(
    r"^(Args|Arguments|Parameters|Params|Returns|Return|Raises|Yields|Examples?|Notes?|Attributes)\s*:\s*$"
)
_NUMPY_UNDERLINE = re.compile(r"^\s*-{3,}\s*$")
_SPHINX_PARAM = re.compile(r"^:param\s+(?:[^:]*\s)?(\w+)\s*:\s*(.*)$")
_GOOGLE_ENTRY = re.compile(r"^(\*{0,2}\w+)\s*(?:\([^)]*\))?\s*:\s*(.*)$")
_NUMPY_ENTRY = re.compile(r"^(\w+)\s*(?::.*)?$")


class ParsedDocstring(BaseModel):
    """A docstring split into the tool description and per-parameter descriptions."""

    description: str = ""
    """The text before the first section (summary and body)."""
    params: dict[str, str] = Field(default_factory=dict)
    """Parameter name -> description."""


def parse_docstring(doc: str | None) -> ParsedDocstring:
    """Parse Google, Sphinx or numpy style docstrings (the common subset tool authors write)."""
    if not doc:
        return ParsedDocstring()
    lines = inspect.cleandoc(doc).splitlines()
    desc: list[str] = []
    params: dict[str, str] = {}
    section: str | None = None
    current: str | None = None
    entry_indent = None
    i = 0
    while i < len(lines):
        line = lines[i]
        stripped = line.strip()
        sphinx = _SPHINX_PARAM.match(stripped)
        if sphinx:
            section, current = "sphinx", sphinx.group(1)
            params[current] = sphinx.group(2).strip()
        elif stripped.startswith(":") and section in (None, "sphinx"):
            section, current = "sphinx-other", None
        elif _GOOGLE_SECTIONS.match(stripped) and not line.startswith((" ", "\t")):
            name = stripped.rstrip(":").strip().lower()
            section = "params" if name in ("args", "arguments", "parameters", "params") else "other"
            current, entry_indent = None, None
        elif i + 1 < len(lines) and _NUMPY_UNDERLINE.match(lines[i + 1]) and stripped:
            section = "numpy-params" if stripped.lower() in ("parameters", "params", "args") else "other"
            current = None
            i += 1
        elif section is None:
            desc.append(line)
        elif section == "params" and stripped:
            indent = len(line) - len(line.lstrip())
            match = _GOOGLE_ENTRY.match(stripped)
            if match and (entry_indent is None or indent <= entry_indent):
                entry_indent = indent
                current = match.group(1).lstrip("*")
                params[current] = match.group(2).strip()
            elif current:
                params[current] = f"{params[current]} {stripped}".strip()
        elif section == "numpy-params" and stripped:
            indented = line.startswith((" ", "\t"))
            match = _NUMPY_ENTRY.match(stripped)
            if not indented and match:
                current = match.group(1)
                params[current] = ""
            elif current:
                params[current] = f"{params[current]} {stripped}".strip()
        elif section == "sphinx" and stripped and current:
            params[current] = f"{params[current]} {stripped}".strip()
        i += 1
    return ParsedDocstring(description="\n".join(desc).strip(), params=params)


def _is_context(annotation: Any) -> bool:
    return annotation is ToolContext or (
        typing.get_origin(annotation) is typing.Union and ToolContext in typing.get_args(annotation)
    )


def _has_description(annotation: Any) -> bool:
    """Whether ``Annotated[..., Field(description=...)]`` describes the parameter itself."""
    return typing.get_origin(annotation) is typing.Annotated and any(
        isinstance(meta, FieldInfo) and meta.description for meta in typing.get_args(annotation)[1:]
    )


def _check_parameter_name(tool_name: str, name: str) -> None:
    """Refuse the names a pydantic model cannot have as fields: ``_x`` is a private attribute and
    ``model_config`` the model's configuration (both silently missing from the schema, or a
    NameError), other ``model_*`` members of ``BaseModel`` clash with its API."""
    if name.startswith("_") or (name.startswith("model_") and hasattr(BaseModel, name)):
        raise TypeError(
            f"tool {tool_name!r}: parameter {name!r} cannot be a tool argument (names starting with '_', and "
            "pydantic's own 'model_config', 'model_dump', ..., are not fields); rename the parameter"
        )


def function_arguments(
    fn: Callable[..., Any], *, tool_name: str, param_docs: dict[str, str]
) -> tuple[type[BaseModel], str | None]:
    """Build the argument model of ``fn``; return it and the name of its ``ToolContext`` parameter.

    Raises ``TypeError`` naming the tool and the parameter when ``fn`` cannot be a tool: ``*args``,
    positional-only or reserved parameter names, unresolvable type hints.
    """
    signature = inspect.signature(fn)
    try:
        hints = typing.get_type_hints(fn, include_extras=True)
    except Exception as exc:
        raise TypeError(f"tool {tool_name!r}: cannot resolve the type hints of {fn!r}: {exc}") from exc
    fields: dict[str, Any] = {}
    context_param = None
    for name, param in signature.parameters.items():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            raise TypeError(f"tool {tool_name!r}: parameter {name!r} is *args/**kwargs; use named, typed parameters")
        if param.kind is param.POSITIONAL_ONLY:
            raise TypeError(f"tool {tool_name!r}: parameter {name!r} is positional-only; tools are called by name")
        annotation = hints.get(name, Any)
        if _is_context(annotation):
            context_param = name
            continue
        _check_parameter_name(tool_name, name)
        default = ... if param.default is param.empty else param.default
        # An explicit Field(description=...) in the annotation wins over the docstring's.
        described = None if _has_description(annotation) else param_docs.get(name)
        fields[name] = (annotation, Field(default, description=described) if described else Field(default))
    # NaN and infinities are not JSON numbers, and no tool expects them for a float.
    config = ConfigDict(extra="forbid", allow_inf_nan=False)
    try:
        model = create_model(f"{tool_name}_arguments", __config__=config, **fields)
    except (NameError, TypeError, ValueError) as exc:
        raise TypeError(f"tool {tool_name!r}: its parameters cannot make an argument model: {exc}") from exc
    return model, context_param


_NON_SCHEMA_KEYS = ("default", "enum", "const", "examples")
# Readers (and models) scan a schema top-down: say what it is before the details.
_KEY_ORDER = ("type", "description", "properties", "required", "additionalProperties", "$defs")


def clean_schema(schema: Any) -> Any:
    """Drop pydantic's generated ``title`` keys (noise in prompts); keep everything else."""
    if isinstance(schema, list):
        return [clean_schema(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "title":
            continue
        if key in ("properties", "$defs", "definitions", "patternProperties") and isinstance(value, dict):
            out[key] = {name: clean_schema(sub) for name, sub in value.items()}
        elif key in _NON_SCHEMA_KEYS:
            out[key] = value
        else:
            out[key] = clean_schema(value)
    first = {key: out[key] for key in _KEY_ORDER if key in out}
    return first | {key: value for key, value in out.items() if key not in first}


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def describe_validation_error(tool_name: str, error: ValidationError, allowed: list[str]) -> str:
    """One line per problem, each naming the field and the value the model sent."""
    problems = []
    for item in error.errors():
        field = ".".join(str(part) for part in item["loc"]) or "(arguments)"
        if item["type"] == "missing":
            problems.append(f"- field '{field}': required but missing")
        elif item["type"] == "extra_forbidden":
            problems.append(
                f"- field '{field}': unexpected argument (value {_short(item['input'])}); "
                f"allowed: {', '.join(allowed) or 'none'}"
            )
        else:
            problems.append(f"- field '{field}': {item['msg']} (got {_short(item['input'])})")
    return f"Invalid arguments for tool '{tool_name}':\n" + "\n".join(problems) + "\nFix the arguments and call again."

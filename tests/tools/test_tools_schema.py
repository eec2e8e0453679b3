"""Schema snapshots: typed signatures + docstrings -> the JSON schema the model sees."""

from __future__ import annotations

import enum
from typing import Annotated, Literal

import pytest
from pydantic import BaseModel, Field

from interleaf.tools import Tool, ToolContext, tool


class Unit(enum.Enum):
    CELSIUS = "celsius"
    FAHRENHEIT = "fahrenheit"


class Point(BaseModel):
    """A point on the plane."""

    x: float
    y: float = 0.0


class Route(BaseModel):
    """A named path."""

    name: str
    points: list[Point]


def test_defaults_and_google_docstring():
    @tool
    def add(a: int, b: int = 2) -> int:
        """Add two numbers.

        Args:
          a: first
          b: second
        """
        return a + b

    assert add.name == "add"
    assert add.description == "Add two numbers."
    assert add.parameters == {
        "type": "object",
        "properties": {
            "a": {"type": "integer", "description": "first"},
            "b": {"type": "integer", "description": "second", "default": 2},
        },
        "required": ["a"],
        "additionalProperties": False,
    }
    assert add.openai_schema() == {
        "type": "function",
        "function": {"name": "add", "description": "Add two numbers.", "parameters": add.parameters},
    }
    assert add(3) == 5  # the decorated object still calls the function


def test_literal_enum_optional_and_list():
    @tool(name="convert")
    def convert(
        values: list[float], unit: Unit, mode: Literal["fast", "exact"] = "fast", label: str | None = None
    ) -> str:
        """Convert temperatures.

        :param values: readings to convert
        :param unit: the target unit
        :param mode: speed or precision
        """
        return ""

    assert convert.parameters == {
        "type": "object",
        "properties": {
            "values": {"type": "array", "description": "readings to convert", "items": {"type": "number"}},
            "unit": {"$ref": "#/$defs/Unit", "description": "the target unit"},
            "mode": {
                "type": "string",
                "description": "speed or precision",
                "default": "fast",
                "enum": ["fast", "exact"],
            },
            "label": {"anyOf": [{"type": "string"}, {"type": "null"}], "default": None},
        },
        "required": ["values", "unit"],
        "additionalProperties": False,
        "$defs": {"Unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
    }


def test_nested_models_and_numpy_docstring():
    @tool
    async def plan(route: Route, avoid: list[Point] | None = None) -> str:
        """Plan a trip along a route.

        Longer explanation that stays in the description.

        Parameters
        ----------
        route : Route
            where to go,
            in order
        avoid : list of Point
            places to skip
        """
        return route.name

    assert plan.description == "Plan a trip along a route.\n\nLonger explanation that stays in the description."
    assert plan.parameters == {
        "type": "object",
        "properties": {
            "route": {"$ref": "#/$defs/Route", "description": "where to go, in order"},
            "avoid": {
                "anyOf": [{"type": "array", "items": {"$ref": "#/$defs/Point"}}, {"type": "null"}],
                "description": "places to skip",
                "default": None,
            },
        },
        "required": ["route"],
        "additionalProperties": False,
        "$defs": {
            "Point": {
                "type": "object",
                "description": "A point on the plane.",
                "properties": {"x": {"type": "number"}, "y": {"type": "number", "default": 0.0}},
                "required": ["x"],
            },
            "Route": {
                "type": "object",
                "description": "A named path.",
                "properties": {
                    "name": {"type": "string"},
                    "points": {"type": "array", "items": {"$ref": "#/$defs/Point"}},
                },
                "required": ["name", "points"],
            },
        },
    }
    # Validation turns the nested JSON into model instances for the function.
    args = plan.validate({"route": {"name": "r", "points": [{"x": 1}]}})
    assert args["route"] == Route(name="r", points=[Point(x=1)])


def test_constraints_context_param_and_no_docstring():
    @tool(timeout_s=5, retries=2, max_output_tokens=64, parallel_safe=False)
    def fetch(ctx: ToolContext, query: Annotated[list[str], Field(min_length=1, max_length=3)], k: int = 5) -> str:
        return ""

    assert fetch.description == ""
    assert fetch.parameters == {
        "type": "object",
        "properties": {
            "query": {"type": "array", "items": {"type": "string"}, "maxItems": 3, "minItems": 1},
            "k": {"type": "integer", "default": 5},
        },
        "required": ["query"],
        "additionalProperties": False,
    }
    assert (fetch.timeout_s, fetch.retries, fetch.max_output_tokens, fetch.parallel_safe) == (5, 2, 64, False)


def test_property_named_title_is_kept():
    @tool
    def note(title: str, body: str = "") -> str:
        """Write a note."""
        return title

    assert set(note.parameters["properties"]) == {"title", "body"}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "has space"}, "tool name 'has space' is invalid"),
        ({"timeout_s": 0}, "timeout_s=0 must be > 0"),
        ({"retries": -1}, "retries=-1 must be >= 0"),
        ({"max_output_tokens": 0}, "max_output_tokens=0 must be >= 1"),
    ],
)
def test_bad_options_name_the_field(kwargs, message):
    def f(x: int) -> int:
        return x

    with pytest.raises(ValueError, match=message):
        Tool(f, **kwargs)


def test_var_args_rejected():
    def f(*xs: int) -> int:
        return 0

    with pytest.raises(TypeError, match=r"parameter 'xs' is \*args"):
        tool(f)

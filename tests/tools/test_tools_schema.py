"""Schema snapshots: typed signatures + docstrings -> the JSON schema the model sees."""

from __future__ import annotations

import enum
import re
from typing import Annotated, Literal

import pytest
from pydantic import BaseModel, Field

from interleaf.tools import Tool, ToolArgumentError, ToolContext, tool


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


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"retries": 1.5}, "retries=1.5 must be >= 0 (a whole number)"),
        ({"retries": "2"}, "retries='2' must be >= 0 (a whole number)"),
        ({"timeout_s": "3"}, "timeout_s='3' must be > 0"),
        ({"timeout_s": float("nan")}, "timeout_s=nan must be > 0"),
        ({"max_output_tokens": 2.5}, "max_output_tokens=2.5 must be >= 1 (a whole number, or None)"),
        ({"parallel_safe": "no"}, "parallel_safe='no' must be True or False"),
        ({"name": "time.now"}, "tool name 'time.now' is invalid"),
    ],
)
def test_options_of_the_wrong_type_are_refused_at_decoration(kwargs, message):
    def f(x: int) -> int:
        return x

    with pytest.raises(ValueError, match=re.escape(message)):
        tool(**kwargs)(f)


@pytest.mark.parametrize("name", ["model_config", "model_dump", "_x", "__x"])
def test_parameter_names_a_model_cannot_have_are_refused_naming_tool_and_parameter(name):
    namespace: dict = {}
    exec(f"def f({name}: int) -> int:\n    return 0", namespace)
    with pytest.raises(TypeError, match=rf"tool 'renamed': parameter '{name}' cannot be a tool argument"):
        tool(name="renamed")(namespace["f"])


def test_parameter_names_like_models_but_not_reserved_still_work():
    @tool
    def f(model_name: str, fields: str = "s") -> str:
        """Echo."""
        return model_name + fields

    assert list(f.parameters["properties"]) == ["model_name", "fields"]
    assert f.validate({"model_name": "m"}) == {"model_name": "m", "fields": "s"}


def test_an_explicit_field_description_wins_over_the_docstring():
    @tool
    def f(x: Annotated[int, Field(description="explicit", ge=0)], y: int = 0) -> int:
        """Sum.

        Args:
            x: from the docstring
            y: the docstring's y
        """
        return x + y

    props = f.parameters["properties"]
    assert props["x"] == {"type": "integer", "description": "explicit", "minimum": 0}
    assert props["y"]["description"] == "the docstring's y"


def test_non_finite_floats_are_refused_by_the_argument_model():
    @tool
    def scale(factor: float) -> float:
        """Scale."""
        return factor

    for value in (float("nan"), float("inf"), -float("inf")):
        with pytest.raises(ToolArgumentError, match="field 'factor'"):
            scale.validate({"factor": value})
    assert scale.validate({"factor": 1e308}) == {"factor": 1e308}

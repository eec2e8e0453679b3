"""The grid world of PAPERS.md §C: a fully observable MiniGrid-style N×N text grid.

Coordinates are ``(x, y)`` with x the column and y the row, both counted from the top-left corner;
the outer ring is always wall (MiniGrid's convention, so a size-7 grid has a 5×5 interior). UP is
y − 1, DOWN y + 1, LEFT x − 1, RIGHT x + 1. Moving into a wall (or a closed door without the key)
leaves the agent in place. Stepping onto the key picks it up; stepping into a closed door while
carrying the key opens it and enters it. The goal cell ends the episode.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np


class Action(StrEnum):
    """The four moves; the value is what the agent writes in ``<answer>...</answer>``."""

    UP = "UP"
    DOWN = "DOWN"
    LEFT = "LEFT"
    RIGHT = "RIGHT"


ACTIONS: tuple[Action, ...] = (Action.UP, Action.DOWN, Action.LEFT, Action.RIGHT)
DELTAS: dict[Action, tuple[int, int]] = {
    Action.UP: (0, -1),
    Action.DOWN: (0, 1),
    Action.LEFT: (-1, 0),
    Action.RIGHT: (1, 0),
}


class Variant(StrEnum):
    """Goal structures: plain navigation and the three key variants of PAPERS.md §C."""

    PLAIN = "plain"
    KEY_DOOR = "keydoor"
    """The goal lies behind a locked door; the key is needed."""
    KEY_NO_DOOR = "keynodoor"
    """A key lies on the grid but there is no door: the key is useless."""
    TWO_PATH_KEY = "twopathkey"
    """Two optimal paths to the goal, one of them passing over a useless key."""


class CellClass(StrEnum):
    """What a cell shows in the rendering; the label set of the cognitive-map probe."""

    WALL = "#"
    OPEN = "_"
    GOAL = "G"
    AGENT = "A"
    KEY = "K"
    DOOR = "D"


CELL_CLASSES: tuple[CellClass, ...] = tuple(CellClass)

Pos = tuple[int, int]


@dataclass(frozen=True, slots=True)
class GridState:
    """Where the agent is and what it has done so far (the BFS state of key variants)."""

    x: int
    y: int
    has_key: bool = False
    door_open: bool = False

    @property
    def pos(self) -> Pos:
        return (self.x, self.y)


@dataclass(frozen=True)
class Grid:
    """One grid instance. ``walls[y, x]`` is True for a wall; key and door are optional."""

    walls: np.ndarray
    start: Pos
    goal: Pos
    key: Pos | None = None
    door: Pos | None = None
    variant: Variant = Variant.PLAIN
    meta: dict[str, object] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        if self.walls.ndim != 2 or self.walls.shape[0] != self.walls.shape[1]:
            raise ValueError(f"walls: expected a square 2-D array, got shape {self.walls.shape}")
        for name in ("start", "goal", "key", "door"):
            pos = getattr(self, name)
            if pos is None:
                continue
            if not self.inside(pos) or self.walls[pos[1], pos[0]]:
                raise ValueError(f"{name}: {pos} is outside the grid or on a wall; place it on an open cell")
        if self.start == self.goal:
            raise ValueError(f"start and goal are both {self.start}; they must differ")

    @property
    def size(self) -> int:
        return int(self.walls.shape[0])

    def inside(self, pos: Pos) -> bool:
        return 0 <= pos[0] < self.size and 0 <= pos[1] < self.size

    def is_wall(self, pos: Pos) -> bool:
        return (not self.inside(pos)) or bool(self.walls[pos[1], pos[0]])

    def open_cells(self) -> list[Pos]:
        """Every non-wall cell, row by row."""
        ys, xs = np.nonzero(~self.walls)
        return [(int(x), int(y)) for y, x in zip(ys, xs, strict=True)]

    def initial_state(self) -> GridState:
        return GridState(self.start[0], self.start[1])

    def step(self, state: GridState, action: Action) -> GridState:
        """The state after ``action``; walls and a closed door without the key block the move."""
        dx, dy = DELTAS[Action(action)]
        nxt = (state.x + dx, state.y + dy)
        if self.is_wall(nxt):
            return state
        has_key, door_open = state.has_key, state.door_open
        if self.door is not None and nxt == self.door and not door_open:
            if not has_key:
                return state
            door_open = True
        if self.key is not None and nxt == self.key:
            has_key = True
        return GridState(nxt[0], nxt[1], has_key, door_open)

    def is_goal(self, state: GridState) -> bool:
        return state.pos == self.goal

    def cell_class(self, pos: Pos, state: GridState) -> CellClass:
        """The symbol shown at ``pos`` while the agent is in ``state``."""
        if self.is_wall(pos):
            return CellClass.WALL
        if pos == state.pos:
            return CellClass.AGENT
        if pos == self.goal:
            return CellClass.GOAL
        if self.key is not None and pos == self.key and not state.has_key:
            return CellClass.KEY
        if self.door is not None and pos == self.door and not state.door_open:
            return CellClass.DOOR
        return CellClass.OPEN

    def render(self, state: GridState | None = None) -> str:
        """The text rendering with column numbers on top and row numbers on the left."""
        state = state or self.initial_state()
        width = len(str(self.size - 1))
        lines = [" " * width + " " + " ".join(f"{x:>{width}}" for x in range(self.size))]
        for y in range(self.size):
            cells = " ".join(f"{self.cell_class((x, y), state).value:>{width}}" for x in range(self.size))
            lines.append(f"{y:>{width}} {cells}")
        if self.key is not None and state.has_key:
            lines.append("Agent status: Carrying key")
        return "\n".join(lines)


def step_cap(optimal_length: int, factor: float = 1.5) -> int:
    """The episode step limit: ``factor`` × the optimal length, rounded up (at least 1)."""
    return max(1, math.ceil(factor * optimal_length))

"""The four difficulty-preserving transforms of PAPERS.md §C: rotate, reflect, transpose, swap.

Rotations, reflections and the transpose are symmetries of the square lattice, so every path maps
to a path of the same length. Swapping start and goal reverses paths (moves are reversible), so
the optimal length is kept too; for key variants the swap would change the task (the key must be
fetched before the door), so it is refused there.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum

import numpy as np

from interleaf.probes.gridworld import Grid, Pos, Variant


class Transform(StrEnum):
    """Names accepted by :func:`apply_transform` (and the CLI's ``--transforms``)."""

    ROTATE = "rotate"
    """90° clockwise."""
    REFLECT = "reflect"
    """Mirror left–right."""
    TRANSPOSE = "transpose"
    """Swap x and y (mirror on the main diagonal)."""
    SWAP = "swap"
    """Exchange start and goal."""


def _map_grid(grid: Grid, walls: np.ndarray, f: Callable[[Pos], Pos], name: str) -> Grid:
    return Grid(
        walls,
        f(grid.start),
        f(grid.goal),
        key=f(grid.key) if grid.key is not None else None,
        door=f(grid.door) if grid.door is not None else None,
        variant=grid.variant,
        meta={**grid.meta, "transforms": [*grid.meta.get("transforms", []), name]},  # type: ignore[list-item]
    )


def rotate(grid: Grid) -> Grid:
    """Rotate 90° clockwise: (x, y) → (N − 1 − y, x)."""
    n = grid.size
    return _map_grid(grid, np.rot90(grid.walls, k=-1).copy(), lambda p: (n - 1 - p[1], p[0]), "rotate")


def reflect(grid: Grid) -> Grid:
    """Mirror left–right: (x, y) → (N − 1 − x, y)."""
    n = grid.size
    return _map_grid(grid, grid.walls[:, ::-1].copy(), lambda p: (n - 1 - p[0], p[1]), "reflect")


def transpose(grid: Grid) -> Grid:
    """Swap the axes: (x, y) → (y, x)."""
    return _map_grid(grid, grid.walls.T.copy(), lambda p: (p[1], p[0]), "transpose")


def swap_start_goal(grid: Grid) -> Grid:
    """Exchange start and goal (plain grids only)."""
    if grid.variant != Variant.PLAIN:
        raise ValueError(
            f"transform 'swap' on a {grid.variant.value} grid would change the task; use it on plain grids only"
        )
    out = Grid(grid.walls.copy(), grid.goal, grid.start, variant=grid.variant, meta=dict(grid.meta))
    out.meta["transforms"] = [*grid.meta.get("transforms", []), "swap"]  # type: ignore[list-item]
    return out


_TRANSFORMS: dict[Transform, Callable[[Grid], Grid]] = {
    Transform.ROTATE: rotate,
    Transform.REFLECT: reflect,
    Transform.TRANSPOSE: transpose,
    Transform.SWAP: swap_start_goal,
}


def apply_transform(grid: Grid, name: str | Transform) -> Grid:
    """Apply the transform called ``name`` (one of :class:`Transform`)."""
    try:
        t = Transform(name)
    except ValueError:
        choices = ", ".join(t.value for t in Transform)
        raise ValueError(f"transform: {name!r} is unknown; choose one of {choices}") from None
    return _TRANSFORMS[t](grid)

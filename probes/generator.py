"""Random grids: wall density d from an open room (d = 0) to a maze without cycles (d = 1).

[ours] The paper's generator (minigrid's wave-function-collapse mazes) is not usable: its pattern
file is missing from the wheel (ENVIRONMENT.md). We carve a perfect maze by randomised depth-first
search on the odd-coordinate lattice of the interior (a spanning tree: no cycles, every open cell
reachable), then keep each interior wall cell with probability d. Removing walls never disconnects,
so every density gives a connected grid; d = 1 is exactly the tree. Sizes must be odd (the paper's
7, 9, 11, 13, 15) so the lattice fills the interior.
"""

from __future__ import annotations

import numpy as np

from interleaf.probes.gridworld import Grid, Pos, Variant
from interleaf.probes.policy import cell_distances


def _check_size(size: int) -> None:
    if size < 5 or size % 2 == 0:
        raise ValueError(f"size: {size} is not supported; use an odd size >= 5 (the paper uses 7..15)")


def _check_density(density: float) -> None:
    if not 0.0 <= density <= 1.0:
        raise ValueError(f"density: {density} is outside [0, 1]")


def carve(walls: np.ndarray, x0: int, y0: int, x1: int, y1: int, density: float, rng: np.random.Generator):
    """Carve a maze into the rectangle [x0, x1] × [y0, y1] (odd corners) of ``walls`` in place."""
    region = np.ones((y1 - y0 + 1, x1 - x0 + 1), dtype=bool)
    cells = [(x, y) for y in range(0, y1 - y0 + 1, 2) for x in range(0, x1 - x0 + 1, 2)]
    start = cells[int(rng.integers(len(cells)))]
    region[start[1], start[0]] = False
    stack = [start]
    visited = {start}
    while stack:
        x, y = stack[-1]
        nbrs = [
            (x + dx, y + dy)
            for dx, dy in ((2, 0), (-2, 0), (0, 2), (0, -2))
            if 0 <= x + dx < region.shape[1] and 0 <= y + dy < region.shape[0] and (x + dx, y + dy) not in visited
        ]
        if not nbrs:
            stack.pop()
            continue
        nx, ny = nbrs[int(rng.integers(len(nbrs)))]
        region[(y + ny) // 2, (x + nx) // 2] = False
        region[ny, nx] = False
        visited.add((nx, ny))
        stack.append((nx, ny))
    # Keep each maze wall with probability d; lattice cells are always open.
    drop = rng.random(region.shape) >= density
    region &= ~drop
    walls[y0 : y1 + 1, x0 : x1 + 1] = region


def _far_pair(walls: np.ndarray, rng: np.random.Generator, min_distance: int) -> tuple[Pos, Pos]:
    """A random start and goal on open cells at least ``min_distance`` steps apart."""
    ys, xs = np.nonzero(~walls)
    cells = [(int(x), int(y)) for y, x in zip(ys, xs, strict=True)]
    for _ in range(200):
        goal = cells[int(rng.integers(len(cells)))]
        dist = cell_distances(walls, goal)
        far = [c for c, d in dist.items() if d >= min_distance]
        if far:
            return far[int(rng.integers(len(far)))], goal
    raise ValueError(f"min_distance: no two open cells are {min_distance} steps apart; lower it")


def plain_grid(size: int, density: float, rng: np.random.Generator, min_distance: int = 3) -> Grid:
    """A navigation grid: border walls, a density-d maze inside, a random start and goal."""
    _check_size(size)
    _check_density(density)
    walls = np.ones((size, size), dtype=bool)
    carve(walls, 1, 1, size - 2, size - 2, density, rng)
    start, goal = _far_pair(walls, rng, min(min_distance, size - 3))
    return Grid(walls, start, goal, variant=Variant.PLAIN, meta={"size": size, "density": density})


def key_grid(size: int, density: float, variant: Variant, rng: np.random.Generator) -> Grid:
    """A key variant (PAPERS.md §C) in the MiniGrid DoorKey layout.

    KeyDoor / KeyNoDoor: a wall column splits the grid; the agent and the key are on the left, the
    goal on the right, the only passage is one cell in the column, a locked door (KeyDoor) or an
    open cell (KeyNoDoor, so the key is useless). Each side is a density-d maze.
    TwoPathKey: a rectangular corridor loop with start and goal on opposite corners, so exactly two
    shortest paths exist; the key lies on one of them and opens nothing.
    """
    _check_size(size)
    _check_density(density)
    if variant == Variant.TWO_PATH_KEY:
        return _two_path_key(size, rng)
    if variant not in (Variant.KEY_DOOR, Variant.KEY_NO_DOOR):
        raise ValueError(f"variant: {variant!r} is not a key variant; use keydoor, keynodoor or twopathkey")
    walls = np.ones((size, size), dtype=bool)
    col = 2 * int(rng.integers(1, (size - 1) // 2))  # even column, 2..size-3
    carve(walls, 1, 1, col - 1, size - 2, density, rng)
    carve(walls, col + 1, 1, size - 2, size - 2, density, rng)
    door: Pos = (col, 2 * int(rng.integers(0, (size - 1) // 2)) + 1)
    walls[door[1], door[0]] = False
    left = [(int(x), int(y)) for y, x in zip(*np.nonzero(~walls[:, :col]), strict=True)]
    right = [(int(x) + col + 1, int(y)) for y, x in zip(*np.nonzero(~walls[:, col + 1 :]), strict=True)]
    picks = rng.choice(len(left), size=2, replace=False)
    start, key = left[int(picks[0])], left[int(picks[1])]
    goal = right[int(rng.integers(len(right)))]
    return Grid(
        walls,
        start,
        goal,
        key=key,
        door=door if variant == Variant.KEY_DOOR else None,
        variant=variant,
        meta={"size": size, "density": density},
    )


def _two_path_key(size: int, rng: np.random.Generator) -> Grid:
    walls = np.ones((size, size), dtype=bool)
    # A loop around a random rectangle of odd-coordinate corners, at least 3 cells per side.
    x0 = 1
    y0 = 1
    x1 = 2 * int(rng.integers(1, (size - 1) // 2)) + 1
    y1 = 2 * int(rng.integers(1, (size - 1) // 2)) + 1
    x1 = max(x1, 3)
    y1 = max(y1, 3)
    walls[y0, x0 : x1 + 1] = False
    walls[y1, x0 : x1 + 1] = False
    walls[y0 : y1 + 1, x0] = False
    walls[y0 : y1 + 1, x1] = False
    start, goal = (x0, y0), (x1, y1)
    # Both L-shaped halves have length (x1 - x0) + (y1 - y0); put the key inside one of them.
    top = [(x, y0) for x in range(x0 + 1, x1 + 1)] + [(x1, y) for y in range(y0 + 1, y1)]
    left = [(x0, y) for y in range(y0 + 1, y1 + 1)] + [(x, y1) for x in range(x0 + 1, x1)]
    half = top if rng.random() < 0.5 else left
    key = half[int(rng.integers(len(half)))]
    return Grid(walls, start, goal, key=key, variant=Variant.TWO_PATH_KEY, meta={"size": size, "density": None})

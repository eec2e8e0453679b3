"""Grid world: generation, transforms, BFS optimal sets, key variants."""

from __future__ import annotations

import numpy as np
import pytest

from interleaf.probes import (
    Action,
    Grid,
    GridState,
    OptimalPolicy,
    Transform,
    Variant,
    apply_transform,
    key_grid,
    plain_grid,
    step_cap,
)

U, D, L, R = Action.UP, Action.DOWN, Action.LEFT, Action.RIGHT


def parse(text: str, variant: Variant = Variant.PLAIN) -> Grid:
    """Build a grid from rows of symbols (# wall, _ open, A start, G goal, K key, D door)."""
    rows = [r.split() for r in text.strip().splitlines()]
    walls = np.array([[c == "#" for c in r] for r in rows])
    found: dict[str, tuple[int, int]] = {}
    for y, r in enumerate(rows):
        for x, c in enumerate(r):
            if c in "AGKD":
                found[c] = (x, y)
    return Grid(walls, found["A"], found["G"], key=found.get("K"), door=found.get("D"), variant=variant)


def open_edges(grid: Grid) -> int:
    cells = set(grid.open_cells())
    return sum(((x + 1, y) in cells) + ((x, y + 1) in cells) for x, y in cells)


def connected(grid: Grid) -> bool:
    cells = set(grid.open_cells())
    first = next(iter(cells))
    seen, stack = {first}, [first]
    while stack:
        x, y = stack.pop()
        for n in ((x + 1, y), (x - 1, y), (x, y + 1), (x, y - 1)):
            if n in cells and n not in seen:
                seen.add(n)
                stack.append(n)
    return seen == cells


def test_bfs_sets_on_a_hand_made_grid() -> None:
    grid = parse(
        """
        # # # # # # #
        # A _ _ # G #
        # _ # _ # _ #
        # _ _ _ _ _ #
        # # # # # # #
        # # # # # # #
        # # # # # # #
        """
    )
    pol = OptimalPolicy.solve(grid)
    # (4, 1) is a wall, so every path goes down to row 3, right, and up again.
    assert pol.optimal_length == 8
    assert pol.optimal_actions(GridState(1, 1)) == {R, D}  # both reach row 3 in the same steps
    assert pol.optimal_actions(GridState(3, 1)) == {D}
    assert pol.optimal_actions(GridState(3, 3)) == {R}
    assert pol.optimal_actions(GridState(5, 3)) == {U}
    assert pol.optimal_actions(GridState(5, 2)) == {U}
    assert pol.optimal_actions(GridState(5, 1)) == frozenset()  # the goal itself
    # Bumping into a wall leaves the agent in place and is never optimal.
    assert grid.step(GridState(1, 1), U) == GridState(1, 1)
    assert U not in pol.optimal_actions(GridState(1, 1))


def test_bfs_open_room_has_two_optimal_actions_off_axis() -> None:
    grid = parse(
        """
        # # # # #
        # A _ _ #
        # _ _ _ #
        # _ _ G #
        # # # # #
        """
    )
    pol = OptimalPolicy.solve(grid)
    assert pol.optimal_length == 4
    assert pol.optimal_actions(GridState(1, 1)) == {R, D}
    assert pol.optimal_actions(GridState(3, 1)) == {D}
    assert step_cap(pol.optimal_length) == 6
    assert step_cap(5) == 8


@pytest.mark.parametrize("size", [7, 9, 11, 15])
def test_density_one_is_a_tree_and_every_density_is_connected(size: int) -> None:
    rng = np.random.default_rng(size)
    for density in (0.0, 0.2, 0.4, 0.6, 0.8, 1.0):
        grid = plain_grid(size, density, rng)
        assert connected(grid), density
        assert grid.walls[0].all() and grid.walls[-1].all() and grid.walls[:, 0].all() and grid.walls[:, -1].all()
    for _ in range(5):
        maze = plain_grid(size, 1.0, rng)
        assert open_edges(maze) == len(maze.open_cells()) - 1  # connected + |E| = |V| - 1 ⇔ tree
    room = plain_grid(size, 0.0, rng)
    assert len(room.open_cells()) == (size - 2) ** 2


def test_bad_sizes_and_densities_name_the_field() -> None:
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="size"):
        plain_grid(8, 0.5, rng)
    with pytest.raises(ValueError, match="density"):
        plain_grid(9, 1.5, rng)


@pytest.mark.parametrize("transform", list(Transform))
def test_transforms_preserve_the_optimal_length(transform: Transform) -> None:
    rng = np.random.default_rng(7)
    for size in (7, 9, 11):
        for density in (0.0, 0.4, 1.0):
            grid = plain_grid(size, density, rng)
            moved = apply_transform(grid, transform)
            assert OptimalPolicy.solve(moved).optimal_length == OptimalPolicy.solve(grid).optimal_length
            assert moved.walls.sum() == grid.walls.sum()
    for variant in (Variant.KEY_DOOR, Variant.KEY_NO_DOOR, Variant.TWO_PATH_KEY):
        grid = key_grid(9, 0.4, variant, rng)
        if transform == Transform.SWAP:
            with pytest.raises(ValueError, match="swap"):
                apply_transform(grid, transform)
            continue
        moved = apply_transform(grid, transform)
        assert OptimalPolicy.solve(moved).optimal_length == OptimalPolicy.solve(grid).optimal_length


def test_rotation_moves_cells_clockwise() -> None:
    grid = parse(
        """
        # # # # #
        # A _ _ #
        # _ # _ #
        # _ _ G #
        # # # # #
        """
    )
    rot = apply_transform(grid, "rotate")
    assert rot.start == (3, 1)  # top-left corner goes to top-right
    assert rot.goal == (1, 3)
    four = rot
    for _ in range(3):
        four = apply_transform(four, "rotate")
    assert (four.walls == grid.walls).all() and four.start == grid.start
    with pytest.raises(ValueError, match="transform"):
        apply_transform(grid, "shear")


def test_render_has_coordinates_and_status_line() -> None:
    rng = np.random.default_rng(3)
    grid = key_grid(11, 0.4, Variant.KEY_DOOR, rng)
    text = grid.render()
    lines = text.splitlines()
    assert lines[0].split() == [str(i) for i in range(11)]
    assert lines[1].split()[0] == "0" and lines[11].split()[0] == "10"
    assert sum(line.count("A") for line in lines) == 1
    assert "K" in text and "D" in text and "G" in text
    assert "Carrying key" not in text
    carrying = GridState(grid.start[0], grid.start[1], has_key=True)
    assert grid.render(carrying).endswith("Agent status: Carrying key")


def test_keydoor_needs_the_key() -> None:
    rng = np.random.default_rng(11)
    for _ in range(10):
        grid = key_grid(9, float(rng.random()), Variant.KEY_DOOR, rng)
        pol = OptimalPolicy.solve(grid)
        path = pol.shortest_path()
        assert any(s.has_key for s in path)  # every shortest path fetches the key
        # Without ever having the key, the goal is unreachable: remove the key and solve.
        no_key = Grid(grid.walls, grid.start, grid.goal, door=grid.door, variant=grid.variant)
        assert OptimalPolicy.solve(no_key).dist(no_key.initial_state()) is None
        # A closed door blocks an agent without the key.
        dx = grid.door[0] - 1
        assert grid.step(GridState(dx, grid.door[1]), R).pos == (dx, grid.door[1])
        assert grid.step(GridState(dx, grid.door[1], has_key=True), R) == GridState(
            grid.door[0], grid.door[1], True, True
        )


def test_keynodoor_key_is_useless_and_twopathkey_has_two_paths() -> None:
    rng = np.random.default_rng(5)
    for _ in range(10):
        grid = key_grid(9, float(rng.random()), Variant.KEY_NO_DOOR, rng)
        assert grid.door is None and grid.key is not None
        pol = OptimalPolicy.solve(grid)
        no_key = Grid(grid.walls, grid.start, grid.goal, variant=Variant.PLAIN)
        assert pol.optimal_length == OptimalPolicy.solve(no_key).optimal_length
    for _ in range(10):
        grid = key_grid(9, 0.0, Variant.TWO_PATH_KEY, rng)
        pol = OptimalPolicy.solve(grid)
        # Count shortest paths from the start by dynamic programming over positions.
        plain = OptimalPolicy.solve(Grid(grid.walls, grid.start, grid.goal))
        ways = {grid.goal: 1}
        for s in sorted(plain.distance, key=lambda s: plain.distance[s]):
            if s.pos != grid.goal:
                ways[s.pos] = sum(ways[grid.step(s, a).pos] for a in plain.optimal_actions(s))
        assert ways[grid.start] == 2
        # The key lies on one of the two shortest paths and changes nothing about the optimum.
        from_start = OptimalPolicy.solve(Grid(grid.walls, grid.goal, grid.start))
        on_path = from_start.dist(GridState(*grid.key)) + plain.dist(GridState(*grid.key))
        assert on_path == plain.optimal_length == pol.optimal_length

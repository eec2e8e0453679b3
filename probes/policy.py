"""Optimal policies by breadth-first search over ``(x, y, has_key, door_open)``.

π*(s) is the set of actions whose successor is one step closer to the goal (neighbour distance =
own distance − 1), the authors' definition; a bump into a wall keeps the distance and is never
optimal. Distances come from a BFS backwards over the explicit transition graph of every state
reachable from the start (or from any state the caller asks about), so key and door rules need no
special case.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from interleaf.probes.gridworld import ACTIONS, Action, Grid, GridState


@dataclass(frozen=True)
class OptimalPolicy:
    """Distances to the goal and optimal action sets for one grid."""

    grid: Grid
    distance: dict[GridState, int]

    @classmethod
    def solve(cls, grid: Grid, extra_starts: tuple[GridState, ...] = ()) -> OptimalPolicy:
        """BFS from the goal over the reverse of the transition graph reachable from the start."""
        starts = [grid.initial_state(), *extra_starts]
        # Enumerate every state of the grid so off-path states visited by an agent are covered too.
        for x, y in grid.open_cells():
            for has_key in (False, True):
                for door_open in (False, True):
                    starts.append(GridState(x, y, has_key, door_open))
        reverse: dict[GridState, list[GridState]] = {}
        seen = set(starts)
        queue = deque(starts)
        while queue:
            s = queue.popleft()
            if grid.is_goal(s):
                continue
            for a in ACTIONS:
                n = grid.step(s, a)
                reverse.setdefault(n, []).append(s)
                if n not in seen:
                    seen.add(n)
                    queue.append(n)
        distance: dict[GridState, int] = {}
        frontier = deque()
        for s in seen:
            if grid.is_goal(s):
                distance[s] = 0
                frontier.append(s)
        while frontier:
            s = frontier.popleft()
            for p in reverse.get(s, ()):
                if p not in distance:
                    distance[p] = distance[s] + 1
                    frontier.append(p)
        return cls(grid, distance)

    def dist(self, state: GridState) -> int | None:
        """Steps to the goal from ``state``; None when the goal cannot be reached from it."""
        return self.distance.get(state)

    @property
    def optimal_length(self) -> int:
        """L*: the shortest number of steps from the start to the goal."""
        d = self.dist(self.grid.initial_state())
        if d is None:
            raise ValueError(f"grid: the goal {self.grid.goal} is unreachable from {self.grid.start}")
        return d

    def optimal_actions(self, state: GridState) -> frozenset[Action]:
        """π*(s); empty at the goal and where the goal is unreachable."""
        d = self.dist(state)
        if d is None or d == 0:
            return frozenset()
        return frozenset(a for a in ACTIONS if self.dist(self.grid.step(state, a)) == d - 1)

    def shortest_path(self) -> list[GridState]:
        """One shortest path of states from the start to the goal (ties broken by ACTIONS order)."""
        s = self.grid.initial_state()
        path = [s]
        while not self.grid.is_goal(s):
            acts = self.optimal_actions(s)
            if not acts:
                raise ValueError(f"grid: no optimal action at {s}; the goal is unreachable")
            s = self.grid.step(s, next(a for a in ACTIONS if a in acts))
            path.append(s)
        return path


def cell_distances(walls, goal: tuple[int, int]) -> dict[tuple[int, int], int]:
    """Plain BFS distances from ``goal`` over open cells of a ``walls[y, x]`` array (no key rules)."""
    n = walls.shape[0]
    dist = {goal: 0}
    queue = deque([goal])
    while queue:
        x, y = queue.popleft()
        for dx, dy in ((0, -1), (0, 1), (-1, 0), (1, 0)):
            nx, ny = x + dx, y + dy
            if 0 <= nx < n and 0 <= ny < n and not walls[ny, nx] and (nx, ny) not in dist:
                dist[(nx, ny)] = dist[(x, y)] + 1
                queue.append((nx, ny))
    return dist

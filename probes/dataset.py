"""Probe datasets: activations of each recorded step paired with what the probes must decode.

Targets (PAPERS.md §C): the cognitive map (every interior cell's class, with the cell's (x, y)
appended to the activation), the agent's position, the goal's position, the distance to the goal
(regression), and the next-k actions the agent actually takes (its plan). Positions come twice: as
cell labels (the paper's classification) and as coordinates (``agent_xy``, ``goal_xy``: a 2-output
regression scored by R² and mean cell error), because with a split by grid a held-out goal cell is
usually a label never seen in training, while its coordinates are still predictable. Features are
the last k token activations of one layer concatenated (k × d_model), at the 'pre' or 'post' position.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from interleaf.probes.gridworld import Grid
from interleaf.probes.records import GridRecord, StepRecord


@dataclass
class Activations:
    """Hidden states of all steps: ``pre``/``post`` arrays [steps, layers, k, d_model]."""

    pre: np.ndarray
    post: np.ndarray
    layers: list[int]

    def __post_init__(self) -> None:
        if self.pre.shape != self.post.shape or self.pre.ndim != 4:
            raise ValueError(f"pre/post: shapes {self.pre.shape} and {self.post.shape}; want equal [n, L, k, d]")
        if self.pre.shape[1] != len(self.layers):
            raise ValueError(f"layers: {len(self.layers)} listed but arrays hold {self.pre.shape[1]}")

    def features(self, layer: int, position: str) -> np.ndarray:
        """[steps, k·d] features of ``layer`` (a layer index as captured, e.g. 15) at ``position``."""
        if layer not in self.layers:
            raise ValueError(f"layer: {layer} was not captured; captured layers are {self.layers}")
        if position not in ("pre", "post"):
            raise ValueError(f"position: {position!r}; use 'pre' or 'post'")
        arr = self.pre if position == "pre" else self.post
        li = self.layers.index(layer)
        return arr[:, li].reshape(arr.shape[0], -1).astype(np.float32)


@dataclass
class Target:
    """One probe target: labels for some rows of the step table (``rows`` index the steps)."""

    name: str
    rows: np.ndarray
    labels: np.ndarray
    regression: bool = False


def step_targets(steps: list[StepRecord], grids: dict[str, GridRecord], next_k: int) -> list[Target]:
    """Agent position, goal position, distance and next-k action targets."""
    n = len(steps)
    all_rows = np.arange(n)
    out = [
        Target("agent_position", all_rows, np.array([f"{s.x},{s.y}" for s in steps])),
        Target(
            "goal_position",
            all_rows,
            np.array([f"{grids[s.grid_id].goal[0]},{grids[s.grid_id].goal[1]}" for s in steps]),
        ),
    ]
    out.append(Target("agent_xy", all_rows, np.array([[s.x, s.y] for s in steps], dtype=float), regression=True))
    out.append(
        Target("goal_xy", all_rows, np.array([grids[s.grid_id].goal for s in steps], dtype=float), regression=True)
    )
    with_dist = np.array([i for i, s in enumerate(steps) if s.distance is not None], dtype=int)
    out.append(
        Target("distance", with_dist, np.array([float(steps[i].distance) for i in with_dist]), regression=True)  # type: ignore[arg-type]
    )
    by_traj: dict[tuple[str, int], list[int]] = {}
    for i, s in enumerate(steps):
        by_traj.setdefault((s.grid_id, s.trajectory), []).append(i)
    for j in range(next_k):
        rows, labels = [], []
        for idx in by_traj.values():
            idx = sorted(idx, key=lambda i: steps[i].step)
            for pos, i in enumerate(idx):
                if pos + j < len(idx):
                    rows.append(i)
                    labels.append(steps[idx[pos + j]].action)
        out.append(Target(f"next_action_{j + 1}", np.array(rows, dtype=int), np.array(labels)))
    return out


@dataclass
class MapSamples:
    """Cognitive-map rows: (step row, cell x, cell y) and the cell's true class."""

    step_rows: np.ndarray
    cells: np.ndarray
    labels: np.ndarray

    def features(self, step_features: np.ndarray) -> np.ndarray:
        """Activation of the row's step with the cell's (x, y) appended (last two columns)."""
        return np.concatenate([step_features[self.step_rows], self.cells.astype(np.float32)], axis=1)


def interior_cells(size: int) -> list[tuple[int, int]]:
    return [(x, y) for y in range(1, size - 1) for x in range(1, size - 1)]


def map_samples(steps: list[StepRecord], grids: dict[str, Grid]) -> MapSamples:
    """Per step: every interior cell of its grid, with the class it shows in that step's state.

    The border is left out: it is always wall, so its cells would be free accuracy.
    """
    rows, cells, labels = [], [], []
    for i, s in enumerate(steps):
        grid = grids[s.grid_id]
        for x, y in interior_cells(grid.size):
            rows.append(i)
            cells.append((x, y))
            labels.append(grid.cell_class((x, y), s.state).value)
    return MapSamples(np.array(rows, dtype=int), np.array(cells, dtype=int), np.array(labels))

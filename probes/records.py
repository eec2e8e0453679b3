"""What a probe study stores: its configuration, grids, steps and report (pydantic, self-documenting).

Artefacts of one study directory (the dashboard reads ``report.json`` and ``plots/*.png``):
``config.json`` (StudyConfig), ``grids.jsonl`` (GridRecord), ``steps.jsonl`` (StepRecord, one per
agent action, in the row order of the hidden-state arrays), ``hidden.npz`` (``pre`` and ``post``:
float16 arrays [steps, layers, k, d_model]; ``layers``), ``report.json`` (StudyReport),
``report.md`` and ``plots/``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

import numpy as np
from pydantic import BaseModel, Field, ValidationError

from interleaf.probes.bootstrap import Interval
from interleaf.probes.gridworld import Grid, GridState, Variant
from interleaf.probes.metrics import GridMetrics, PairedTest
from interleaf.probes.probe import ProbeScore
from interleaf.telemetry.trajectory_file import describe_errors


class StudyConfig(BaseModel):
    """Everything that defines a probe study (what ``interleaf probe run`` takes)."""

    sizes: list[int] = Field(default_factory=lambda: [7, 9])
    """Grid sides N (odd, walls included)."""
    densities: list[float] = Field(default_factory=lambda: [0.0, 0.4, 1.0])
    """Wall densities d in [0, 1]; 1 is a maze without cycles."""
    grids: int = 4
    """Grids per (size, density) cell."""
    trajectories: int = 3
    """Sampled trajectories per grid."""
    variants: list[str] = Field(default_factory=list)
    """Key variants to add (keydoor, keynodoor, twopathkey), ``grids`` per size each, at the middle density."""
    transforms: list[str] = Field(default_factory=list)
    """Transforms (rotate, reflect, transpose, swap) applied to every plain base grid, for the Wilcoxon comparison."""
    layers: list[int] = Field(default_factory=lambda: [9, 19, 29])
    """Decoder layers (0-based) whose residual-stream output is captured. The default sits at the paper's
    relative depths: it probed layers 7, 15, 23 of 24 (1/3, 2/3 and 3/3 of the depth); of SmolLM2's 30
    layers that is 9, 19, 29."""
    last_k: int = 3
    """Positions captured at the end of the prompt (pre) and of the generation (post)."""
    temperature: float = 1.0
    """Sampling temperature (> 0 so trajectories differ)."""
    reasoning_chars: int = 32
    """If > 0, the agent writes a reasoning line of up to this many characters before its JSON answer, and
    'post' is captured after that line, before the answer. 0: no reasoning, only 'pre' is probed."""
    coordinates: bool = False
    """State the agent's (x, y) in the prompt. Off by default: probes must read position from the grid."""
    concurrency: int = 8
    """Trajectories run at once (the engine batches their decode steps)."""
    seed: int = 0
    """Seed of grid generation, sampling seeds and probe splits."""
    next_k: int = 2
    """Plan probes decode the agent's actions t, t+1, ..., t+next_k−1."""
    pca_dims: int | None = 64
    """PCA components of z-scored activations before probing (None: no PCA)."""
    test_fraction: float = 0.25
    """Share of base grids held out for probe testing."""
    probe_kinds: list[str] = Field(default_factory=lambda: ["linear", "mlp"])
    """Probe families fitted for each target."""
    engine_url: str | None = None
    """SGLang-protocol server the study talks to (``interleaf probe run`` starts the embedded engine when None)."""
    timeout_s: float = 120.0
    """Per-request HTTP timeout."""


class GridRecord(BaseModel):
    """One grid of the study."""

    grid_id: str
    """Unique id; transformed grids are ``<base>/<transform>``."""
    base_id: str
    """The base grid this one was derived from (itself for base grids); probes split by it."""
    transform: str
    """'base' or the transform name."""
    size: int
    """Grid side N."""
    density: float | None
    """Wall density (None for TwoPathKey)."""
    variant: str
    """plain, keydoor, keynodoor or twopathkey."""
    walls: list[str]
    """Rows of '#' (wall) and '.' (open), top to bottom."""
    start: tuple[int, int]
    """Agent start (x, y)."""
    goal: tuple[int, int]
    """Goal (x, y)."""
    key: tuple[int, int] | None = None
    """Key (x, y), key variants only."""
    door: tuple[int, int] | None = None
    """Door (x, y), KeyDoor only."""
    optimal_length: int
    """L*: BFS shortest path length."""
    step_cap: int
    """The episode limit: ceil(1.5 × L*)."""

    @classmethod
    def of(cls, grid: Grid, *, grid_id: str, base_id: str, transform: str, optimal_length: int, cap: int):
        return cls(
            grid_id=grid_id,
            base_id=base_id,
            transform=transform,
            size=grid.size,
            density=grid.meta.get("density"),  # type: ignore[arg-type]
            variant=grid.variant.value,
            walls=["".join("#" if w else "." for w in row) for row in grid.walls],
            start=grid.start,
            goal=grid.goal,
            key=grid.key,
            door=grid.door,
            optimal_length=optimal_length,
            step_cap=cap,
        )

    def to_grid(self) -> Grid:
        walls = np.array([[c == "#" for c in row] for row in self.walls])
        return Grid(
            walls,
            tuple(self.start),  # type: ignore[arg-type]
            tuple(self.goal),  # type: ignore[arg-type]
            key=tuple(self.key) if self.key else None,  # type: ignore[arg-type]
            door=tuple(self.door) if self.door else None,  # type: ignore[arg-type]
            variant=Variant(self.variant),
            meta={"size": self.size, "density": self.density},
        )


class StepRecord(BaseModel):
    """One agent action; row ``row`` of the hidden-state arrays."""

    row: int
    """Row index into hidden.npz."""
    grid_id: str
    """Which grid."""
    trajectory: int
    """Trajectory index on the grid."""
    step: int
    """Step index within the trajectory (0-based)."""
    x: int
    """Agent column before the action."""
    y: int
    """Agent row before the action."""
    has_key: bool
    """Carrying the key before the action."""
    door_open: bool
    """Door open before the action."""
    action: str
    """The action the agent chose."""
    optimal: list[str]
    """π*(s): the optimal actions in this state."""
    distance: int | None
    """BFS steps to the goal from this state."""
    text: str
    """The generated text (reasoning, if any, and the JSON answer)."""
    prompt_tokens: int
    """Prompt length reported by the engine."""
    completion_tokens: int
    """Generated tokens reported by the engine."""
    cached_tokens: int
    """Prompt tokens served from the engine's prefix cache."""
    latency_s: float
    """Client-side request latency."""

    @property
    def state(self) -> GridState:
        return GridState(self.x, self.y, self.has_key, self.door_open)


class TrajectoryRecord(BaseModel):
    """One trajectory's outcome."""

    grid_id: str
    """Which grid."""
    trajectory: int
    """Trajectory index on the grid."""
    success: bool
    """Reached the goal within the step cap."""
    length: int
    """Actions taken."""
    final: tuple[int, int, bool, bool]
    """Final state (x, y, has_key, door_open)."""
    invalid_answers: int
    """Generations without a parseable action (counted as a non-move)."""


class ConsistencyScore(BaseModel):
    """Policy consistency: are the agent's actions optimal on the map decoded from its activations?"""

    layer: int
    """Decoder layer of the map probe."""
    position: str
    """'pre' or 'post'."""
    kind: str
    """Map probe family used for decoding."""
    n_steps: int
    """Held-out steps evaluated."""
    optimal_on_decoded: float
    """Fraction of actions optimal on the decoded map (decoded walls and goal, true agent position)."""
    optimal_on_true: float
    """Fraction of the same actions optimal on the true map (the action accuracy of those steps)."""
    decoded_cell_accuracy: float
    """Fraction of interior cells whose decoded class is right on those steps."""
    interval: Interval | None = None
    """95 % bootstrap interval of ``optimal_on_decoded`` over held-out grids (with a too-few-samples warning)."""


class StudyReport(BaseModel):
    """The report of one probe study."""

    config: StudyConfig
    """The configuration that produced it."""
    model: str
    """The model the engine served."""
    engine_url: str
    """Where the engine was reached."""
    hidden_state_source: str
    """'interleaf' (selected layers, last-k prompt and output positions) or 'sglang' (last layer only)."""
    n_grids: int
    """Grids run (base and transformed)."""
    n_steps: int
    """Agent actions recorded."""
    wall_s: float
    """Wall-clock seconds of the whole study."""
    agent_s: float
    """Seconds spent running trajectories."""
    probe_s: float
    """Seconds spent fitting probes."""
    invalid_answers: int
    """Generations that did not parse as an action (0 with a grammar-constrained engine)."""
    grid_metrics: list[GridMetrics]
    """Behavioural metrics per grid."""
    paired_tests: list[PairedTest]
    """Wilcoxon tests base vs each transform."""
    probe_scores: list[ProbeScore]
    """Every probe and its shuffled-label control."""
    consistency: list[ConsistencyScore]
    """Policy consistency per layer and position."""
    notes: list[str] = Field(default_factory=list)
    """Caveats found while running (e.g. a target that could not be probed)."""


Record = TypeVar("Record", bound=BaseModel)


def read_json(path: Path, model: type[Record]) -> Record:
    """One JSON artefact (``config.json``, ``report.json``) as ``model``; a missing, unreadable or invalid
    file raises ``ValueError`` naming the file and the field."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: cannot be read ({_reason(exc)})") from None
    try:
        return model.model_validate_json(text)
    except ValidationError as exc:
        raise ValueError(f"{path} is not a valid {model.__name__}: {describe_errors(exc)}") from None


def read_jsonl(path: Path, model: type[Record]) -> list[Record]:
    """A JSON Lines artefact (``grids.jsonl``, ``steps.jsonl``, ``trajectories.jsonl``), one ``model``
    per line, blank lines skipped; a bad line raises ``ValueError`` naming the file, line and field."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: cannot be read ({_reason(exc)})") from None
    out = []
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            out.append(model.model_validate_json(line))
        except ValidationError as exc:
            raise ValueError(f"{path}:{lineno} is not a valid {model.__name__}: {describe_errors(exc)}") from None
    return out


def _reason(exc: Exception) -> str:
    if isinstance(exc, FileNotFoundError):
        return "no such file"
    if isinstance(exc, OSError):
        return exc.strerror or type(exc).__name__
    return f"not UTF-8: {exc}"

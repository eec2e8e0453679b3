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
from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

from interleaf.probes.bootstrap import Interval
from interleaf.probes.gridworld import Grid, GridState, Variant
from interleaf.probes.metrics import GridMetrics, PairedTest
from interleaf.probes.probe import ProbeKind, ProbeScore
from interleaf.probes.transforms import Transform
from interleaf.telemetry.trajectory_file import describe_errors


class StudyConfig(BaseModel):
    """Everything that defines a probe study (what ``interleaf probe run`` takes).

    Every field is checked here, at construction, so that a bad value fails before an engine is started
    or an artefact is written; each message names the value and what is allowed."""

    sizes: list[int] = Field(default_factory=lambda: [7, 9])
    """Grid sides N (odd, >= 5, walls included), each at most once."""
    densities: list[float] = Field(default_factory=lambda: [0.0, 0.4, 1.0])
    """Wall densities d in [0, 1], each at most once; 1 is a maze without cycles. May be empty when
    ``variants`` are given (a key-variant-only study)."""
    grids: int = Field(4, ge=1)
    """Grids per (size, density) cell, >= 1."""
    trajectories: int = Field(3, ge=1)
    """Sampled trajectories per grid, >= 1."""
    variants: list[str] = Field(default_factory=list)
    """Key variants to add (keydoor, keynodoor, twopathkey), ``grids`` per size each, at the middle density."""
    transforms: list[str] = Field(default_factory=list)
    """Transforms (rotate, reflect, transpose, swap) applied to every plain base grid, for the Wilcoxon comparison."""
    layers: list[int] = Field(default_factory=lambda: [9, 19, 29], min_length=1)
    """Decoder layers (0-based, at least one, each at most once) whose residual-stream output is captured. The
    default sits at the paper's relative depths: it probed layers 7, 15, 23 of 24 (1/3, 2/3 and 3/3 of the
    depth); of SmolLM2's 30 layers that is 9, 19, 29. The engine checks them against the model's depth."""
    last_k: int = Field(3, ge=1)
    """Positions captured at the end of the prompt (pre) and of the generation (post), >= 1."""
    temperature: float = Field(1.0, gt=0, allow_inf_nan=False)
    """Sampling temperature (> 0 so trajectories differ)."""
    reasoning_chars: int = Field(32, ge=0)
    """If > 0, the agent writes a reasoning line of up to this many characters before its JSON answer, and
    'post' is captured after that line, before the answer. 0: no reasoning, only 'pre' is probed."""
    coordinates: bool = False
    """State the agent's (x, y) in the prompt. Off by default: probes must read position from the grid."""
    concurrency: int = Field(8, ge=1)
    """Trajectories run at once (the engine batches their decode steps), >= 1."""
    seed: int = Field(0, ge=0)
    """Seed of grid generation, sampling seeds and probe splits (>= 0, as numpy's generators want)."""
    next_k: int = Field(2, ge=1)
    """Plan probes decode the agent's actions t, t+1, ..., t+next_k−1 (>= 1)."""
    pca_dims: int | None = Field(64, ge=1)
    """PCA components of z-scored activations before probing, >= 1 (None: no PCA; the CLI's 0)."""
    test_fraction: float = Field(0.25, gt=0, lt=1)
    """Share of base grids held out for probe testing, in (0, 1)."""
    probe_kinds: list[str] = Field(default_factory=lambda: ["linear", "mlp"])
    """Probe families fitted for each target (linear, mlp; at least one)."""
    engine_url: str | None = None
    """SGLang-protocol server the study talks to (``interleaf probe run`` starts the embedded engine when None)."""
    timeout_s: float = Field(120.0, gt=0, allow_inf_nan=False)
    """Per-request HTTP timeout in seconds, > 0."""

    @field_validator("sizes")
    @classmethod
    def _odd_sizes(cls, sizes: list[int]) -> list[int]:
        bad = [s for s in sizes if s < 5 or s % 2 == 0]
        if bad:
            raise ValueError(f"{bad[0]} is not a supported size; use odd sizes >= 5 (the paper uses 7..15)")
        return _once(sizes, str)

    @field_validator("densities")
    @classmethod
    def _unit_densities(cls, densities: list[float]) -> list[float]:
        bad = [d for d in densities if not 0.0 <= d <= 1.0]  # NaN fails too
        if bad:
            raise ValueError(f"{bad[0]} is outside [0, 1]")
        return _once(densities, lambda d: f"{d:g}")  # grid ids carry the density as {d:g}

    @field_validator("variants")
    @classmethod
    def _key_variants(cls, variants: list[str]) -> list[str]:
        return _once(_choices(variants, KEY_VARIANTS), str)

    @field_validator("transforms")
    @classmethod
    def _known_transforms(cls, transforms: list[str]) -> list[str]:
        return _once(_choices(transforms, [t.value for t in Transform]), str)

    @field_validator("layers")
    @classmethod
    def _layer_indices(cls, layers: list[int]) -> list[int]:
        bad = [n for n in layers if n < 0]
        if bad:
            raise ValueError(f"{bad[0]} is not a layer index; decoder layers are 0-based (>= 0)")
        return _once(layers, str)

    @field_validator("probe_kinds")
    @classmethod
    def _known_kinds(cls, kinds: list[str]) -> list[str]:
        if not kinds:
            raise ValueError(f"names no probe family; use one or more of {', '.join(k.value for k in ProbeKind)}")
        return _once(_choices(kinds, [k.value for k in ProbeKind]), str)

    @model_validator(mode="after")
    def _two_base_grids(self) -> StudyConfig:
        # Probes hold out whole base grids (split_by_group): one base grid leaves nothing to test on, and
        # the study would fail only after its whole agent phase.
        n = self.base_grids
        if n < 2:
            raise ValueError(
                f"grids={self.grids} × {len(self.sizes)} size(s) × ({len(self.densities)} density(ies) + "
                f"{len(self.variants)} variant(s)) gives {n} base grid(s); probes are tested on held-out grids, "
                "so a study needs at least 2: raise grids or add sizes, densities or variants"
            )
        return self

    @property
    def base_grids(self) -> int:
        """Base grids the study generates (plain and key-variant; transforms add copies, not base grids)."""
        return self.grids * len(self.sizes) * (len(self.densities) + len(self.variants))


KEY_VARIANTS = [v.value for v in Variant if v is not Variant.PLAIN]
"""The ``variants`` a study accepts (plain grids come from ``densities``)."""

Item = TypeVar("Item")


def _choices(values: list[str], allowed: list[str]) -> list[str]:
    bad = [v for v in values if v not in allowed]
    if bad:
        raise ValueError(f"{bad[0]!r} is not one of {', '.join(allowed)}")
    return values


def _once(values: list[Item], key) -> list[Item]:
    seen: set[str] = set()
    for v in values:
        if key(v) in seen:
            raise ValueError(f"{v} is listed twice; list each value once")
        seen.add(key(v))
    return values


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

"""Goal-directedness of agents in a grid world: environment, optimal policy, behaviour, probes.

PAPERS.md §C. The math here (grid world, BFS, metrics, probe fitting) imports nothing of
``interleaf.runtime``; only the study runner talks to an engine, over HTTP.
"""

from interleaf.probes.generator import key_grid, plain_grid
from interleaf.probes.gridworld import (
    ACTIONS,
    CELL_CLASSES,
    Action,
    CellClass,
    Grid,
    GridState,
    Variant,
    step_cap,
)
from interleaf.probes.metrics import (
    Episode,
    GridMetrics,
    PairedTest,
    action_accuracy,
    ece,
    entropy_bits,
    grid_metrics,
    jsd_bits,
    paired_test,
    spl,
)
from interleaf.probes.policy import OptimalPolicy
from interleaf.probes.probe import FittedProbe, ProbeKind, ProbeScore, fit_probe, split_by_group
from interleaf.probes.transforms import Transform, apply_transform

__all__ = [
    "ACTIONS",
    "CELL_CLASSES",
    "Action",
    "CellClass",
    "Episode",
    "FittedProbe",
    "Grid",
    "GridMetrics",
    "GridState",
    "OptimalPolicy",
    "PairedTest",
    "ProbeKind",
    "ProbeScore",
    "Transform",
    "Variant",
    "action_accuracy",
    "apply_transform",
    "ece",
    "entropy_bits",
    "fit_probe",
    "grid_metrics",
    "jsd_bits",
    "key_grid",
    "paired_test",
    "plain_grid",
    "spl",
    "split_by_group",
    "step_cap",
]

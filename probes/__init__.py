"""Goal-directedness of agents in a grid world: environment, optimal policy, behaviour, probes.

PAPERS.md §C. The math here (grid world, BFS, metrics, probe fitting) imports nothing of
``interleaf.runtime``; only the grid agent and the study runner talk to an engine, through the
runtime client's public API (``interleaf.runtime.client.SGLangBackend``).
"""

from interleaf.probes.agent import GridAgent, HiddenStates, parse_hidden_states
from interleaf.probes.bootstrap import Interval, bootstrap_interval
from interleaf.probes.dataset import Activations
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
from interleaf.probes.navigator import NavigatorConfig, NavigatorLog, train_navigator
from interleaf.probes.policy import OptimalPolicy
from interleaf.probes.probe import FittedProbe, ProbeKind, ProbeScore, fit_probe, split_by_group
from interleaf.probes.probing import policy_consistency, run_probes
from interleaf.probes.records import (
    ConsistencyScore,
    GridRecord,
    StepRecord,
    StudyConfig,
    StudyReport,
    TrajectoryRecord,
)
from interleaf.probes.study import analyse, build_grids, load_run, run_study
from interleaf.probes.transforms import Transform, apply_transform

__all__ = [
    "ACTIONS",
    "CELL_CLASSES",
    "Action",
    "Activations",
    "CellClass",
    "ConsistencyScore",
    "Episode",
    "FittedProbe",
    "Grid",
    "GridAgent",
    "GridMetrics",
    "GridRecord",
    "GridState",
    "HiddenStates",
    "Interval",
    "NavigatorConfig",
    "NavigatorLog",
    "OptimalPolicy",
    "PairedTest",
    "ProbeKind",
    "ProbeScore",
    "StepRecord",
    "StudyConfig",
    "StudyReport",
    "TrajectoryRecord",
    "Transform",
    "Variant",
    "action_accuracy",
    "analyse",
    "apply_transform",
    "bootstrap_interval",
    "build_grids",
    "ece",
    "entropy_bits",
    "fit_probe",
    "grid_metrics",
    "jsd_bits",
    "key_grid",
    "load_run",
    "paired_test",
    "parse_hidden_states",
    "plain_grid",
    "policy_consistency",
    "run_probes",
    "run_study",
    "spl",
    "split_by_group",
    "step_cap",
    "train_navigator",
]

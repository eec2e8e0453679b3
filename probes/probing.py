"""Run every probe of a study: each target × layer × position × kind, each with its control.

One train/test split by base grid is drawn per study and shared by all probes, so scores of
different layers, positions and kinds compare like with like.
"""

from __future__ import annotations

import logging
import time

import numpy as np
from sklearn.decomposition import PCA

from interleaf.probes.bootstrap import bootstrap_interval
from interleaf.probes.dataset import Activations, MapSamples, interior_cells, map_samples, step_targets
from interleaf.probes.gridworld import DELTAS, Action, CellClass, Grid
from interleaf.probes.policy import cell_distances
from interleaf.probes.probe import FittedProbe, ProbeScore, fit_probe, robust_scaler, split_by_group
from interleaf.probes.records import ConsistencyScore, GridRecord, StepRecord, StudyConfig

logger = logging.getLogger("interleaf.probes")


def _decoded_optimal(grid: Grid, decoded: np.ndarray, goal_p: np.ndarray, step: StepRecord) -> bool:
    """Is ``step.action`` optimal on the map given by decoded interior classes?"""
    n = grid.size
    walls = np.ones((n, n), dtype=bool)
    for (x, y), c in zip(interior_cells(n), decoded, strict=True):
        walls[y, x] = c in (CellClass.WALL.value, CellClass.DOOR.value)
    cells = interior_cells(n)
    goal = cells[int(np.argmax(goal_p))]
    walls[goal[1], goal[0]] = False
    walls[step.y, step.x] = False
    dist = cell_distances(walls, goal)
    here = dist.get((step.x, step.y))
    if here is None or here == 0:
        return False
    dx, dy = DELTAS[Action(step.action)]
    return dist.get((step.x + dx, step.y + dy)) == here - 1


def policy_consistency(
    probe: FittedProbe,
    features: np.ndarray,
    steps: list[StepRecord],
    grids: dict[str, Grid],
    test_steps: np.ndarray,
    *,
    layer: int,
    position: str,
    kind: str,
    max_steps: int = 300,
) -> ConsistencyScore:
    """Decode the whole interior map at each held-out step and check the agent's action on it."""
    classes = list(probe.classes)
    goal_col = classes.index(CellClass.GOAL.value) if CellClass.GOAL.value in classes else None
    on_decoded, on_true, cell_hits, cell_total, groups = [], [], 0, 0, []
    for row in test_steps[:max_steps]:
        s = steps[int(row)]
        grid = grids[s.grid_id]
        cells = interior_cells(grid.size)
        x = np.concatenate(
            [np.repeat(features[row][None, :], len(cells), axis=0), np.array(cells, dtype=np.float32)], axis=1
        )
        proba = probe.predict_proba(x)
        decoded = np.array(classes)[np.argmax(proba, axis=1)]
        truth = [grid.cell_class(c, s.state).value for c in cells]
        cell_hits += int(sum(d == t for d, t in zip(decoded, truth, strict=True)))
        cell_total += len(cells)
        goal_p = proba[:, goal_col] if goal_col is not None else np.zeros(len(cells))
        on_decoded.append(goal_col is not None and _decoded_optimal(grid, decoded, goal_p, s))
        on_true.append(s.action in s.optimal)
        groups.append(s.grid_id)
    decoded_ok = np.array(on_decoded, dtype=float)
    return ConsistencyScore(
        interval=bootstrap_interval(lambda r: float(decoded_ok[r].mean()), np.array(groups)) if groups else None,
        layer=layer,
        position=position,
        kind=kind,
        n_steps=len(on_decoded),
        optimal_on_decoded=float(np.mean(on_decoded)) if on_decoded else 0.0,
        optimal_on_true=float(np.mean(on_true)) if on_true else 0.0,
        decoded_cell_accuracy=cell_hits / cell_total if cell_total else 0.0,
    )


def reduce(features: np.ndarray, train_rows: np.ndarray, dims: int | None, seed: int) -> np.ndarray:
    """Z-score and project onto the top ``dims`` principal components, both fitted on training rows.

    Done once per layer and position and shared by every target's probes (the same training grids
    for all of them), instead of once per probe.
    """
    if dims is None or dims >= min(train_rows.size, features.shape[1]):
        return features
    scaler = robust_scaler(features[train_rows])
    pca = PCA(n_components=dims, random_state=seed).fit(scaler.transform(features[train_rows]))
    scores = pca.transform(scaler.transform(features))
    # One global scale (not per component): whitening would blow up low-variance directions.
    return (scores / scores[train_rows].std()).astype(np.float32)


def run_probes(
    steps: list[StepRecord],
    grid_records: list[GridRecord],
    acts: Activations,
    config: StudyConfig,
) -> tuple[list[ProbeScore], list[ConsistencyScore], list[str]]:
    """Fit all probes of a study; returns scores, policy-consistency scores and notes."""
    records = {g.grid_id: g for g in grid_records}
    grids = {g.grid_id: g.to_grid() for g in grid_records}
    groups = np.array([records[s.grid_id].base_id for s in steps])
    rng = np.random.default_rng(config.seed)
    train_steps, test_steps = split_by_group(groups, config.test_fraction, rng)
    test_groups = set(groups[test_steps])
    targets = step_targets(steps, records, config.next_k)
    samples: MapSamples = map_samples(steps, grids)
    sample_test = np.isin(groups[samples.step_rows], list(test_groups))
    map_split = (np.nonzero(~sample_test)[0], np.nonzero(sample_test)[0])
    scores: list[ProbeScore] = []
    consistency: list[ConsistencyScore] = []
    notes: list[str] = []
    common = {"pca_dims": None, "seed": config.seed, "zscore": config.pca_dims is None}
    positions = ("pre", "post") if config.reasoning_chars > 0 else ("pre",)
    for layer in acts.layers:
        for position in positions:
            t0 = time.perf_counter()
            feats = reduce(acts.features(layer, position), train_steps, config.pca_dims, config.seed)
            for t in targets:
                is_test = np.isin(groups[t.rows], list(test_groups))
                split = (np.nonzero(~is_test)[0], np.nonzero(is_test)[0])
                if split[0].size == 0 or split[1].size == 0:
                    notes.append(f"{t.name}: no rows on one side of the split; skipped")
                    continue
                for kind in config.probe_kinds:
                    for control in (False, True):
                        try:
                            score, _ = fit_probe(
                                feats[t.rows],
                                t.labels,
                                groups[t.rows],
                                kind=kind,
                                regression=t.regression,
                                control=control,
                                target=t.name,
                                layer=layer,
                                position=position,
                                split=split,
                                **common,
                            )
                        except ValueError as exc:
                            notes.append(f"{t.name} L{layer} {position} {kind}: {exc}")
                            continue
                        scores.append(score)
            xm = samples.features(feats)
            for kind in config.probe_kinds:
                for control in (False, True):
                    score, probe = fit_probe(
                        xm,
                        samples.labels,
                        groups[samples.step_rows],
                        kind=kind,
                        control=control,
                        target="map",
                        layer=layer,
                        position=position,
                        split=map_split,
                        passthrough=2,
                        **common,
                    )
                    scores.append(score)
                    if not control:
                        consistency.append(
                            policy_consistency(
                                probe, feats, steps, grids, test_steps, layer=layer, position=position, kind=kind
                            )
                        )
            logger.info("probes of layer %d %s fitted in %.1f s", layer, position, time.perf_counter() - t0)
    notes += caveats(config)
    return scores, consistency, sorted(set(notes))


def caveats(config: StudyConfig) -> list[str]:
    """What a reader must know to read the probe table correctly (added to every report)."""
    out = [
        "goal_position (cell labels) is constant within a grid and the split is by grid, so a held-out grid's "
        "goal cell is usually a label never seen in training: near-zero scores there are a ceiling of the "
        "design; goal_xy (coordinates, R² and mean cell error) is the readable form.",
    ]
    if config.coordinates:
        out.append(
            "the prompt states the agent's coordinates in words ('You are at x=.., y=..'), so agent_position "
            "and agent_xy can be read from that text, not only from the rendered grid."
        )
    if config.reasoning_chars <= 0:
        out.append("reasoning is off, so there is no 'post-reasoning' position; only 'pre' (end of prompt) is probed.")
    return out

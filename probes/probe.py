"""Fitting one probe: linear (logistic / ridge) or MLP, with a shuffled-label control.

Recipe (PAPERS.md §C): inputs z-scored on the training split; minority classes upsampled (with
replacement) to the majority count in the training split; train/test split by grid, never by step,
so a probe cannot pass by memorising a grid. [ours] Every probe has a control twin fitted on
training labels permuted across the training rows and scored on the true test labels: what the
same model reaches with no feature→label relation; a probe means something only above it.
[ours] Optional PCA (fitted on the training split after z-scoring) keeps probes on a few hundred
samples of 1,728-dim activations fast and less over-fitted on two CPU cores; it is linear, so a
"linear probe" stays linear. ``pca_dims=None`` turns it off.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from enum import StrEnum

import numpy as np
from pydantic import BaseModel
from sklearn.compose import TransformedTargetRegressor
from sklearn.decomposition import PCA
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression, RidgeCV
from sklearn.metrics import accuracy_score, balanced_accuracy_score, mean_absolute_error, r2_score
from sklearn.neural_network import MLPClassifier, MLPRegressor
from sklearn.preprocessing import StandardScaler

from interleaf.probes.bootstrap import Interval, bootstrap_interval


class ProbeKind(StrEnum):
    """Probe model families."""

    LINEAR = "linear"
    """Multinomial logistic regression (classification) or ridge regression (regression)."""
    MLP = "mlp"
    """One hidden layer of 64 ReLU units (sklearn's MLP, adam, ``mlp_epochs`` at most), L2-regularised."""


class ProbeScore(BaseModel):
    """Held-out scores of one fitted probe (one target, layer, position, kind, real or control)."""

    target: str
    """What was decoded: map, agent_position, goal_position, distance, next_action_k, ..."""
    layer: int | None
    """Decoder layer index (0-based) of the activations; None for synthetic data."""
    position: str | None
    """'pre' (last prompt tokens, before reasoning) or 'post' (last tokens fed by generation end)."""
    kind: ProbeKind
    """linear or mlp."""
    control: bool
    """True for the shuffled-label control twin."""
    regression: bool
    """True when the target is continuous (scored by R² and MAE instead of accuracy)."""
    n_train: int
    """Training rows before class upsampling."""
    n_test: int
    """Held-out rows (from grids never seen in training)."""
    n_classes: int
    """Distinct labels in the training split (0 for regression)."""
    accuracy: float | None = None
    """Held-out accuracy (classification)."""
    balanced_accuracy: float | None = None
    """Held-out mean per-class recall over the classes present in the test split (classification)."""
    majority_baseline: float | None = None
    """Accuracy of always answering the training split's most frequent label (classification)."""
    r2: float | None = None
    """Held-out coefficient of determination (regression; averaged over x and y for coordinates). None
    for a regression whose target (or one coordinate axis of it) is constant over the held-out rows:
    R² is undefined there (the report prints n/a)."""
    mae: float | None = None
    """Held-out mean absolute error (regression)."""
    cell_error: float | None = None
    """Coordinate targets: mean Euclidean distance (in cells) between decoded and true (x, y)."""
    interval: Interval | None = None
    """95 % bootstrap interval of the headline figure (balanced accuracy or R²), resampling held-out grids;
    its ``warning`` is set when the figure rests on too few grids or rows to mean anything."""


def robust_scaler(x: np.ndarray) -> StandardScaler:
    """A StandardScaler whose per-feature scale is floored at 1 % of the median scale.

    Residual streams hold near-constant features (the 'pre' tokens are the same chat-template
    tokens every step); dividing by their tiny training std turns test-time noise into huge values.
    """
    scaler = StandardScaler().fit(x)
    floor = 0.01 * float(np.median(scaler.scale_))
    scaler.scale_ = np.maximum(scaler.scale_, floor if floor > 0 else 1.0)
    return scaler


def split_by_group(groups: np.ndarray, test_fraction: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Row indices of a train/test split that keeps each group (grid) on one side."""
    uniq = np.unique(groups)
    if uniq.size < 2:
        raise ValueError(f"groups: only {uniq.size} distinct grid(s); a split by grid needs at least 2")
    n_test = min(uniq.size - 1, max(1, round(test_fraction * uniq.size)))
    test_groups = rng.choice(uniq, size=n_test, replace=False)
    test = np.isin(groups, test_groups)
    return np.nonzero(~test)[0], np.nonzero(test)[0]


def upsample(y: np.ndarray, rng: np.random.Generator, max_rows: int | None = None) -> np.ndarray:
    """Row indices that repeat minority classes (with replacement) up to the majority count.

    With ``max_rows``, every class is brought to ``min(majority, max_rows // n_classes)`` rows
    instead (majority classes subsampled without replacement): still balanced, bounded in cost.
    """
    classes, counts = np.unique(y, return_counts=True)
    top = int(counts.max())
    if max_rows is not None:
        top = max(1, min(top, max_rows // classes.size))
    idx = []
    for c, n in zip(classes, counts, strict=True):
        rows = np.nonzero(y == c)[0]
        if n >= top:
            idx.append(rng.choice(rows, size=top, replace=False) if n > top else rows)
        else:
            idx.append(rows)
            idx.append(rng.choice(rows, size=top - n, replace=True))
    return np.concatenate(idx)


@dataclass
class FittedProbe:
    """A fitted probe: scaler → optional PCA (of all but the last ``passthrough`` columns) → model."""

    scaler: StandardScaler
    pca: PCA | None
    model: object
    regression: bool
    passthrough: int = 0
    clip: float = 5.0

    def _features(self, x: np.ndarray) -> np.ndarray:
        # Clipping bounds what an unseen grid's outlying activations can do to a fitted probe.
        z = np.clip(self.scaler.transform(x), -self.clip, self.clip)
        if self.pca is None:
            return z
        cut = z.shape[1] - self.passthrough
        return np.concatenate([self.pca.transform(z[:, :cut]), z[:, cut:]], axis=1)

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.model.predict(self._features(x))  # type: ignore[attr-defined]

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        if self.regression:
            raise ValueError("predict_proba: this probe is a regression probe; use predict")
        return self.model.predict_proba(self._features(x))  # type: ignore[attr-defined]

    @property
    def classes(self) -> np.ndarray:
        return self.model.classes_  # type: ignore[attr-defined]


def _model(kind: ProbeKind, regression: bool, seed: int, mlp_epochs: int) -> object:
    if kind == ProbeKind.LINEAR:
        if regression:
            return RidgeCV(alphas=np.logspace(-2, 4, 13))
        return LogisticRegression(max_iter=100, tol=1e-3, C=1.0)
    # Few epochs with a loose tolerance: probes are read for their held-out score, not polished fits.
    opts = {"hidden_layer_sizes": (64,), "alpha": 1e-2, "max_iter": mlp_epochs, "tol": 1e-3, "n_iter_no_change": 5}
    if regression:
        # Targets (distances of 1..30 steps) are standardised so the network's output scale fits.
        return TransformedTargetRegressor(MLPRegressor(random_state=seed, **opts), transformer=StandardScaler())
    return MLPClassifier(random_state=seed, **opts)


def fit_probe(
    x: np.ndarray,
    y: np.ndarray,
    groups: np.ndarray,
    *,
    kind: ProbeKind | str = ProbeKind.LINEAR,
    regression: bool = False,
    control: bool = False,
    target: str = "target",
    layer: int | None = None,
    position: str | None = None,
    test_fraction: float = 0.25,
    pca_dims: int | None = 64,
    seed: int = 0,
    split: tuple[np.ndarray, np.ndarray] | None = None,
    passthrough: int = 0,
    max_rows: int | None = 2000,
    zscore: bool = True,
    mlp_epochs: int = 40,
) -> tuple[ProbeScore, FittedProbe]:
    """Fit one probe on ``x`` → ``y`` and score it on held-out groups.

    ``split`` (train rows, test rows) overrides the random split by group, so a probe and its
    control (and the linear and MLP probes) can share one split. The last ``passthrough`` columns
    (e.g. a cell's coordinates) are z-scored but kept out of the PCA. ``max_rows`` bounds the
    balanced training set (see :func:`upsample`). ``zscore=False`` is for inputs that are already
    z-scored and PCA-projected (see ``probing.reduce``): re-standardising principal components
    would whiten them and blow up their low-variance directions on unseen grids; only the
    passthrough columns are then z-scored.
    """
    kind = ProbeKind(kind)
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y)
    groups = np.asarray(groups)
    if not (x.shape[0] == y.shape[0] == groups.shape[0]):
        raise ValueError(f"x/y/groups: row counts {x.shape[0]}, {y.shape[0]}, {groups.shape[0]} must match")
    rng = np.random.default_rng(seed)
    train, test = split if split is not None else split_by_group(groups, test_fraction, rng)
    y_train = y[train].copy()
    if control:
        y_train = rng.permutation(y_train)
    if not regression:
        if np.unique(y_train).size < 2:
            raise ValueError(f"y: target {target!r} has one class in the training split; it cannot be probed")
        rows = upsample(y_train, rng, max_rows)
        x_fit, y_fit = x[train][rows], y_train[rows]
    else:
        x_fit, y_fit = x[train], y_train.astype(np.float64)
    scaler = robust_scaler(x[train])
    if not zscore:
        keep = x.shape[1] - passthrough
        scaler.mean_[:keep] = 0.0
        scaler.scale_[:keep] = 1.0
    cut = x_fit.shape[1] - passthrough
    pca = None
    if pca_dims is not None and pca_dims < min(x_fit.shape[0], cut):
        pca = PCA(n_components=pca_dims, random_state=seed).fit(scaler.transform(x[train])[:, :cut])
    probe = FittedProbe(scaler, pca, _model(kind, regression, seed, mlp_epochs), regression, passthrough)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        probe.model.fit(probe._features(x_fit), y_fit)  # type: ignore[attr-defined]
    pred = probe.predict(x[test])
    score = ProbeScore(
        target=target,
        layer=layer,
        position=position,
        kind=kind,
        control=control,
        regression=regression,
        n_train=int(train.size),
        n_test=int(test.size),
        n_classes=0 if regression else int(np.unique(y_train).size),
    )
    test_groups = groups[test]
    if regression:
        truth = y[test].astype(float)
        pred = np.asarray(pred, dtype=float).reshape(truth.shape)

        def r2_of(rows: np.ndarray) -> float:
            # sklearn scores a constant axis 1.0 (perfect) or 0.0 (force_finite): a held-out grid's goal
            # is one cell, so goal_xy on one grid would read 0.5 and mean nothing. Undefined instead.
            t = truth[rows]
            return float(r2_score(t, pred[rows])) if np.ptp(t, axis=0).min() > 0 else float("nan")

        r2 = r2_of(np.arange(truth.shape[0]))
        score.r2 = r2 if np.isfinite(r2) else None
        score.mae = float(mean_absolute_error(truth, pred))
        if truth.ndim == 2:
            score.cell_error = float(np.linalg.norm(pred - truth, axis=1).mean())

        score.interval = bootstrap_interval(r2_of, test_groups, seed=seed)
    else:
        vals, counts = np.unique(y[train], return_counts=True)
        majority = vals[int(np.argmax(counts))]
        score.accuracy = float(accuracy_score(y[test], pred))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            score.balanced_accuracy = float(balanced_accuracy_score(y[test], pred))
        score.majority_baseline = float(np.mean(y[test] == majority))
        truth_c = y[test]

        def bal_acc(rows: np.ndarray) -> float:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                return float(balanced_accuracy_score(truth_c[rows], pred[rows]))

        score.interval = bootstrap_interval(bal_acc, test_groups, seed=seed)
    return score, probe

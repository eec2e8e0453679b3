"""Probe fitting on synthetic activations with planted signals."""

from __future__ import annotations

import numpy as np
import pytest

from interleaf.probes import ProbeKind, fit_probe, split_by_group


def synthetic(n: int = 800, d: int = 64, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d))
    groups = np.repeat(np.arange(n // 40), 40)  # 20 "grids" of 40 steps
    return x, groups


def test_split_keeps_each_grid_on_one_side() -> None:
    groups = np.repeat(np.arange(8), 5)
    train, test = split_by_group(groups, 0.25, np.random.default_rng(0))
    assert set(groups[train]).isdisjoint(groups[test])
    assert len(set(groups[test])) == 2 and train.size + test.size == groups.size
    with pytest.raises(ValueError, match="groups"):
        split_by_group(np.zeros(5), 0.25, np.random.default_rng(0))


def test_linear_probe_finds_a_planted_linear_signal_and_control_stays_at_chance() -> None:
    x, groups = synthetic()
    rng = np.random.default_rng(1)
    w = rng.normal(size=(x.shape[1], 4))
    y = np.argmax(x @ w, axis=1)  # 4 balanced-ish classes, linear in x
    x = x * rng.uniform(0.1, 10, size=x.shape[1])  # unequal scales: z-scoring must cope
    score, _ = fit_probe(x, y, groups, kind="linear", pca_dims=None, target="planted")
    control, _ = fit_probe(x, y, groups, kind="linear", pca_dims=None, control=True, target="planted")
    assert score.accuracy > 0.85
    assert control.accuracy < 0.45  # chance is ~0.25
    assert score.n_classes == 4 and score.n_test > 0


def test_mlp_beats_linear_on_a_planted_nonlinear_signal() -> None:
    x, groups = synthetic(n=1200, d=16, seed=2)
    y = ((x[:, 0] > 0) ^ (x[:, 1] > 0)).astype(int)  # XOR: no linear readout exists
    lin, _ = fit_probe(x, y, groups, kind=ProbeKind.LINEAR, pca_dims=None)
    mlp, _ = fit_probe(x, y, groups, kind=ProbeKind.MLP, pca_dims=None, mlp_epochs=200)
    ctl, _ = fit_probe(x, y, groups, kind=ProbeKind.MLP, pca_dims=None, control=True, mlp_epochs=200)
    assert lin.accuracy < 0.65
    assert mlp.accuracy > 0.8
    assert ctl.accuracy < 0.65


def test_regression_probe_and_its_control() -> None:
    x, groups = synthetic(seed=3)
    y = 3.0 * x[:, 5] - 2.0 * x[:, 7] + 0.1 * np.random.default_rng(4).normal(size=x.shape[0])
    score, probe = fit_probe(x, y, groups, kind="linear", regression=True, pca_dims=None)
    control, _ = fit_probe(x, y, groups, kind="linear", regression=True, pca_dims=None, control=True)
    assert score.r2 > 0.8 and score.mae is not None
    assert control.r2 < 0.2
    assert probe.predict(x[:3]).shape == (3,)


def test_minority_classes_are_upsampled() -> None:
    x, groups = synthetic(seed=5)
    y = (x[:, 0] > 1.5).astype(int)  # ~7% positives, linear
    score, _ = fit_probe(x, y, groups, kind="linear", pca_dims=None)
    assert score.balanced_accuracy > 0.8  # without balancing the minority class would be starved


def test_errors_name_the_field() -> None:
    x, groups = synthetic(n=80)
    with pytest.raises(ValueError, match="x/y/groups"):
        fit_probe(x, np.zeros(3), groups)
    with pytest.raises(ValueError, match="one class"):
        fit_probe(x, np.zeros(80), groups)

"""The study report: markdown tables (``report.md``) and PNG plots (``plots/``)."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np

from interleaf.probes.bootstrap import Interval, mean_interval, too_few
from interleaf.probes.metrics import GridMetrics
from interleaf.probes.probe import ProbeScore
from interleaf.probes.records import StudyReport

WARN = "⚠"
"""Marks a figure that rests on too few samples to mean anything (see interleaf.probes.bootstrap)."""

BEHAVIOUR_COLUMNS = ("action_accuracy", "success", "spl", "mean_entropy", "mean_jsd", "ece")


def _f(v: float | None, digits: int = 3) -> str:
    return "–" if v is None else f"{v:.{digits}f}"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return [*out, ""]


def _mean(ms: list[GridMetrics], field: str) -> float:
    vals = [getattr(m, field) for m in ms if getattr(m, field) is not None]
    return float(np.mean(vals)) if vals else float("nan")


def _ci(value: float | None, interval: Interval | None, digits: int = 2) -> str:
    """``value [low, high]``, with the too-few-samples mark when the interval carries a warning."""
    if value is None:
        return "–"
    text = f"{value:.{digits + 1}f}"
    if interval is not None and interval.low is not None and interval.high is not None:
        text += f" [{interval.low:.{digits}f}, {interval.high:.{digits}f}]"
    if interval is not None and interval.warning:
        text += f" {WARN}"
    return text


def mean_with_ci(ms: list[GridMetrics], field: str) -> str:
    """The mean of ``field`` over grids with its grid-bootstrap interval (one row per grid)."""
    vals = [(m.grid_id, getattr(m, field)) for m in ms if getattr(m, field) is not None]
    if not vals:
        return "–"
    mean, interval = mean_interval(np.array([v for _, v in vals]), np.array([g for g, _ in vals]))
    # A grid's metric pools its trajectories: the rows the figure rests on are those trajectories.
    rows = sum(m.n_trajectories for m in ms)
    interval.n_rows = rows
    interval.warning = too_few(interval.n_groups, rows)
    return _ci(mean, interval)


def behaviour_rows(metrics: list[GridMetrics]) -> list[list[str]]:
    """Mean behavioural metrics per (variant, size, density) over base grids, each with a 95 % CI."""
    cells: dict[tuple, list[GridMetrics]] = defaultdict(list)
    for m in metrics:
        if m.transform == "base":
            cells[(m.variant, m.size, m.density if m.density is not None else -1.0)].append(m)
    rows = []
    for (variant, size, density), ms in sorted(cells.items()):
        d = "–" if density < 0 else f"{density:g}"
        rows.append([variant, str(size), d, str(len(ms))] + [mean_with_ci(ms, c) for c in BEHAVIOUR_COLUMNS])
    return rows


def score_value(s: ProbeScore) -> float:
    """The headline number of a probe: balanced accuracy, or R² for regression; NaN where it is
    undefined (a regression target constant over the held-out rows)."""
    value = s.r2 if s.regression else s.balanced_accuracy
    return float("nan") if value is None else float(value)


def score_ci(s: ProbeScore | None) -> str:
    """A probe's headline figure with its interval and warning mark; ``n/a`` where it is undefined."""
    if s is None:
        return "–"
    value = score_value(s)
    if not np.isfinite(value):
        return "n/a (held-out target constant)"
    return _ci(value, s.interval)


def probe_rows(scores: list[ProbeScore]) -> list[list[str]]:
    """One row per (target, layer, position, kind): probe vs its shuffled-label control, with 95 % CIs."""
    real = {(s.target, s.layer, s.position, s.kind.value): s for s in scores if not s.control}
    ctl = {(s.target, s.layer, s.position, s.kind.value): s for s in scores if s.control}
    rows = []
    for key in sorted(real, key=lambda k: (k[0], k[1] or 0, k[2] or "", k[3])):
        s, c = real[key], ctl.get(key)
        if s.regression:
            detail = f"MAE {_f(s.mae, 2)}"
            if s.cell_error is not None:
                detail = f"cell error {_f(s.cell_error, 2)} / ctl {_f(c.cell_error if c else None, 2)}"
            rows.append([*map(str, key), "R²", score_ci(s), score_ci(c), "–", detail])
        else:
            rows.append(
                [
                    *map(str, key),
                    "bal. acc",
                    score_ci(s),
                    score_ci(c),
                    _f(s.majority_baseline),
                    f"acc {_f(s.accuracy)} / ctl {_f(c.accuracy if c else None)}",
                ]
            )
    return rows


def warning_lines(report: StudyReport) -> list[str]:
    """One line per distinct too-few-samples warning, naming the figures it applies to (``behaviour``,
    ``probes <targets>``, ``policy consistency``)."""
    figures: dict[str, set[str]] = defaultdict(set)
    for s in report.probe_scores:
        if s.interval is not None and s.interval.warning:
            figures[s.interval.warning].add(f"probes {s.target}")
    for c in report.consistency:
        if c.interval is not None and c.interval.warning:
            figures[c.interval.warning].add("policy consistency")
    base = [m for m in report.grid_metrics if m.transform == "base"]
    w = too_few(len(base), sum(m.n_trajectories for m in base))
    if w:
        figures[w].add("behaviour")
    return sorted(f"{_figure_list(names)}: {warning}" for warning, names in figures.items())


def _figure_list(names: set[str]) -> str:
    """``behaviour, probes agent_xy, distance`` from {"behaviour", "probes agent_xy", "probes distance"}."""
    probes = sorted(n.removeprefix("probes ") for n in names if n.startswith("probes "))
    others = sorted(n for n in names if not n.startswith("probes "))
    return ", ".join([*others, *([f"probes {', '.join(probes)}"] if probes else [])])


def render_markdown(report: StudyReport) -> str:
    c = report.config
    lines = [
        "# Goal-directedness probe study",
        "",
        f"- model: `{report.model}` at {report.engine_url}; hidden states: **{report.hidden_state_source}**",
        f"- sizes {c.sizes}, densities {c.densities}, {c.grids} grids per cell, {c.trajectories} trajectories "
        f"per grid, variants {c.variants or 'none'}, transforms {c.transforms or 'none'}",
        f"- temperature {c.temperature}, layers {c.layers}, last {c.last_k} tokens, PCA {c.pca_dims}, "
        f"test share of grids {c.test_fraction}, seed {c.seed}",
        f"- reasoning: {f'up to {c.reasoning_chars} characters' if c.reasoning_chars > 0 else 'off'}; "
        f"coordinates in the prompt: {'yes' if c.coordinates else 'no'}",
        f"- {report.n_grids} grids, {report.n_steps} steps, {report.invalid_answers} invalid answers; "
        f"agent {report.agent_s:.0f} s, probes {report.probe_s:.0f} s, total {report.wall_s:.0f} s",
        "",
        "Every figure is `value [95 % CI]`, the interval from a bootstrap over grids (held-out grids for "
        f"probes); {WARN} marks a figure on too few grids or rows to mean anything.",
        "",
    ]
    warns = warning_lines(report)
    if warns:
        lines += [f"## {WARN} Too few samples", "", *[f"- {w}" for w in warns], ""]
    lines += [
        "## Behaviour (means over base grids)",
        "",
        *_table(["variant", "size", "density", "grids", *BEHAVIOUR_COLUMNS], behaviour_rows(report.grid_metrics)),
    ]
    keyed = [m for m in report.grid_metrics if m.key_pickup is not None]
    if keyed:
        by_v: dict[str, list[GridMetrics]] = defaultdict(list)
        for m in keyed:
            by_v[m.variant].append(m)
        rows = [
            [v, str(len(ms)), _f(_mean(ms, "key_pickup")), _f(_mean(ms, "success")), _f(_mean(ms, "spl"))]
            for v, ms in sorted(by_v.items())
        ]
        lines += ["## Key variants", "", *_table(["variant", "grids", "key pick-up", "success", "SPL"], rows)]
    if report.paired_tests:
        rows = [
            [
                t.transform,
                t.metric,
                str(t.n_pairs),
                _f(t.mean_base),
                _f(t.mean_transformed),
                _f(t.statistic, 1),
                _f(t.p_value),
            ]
            for t in report.paired_tests
        ]
        lines += [
            "## Transforms vs base (Wilcoxon signed-rank, paired by grid)",
            "",
            *_table(["transform", "metric", "pairs", "base", "transformed", "W", "p"], rows),
        ]
    if report.probe_scores:
        lines += [
            "## Probes (held-out grids) vs shuffled-label control",
            "",
            "Balanced accuracy for classification targets, R² for distance and coordinates (agent_xy, goal_xy: "
            "R² averaged over x and y; cell error = mean distance in cells); 'majority' is the accuracy of "
            "always answering the most frequent training label.",
            "",
            *_table(
                ["target", "layer", "position", "kind", "metric", "probe", "control", "majority", "detail"],
                probe_rows(report.probe_scores),
            ),
        ]
    if report.consistency:
        rows = [
            [
                str(s.layer),
                s.position,
                s.kind,
                str(s.n_steps),
                _f(s.decoded_cell_accuracy),
                _ci(s.optimal_on_decoded, s.interval),
                _f(s.optimal_on_true),
            ]
            for s in report.consistency
        ]
        lines += [
            "## Policy consistency (actions optimal on the decoded map)",
            "",
            *_table(
                ["layer", "position", "map probe", "steps", "cell acc", "optimal on decoded", "optimal on true"], rows
            ),
        ]
    if report.notes:
        lines += ["## Notes", "", *[f"- {n}" for n in report.notes], ""]
    lines += ["## Plots", "", "![probes](plots/probes.png)", "", "![behaviour](plots/behaviour.png)", ""]
    return "\n".join(lines)


def plot_probes(scores: list[ProbeScore], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    targets = sorted({s.target for s in scores})
    if not targets:
        return
    cols = min(4, len(targets))
    rows = int(np.ceil(len(targets) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3.2 * rows), squeeze=False)
    for ax, target in zip(axes.flat, targets, strict=False):
        for (position, kind), color in zip(
            [("pre", "linear"), ("pre", "mlp"), ("post", "linear"), ("post", "mlp")],
            ["tab:blue", "tab:orange", "tab:green", "tab:red"],
            strict=True,
        ):
            for control in (False, True):
                pts = sorted(
                    (s.layer, score_value(s))
                    for s in scores
                    if s.target == target and s.position == position and s.kind.value == kind and s.control == control
                )
                if pts:
                    xs, ys = zip(*pts, strict=True)
                    ax.plot(
                        xs,
                        ys,
                        color=color,
                        linestyle=":" if control else "-",
                        marker="o",
                        markersize=3,
                        label=f"{position} {kind}" + (" ctl" if control else ""),
                    )
        regression = any(s.regression for s in scores if s.target == target)
        ax.set_title(target)
        ax.set_xlabel("layer")
        ax.set_ylabel("R²" if regression else "balanced accuracy")
    for ax in list(axes.flat)[len(targets) :]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_behaviour(metrics: list[GridMetrics], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plain = [m for m in metrics if m.variant == "plain" and m.transform == "base"]
    if not plain:
        return
    sizes = sorted({m.size for m in plain})
    dens = sorted({m.density for m in plain if m.density is not None})
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.4))
    for ax, field in zip(axes, ("action_accuracy", "success", "mean_entropy"), strict=True):
        grid = np.full((len(sizes), len(dens)), np.nan)
        for i, s in enumerate(sizes):
            for j, d in enumerate(dens):
                grid[i, j] = _mean([m for m in plain if m.size == s and m.density == d], field)
        im = ax.imshow(grid, cmap="viridis", aspect="auto", vmin=0, vmax=2 if field == "mean_entropy" else 1)
        ax.set_xticks(range(len(dens)), [f"{d:g}" for d in dens])
        ax.set_yticks(range(len(sizes)), [str(s) for s in sizes])
        ax.set_xlabel("wall density")
        ax.set_ylabel("size")
        ax.set_title(field)
        for i in range(len(sizes)):
            for j in range(len(dens)):
                ax.text(j, i, _f(grid[i, j], 2), ha="center", va="center", color="w", fontsize=8)
        fig.colorbar(im, ax=ax)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_report(report: StudyReport, out: Path) -> Path:
    """Write ``report.md`` and ``plots/*.png`` into ``out``; returns the markdown path."""
    plots = out / "plots"
    plots.mkdir(parents=True, exist_ok=True)
    plot_probes(report.probe_scores, plots / "probes.png")
    plot_behaviour(report.grid_metrics, plots / "behaviour.png")
    md = out / "report.md"
    md.write_text(render_markdown(report))
    return md


def _pooled(metrics: list[GridMetrics], field: str, density: float | None = None) -> str:
    ms = [m for m in metrics if m.transform == "base" and (density is None or m.density == density)]
    return mean_with_ci(ms, field)


CONSISTENCY_HEADER = [
    "model",
    "layer",
    "position",
    "map probe",
    "steps",
    "cell acc",
    "optimal on decoded",
    "optimal on true",
]


def render_comparison(reports: dict[str, StudyReport]) -> str:
    """Studies side by side (e.g. base model vs navigator): behaviour and probes, each with its 95 % CI."""
    names = list(reports)
    lines = [
        "# Goal-directedness: " + " vs ".join(names),
        "",
        *[
            f"- **{n}**: `{r.model}`, {r.n_grids} grids, {r.n_steps} steps, agent {r.agent_s:.0f} s, "
            f"probes {r.probe_s:.0f} s"
            for n, r in reports.items()
        ],
        "",
        f"`value [95 % CI]` from a bootstrap over grids; {WARN} = too few samples to mean anything.",
        "",
        "## Behaviour (base grids)",
        "",
    ]
    densities = sorted({m.density for r in reports.values() for m in r.grid_metrics if m.density is not None})
    rows = []
    for field in BEHAVIOUR_COLUMNS:
        for d in [None, *densities] if len(densities) > 1 else [None]:
            label = "all" if d is None else f"d={d:g}"
            rows.append([field, label, *[_pooled(r.grid_metrics, field, d) for r in reports.values()]])
    lines += _table(["metric", "grids", *names], rows)
    keys = sorted(
        {(s.target, s.layer, s.position, s.kind.value) for r in reports.values() for s in r.probe_scores},
        key=lambda k: (k[0], k[1] or 0, k[2] or "", k[3]),
    )
    if keys:
        index = {
            n: {(s.target, s.layer, s.position, s.kind.value, s.control): s for s in r.probe_scores}
            for n, r in reports.items()
        }
        rows = []
        for k in keys:
            row = [*map(str, k)]
            for n in names:
                row += [score_ci(index[n].get((*k, False))), score_ci(index[n].get((*k, True)))]
            rows.append(row)
        header = ["target", "layer", "position", "kind"]
        for n in names:
            header += [f"{n} probe", f"{n} control"]
        lines += [
            "## Probes on held-out grids (balanced accuracy; R² for distance, agent_xy, goal_xy)",
            "",
            *_table(header, rows),
        ]
    cons = [(n, c) for n, r in reports.items() for c in r.consistency]
    if cons:
        rows = [
            [n, str(c.layer), c.position, c.kind, str(c.n_steps), _f(c.decoded_cell_accuracy),
             _ci(c.optimal_on_decoded, c.interval), _f(c.optimal_on_true)]
            for n, c in cons
        ]  # fmt: skip
        lines += [
            "## Policy consistency",
            "",
            *_table(CONSISTENCY_HEADER, rows),
        ]
    warns = sorted({f"{n}: {w}" for n, r in reports.items() for w in warning_lines(r)})
    if warns:
        lines += [f"## {WARN} Too few samples", "", *[f"- {w}" for w in warns], ""]
    return "\n".join(lines)

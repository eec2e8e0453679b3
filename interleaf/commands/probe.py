"""``interleaf probe run``: the goal-directedness study (grid world, behaviour, hidden-state probes)."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime
from pathlib import Path

import typer

app = typer.Typer(help="Goal-directedness probes of an agent in a grid world.", no_args_is_help=True)


def _ints(text: str, name: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise typer.BadParameter(f"{name}: {text!r} is not a comma-separated list of integers") from None


def _floats(text: str, name: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise typer.BadParameter(f"{name}: {text!r} is not a comma-separated list of numbers") from None


def _names(text: str) -> list[str]:
    return [v.strip() for v in text.split(",") if v.strip()]


@app.command("run")
def run(
    sizes: str = typer.Option("7,9", help="Grid sizes N (odd), comma-separated."),
    densities: str = typer.Option("0,0.4,1.0", help="Wall densities in [0, 1]; 1 is a maze without cycles."),
    grids: int = typer.Option(4, help="Grids per (size, density)."),
    trajectories: int = typer.Option(3, help="Sampled trajectories per grid."),
    variants: str = typer.Option("", help="Key variants to add: keydoor,keynodoor,twopathkey."),
    transforms: str = typer.Option("", help="Transforms of each base grid: rotate,reflect,transpose,swap."),
    layers: str = typer.Option("7,15,23,29", help="Decoder layers (0-based) to capture."),
    temperature: float = typer.Option(1.0, help="Sampling temperature (> 0: trajectories differ)."),
    reasoning_chars: int = typer.Option(0, help="Allow this many characters of free reasoning before the answer."),
    concurrency: int = typer.Option(8, help="Trajectories in flight at once."),
    seed: int = typer.Option(0, help="Seed of grids, sampling and probe splits."),
    pca_dims: int = typer.Option(64, help="PCA components before probing (0: none)."),
    engine_url: str | None = typer.Option(None, help="SGLang-protocol server; default: start the embedded engine."),
    out: Path | None = typer.Option(None, help="Output folder; default runs/probes/<UTC time>."),
) -> None:
    """Run the study and write report.md, report.json, plots/ and the raw artefacts to OUT."""
    from rich.console import Console

    from interleaf.probes import StudyConfig, run_study
    from interleaf.settings import runs_dir

    console = Console()
    config = StudyConfig(
        sizes=_ints(sizes, "--sizes"),
        densities=_floats(densities, "--densities"),
        grids=grids,
        trajectories=trajectories,
        variants=_names(variants),
        transforms=_names(transforms),
        layers=_ints(layers, "--layers"),
        temperature=temperature,
        reasoning_chars=reasoning_chars,
        concurrency=concurrency,
        seed=seed,
        pca_dims=pca_dims or None,
        engine_url=engine_url,
    )
    folder = out or runs_dir() / "probes" / datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    console.print(f"probe study → {folder}")

    def progress(done: int) -> None:
        console.print(f"  trajectories done: {done}", highlight=False)

    try:
        with contextlib.ExitStack() as stack:
            if config.engine_url is None:
                from interleaf.runtime.engine.process import EngineProcess

                console.print("starting the embedded engine (no --engine-url) …")
                proc = stack.enter_context(EngineProcess(startup_timeout_s=300.0))
                config = config.model_copy(update={"engine_url": proc.url})
            report = run_study(config, folder, progress=progress)
    except (ValueError, RuntimeError) as exc:
        console.print(f"[red]probe run failed:[/red] {exc}")
        raise typer.Exit(1) from None
    console.print(
        f"{report.n_grids} grids, {report.n_steps} steps in {report.wall_s:.0f} s; report: {folder / 'report.md'}"
    )


@app.command("report")
def report(folder: Path = typer.Argument(..., help="A study folder written by `interleaf probe run`.")) -> None:
    """Recompute metrics, probes and the report from a study folder's stored artefacts (no engine)."""
    from interleaf.probes import StudyConfig, StudyReport, analyse

    config = StudyConfig.model_validate_json((folder / "config.json").read_text())
    old = folder / "report.json"
    model, url, agent_s = "unknown", "unknown", 0.0
    if old.exists():
        prev = StudyReport.model_validate_json(old.read_text())
        model, url, agent_s = prev.model, prev.engine_url, prev.agent_s
    analyse(folder, config, model=model, engine_url=url, agent_s=agent_s)
    typer.echo(str(folder / "report.md"))

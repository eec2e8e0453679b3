"""``interleaf report <file.jsonl | job-id>``: accuracy, tokens, tool calls, PTE and patterns per model × suite."""

from __future__ import annotations

import re
from pathlib import Path

import typer


def report(
    source: str = typer.Argument(
        ..., help="A trajectories JSONL file, or a job id (<runs_dir>/<job-id>/trajectories.jsonl)."
    ),
    fmt: str = typer.Option("md", "--format", "-f", help="Output format: md, json or csv."),
    hardware: str = typer.Option(
        "H100-PCIe",
        "--hardware",
        help="Hardware profile for PTE: H100-PCIe, H100-SXM, H200, A100, V100, RTX-4090, or cpu (measured).",
    ),
    model: str | None = typer.Option(
        None,
        "--model-profile",
        help="A shipped model profile name or a HF config.json path to use for every trajectory.",
    ),
    png: Path | None = typer.Option(
        None, "--png", help="Also write a chart (PTE per variant, pattern frequency) here."
    ),
    output: Path | None = typer.Option(None, "--output", "-o", help="Write the report to this file instead of stdout."),
) -> None:
    """Tabulate a job's trajectories per model × suite."""
    from interleaf.telemetry import (
        FORMATS,
        MODEL_PROFILES,
        ModelProfile,
        build_report,
        find_hardware_profile,
        hardware_ranking,
        load_trajectories,
        plot_report,
        render_report,
    )

    if fmt not in FORMATS:
        raise typer.BadParameter(f"--format {fmt!r} is not supported; use one of {', '.join(FORMATS)}")
    path = _trajectories_file(source)
    try:
        trajectories = load_trajectories(path, empty_ok=False)
        hw = find_hardware_profile(hardware)
    except (FileNotFoundError, ValueError) as exc:
        raise typer.BadParameter(str(exc)) from None
    profile = None
    if model:
        try:
            profile = MODEL_PROFILES.get(model) or ModelProfile.from_hf_config(model)
        except (OSError, ValueError, KeyError) as exc:
            raise typer.BadParameter(
                f"{model!r} is neither a shipped model profile ({', '.join(sorted(MODEL_PROFILES))}) nor a readable "
                f"HF config.json ({type(exc).__name__}: {exc})",
                param_hint="--model-profile",
            ) from None
    rows = build_report(trajectories, hardware=hw, model=profile)
    text = render_report(rows, fmt, ranking=hardware_ranking(trajectories, model=profile))
    if output:
        output.write_text(text)
        typer.echo(f"wrote {output}", err=True)
    else:
        typer.echo(text, nl=False)
    if png:
        typer.echo(f"wrote {plot_report(rows, png)}", err=True)


def _trajectories_file(source: str) -> Path:
    """``source`` as a file, else the trajectories of the job it names (``<runs dir>/<job-id>/``); a usage
    error naming what was looked for when it is neither."""
    from interleaf.runtime.jobs.spec import JOB_ID_PATTERN
    from interleaf.settings import runs_dir

    path = Path(source)
    if path.exists():
        return path
    if re.fullmatch(JOB_ID_PATTERN, source) and not source.endswith((".jsonl", ".gz")):
        job_file = runs_dir() / source / "trajectories.jsonl"
        if job_file.exists():
            return job_file
        raise typer.BadParameter(
            f"no job {source!r} in the runs directory: {job_file} does not exist (set INTERLEAF_RUNS_DIR to the "
            "directory the job ran with, or pass its trajectories.jsonl)",
            param_hint="SOURCE",
        )
    raise typer.BadParameter(
        f"no such file: {source!r} (pass a trajectories JSONL file, or a job id to read "
        f"{runs_dir()}/<job-id>/trajectories.jsonl)",
        param_hint="SOURCE",
    )

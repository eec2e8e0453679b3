"""``interleaf report <file.jsonl | job-id>``: accuracy, tokens, tool calls, PTE and patterns per model × suite."""

from __future__ import annotations

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
        help="Hardware profile for PTE: H100-PCIe, H200, A100, V100, RTX-4090, or cpu (measured).",
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
    try:
        trajectories = load_trajectories(source)
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

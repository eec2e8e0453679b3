"""``interleaf probe run``: the goal-directedness study (grid world, behaviour, hidden-state probes)."""

from __future__ import annotations

import contextlib
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from pydantic import ValidationError

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


def _invalid_config(exc: ValidationError, raw: dict[str, str]) -> typer.BadParameter:
    """StudyConfig's validation errors as one usage error (exit 2): per problem the option, the value as
    given and what is allowed, joined by '; '."""
    problems = []
    for err in exc.errors():
        field = str(err["loc"][0]) if err["loc"] else ""
        msg = str(err["ctx"]["error"]) if err["type"] == "value_error" else err["msg"]
        if field:
            flag = "--" + field.replace("_", "-")
            problems.append(f"{flag} {raw.get(field, err['input'])!r}: {msg}{CLI_HINTS.get(field, '')}")
        else:  # a rule across options: the message names them
            problems.append(_as_options(msg))
    return typer.BadParameter("; ".join(problems))


CLI_HINTS = {"pca_dims": " (0: no PCA)"}
"""What the CLI adds to a field's error: values it maps before StudyConfig sees them."""


def _as_options(msg: str) -> str:
    for field in ("grids", "sizes", "densities", "variants"):
        msg = msg.replace(f"{field}=", f"--{field} ").replace(f"raise {field}", f"raise --{field}")
    return msg


@app.command("run")
def run(
    sizes: str = typer.Option("7,9", help="Grid sizes N (odd), comma-separated."),
    densities: str = typer.Option("0,0.4,1.0", help="Wall densities in [0, 1]; 1 is a maze without cycles."),
    grids: int = typer.Option(4, help="Grids per (size, density)."),
    trajectories: int = typer.Option(3, help="Sampled trajectories per grid."),
    variants: str = typer.Option("", help="Key variants to add: keydoor,keynodoor,twopathkey."),
    transforms: str = typer.Option("", help="Transforms of each base grid: rotate,reflect,transpose,swap."),
    layers: str = typer.Option(
        "9,19,29", help="Decoder layers (0-based) to capture; default: the paper's relative depths (7/15/23 of 24)."
    ),
    temperature: float = typer.Option(1.0, help="Sampling temperature (> 0: trajectories differ)."),
    reasoning_chars: int = typer.Option(
        32, help="Reasoning line of up to this many characters before the answer ('post' is captured after it); 0: off."
    ),
    coordinates: bool = typer.Option(False, help="State the agent's (x, y) in the prompt (off: read from the grid)."),
    concurrency: int = typer.Option(8, help="Trajectories in flight at once."),
    seed: int = typer.Option(0, help="Seed of grids, sampling and probe splits."),
    pca_dims: int = typer.Option(64, help="PCA components before probing (0: none)."),
    test_fraction: float = typer.Option(0.25, help="Share of base grids held out for probe testing."),
    probe_kinds: str = typer.Option("linear,mlp", help="Probe families: linear, mlp."),
    engine_url: str | None = typer.Option(None, help="SGLang-protocol server; default: start the embedded engine."),
    timeout_s: float = typer.Option(120.0, help="Per-request HTTP timeout (raise it on a busy CPU)."),
    lora_path: str | None = typer.Option(None, help="Serve the embedded engine with this LoRA adapter merged."),
    navigator: str | None = typer.Option(
        None,
        help="Also run the study with this adapter (e.g. probes/data/navigator-lora) and write OUT/comparison.md: "
        "base model vs navigator side by side.",
    ),
    out: Path | None = typer.Option(
        None, help="Output folder, new or without a study (see --overwrite); default runs/probes/<UTC time>."
    ),
    overwrite: bool = typer.Option(
        False, help="Replace the study already in OUT (its artefacts are replaced once the new agent phase is done)."
    ),
) -> None:
    """Run the study and write report.md, report.json, plots/ and the raw artefacts to OUT."""
    from pydantic import ValidationError
    from rich.console import Console

    from interleaf.probes import StudyConfig, run_study
    from interleaf.probes.study import check_out_folder
    from interleaf.settings import runs_dir

    # Everything is checked here, before an engine is started or a file is written.
    raw = {"sizes": sizes, "densities": densities, "variants": variants, "transforms": transforms}
    raw |= {"layers": layers, "probe_kinds": probe_kinds}
    try:
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
            coordinates=coordinates,
            concurrency=concurrency,
            seed=seed,
            pca_dims=None if pca_dims == 0 else pca_dims,
            test_fraction=test_fraction,
            probe_kinds=_names(probe_kinds),
            engine_url=engine_url,
            timeout_s=timeout_s,
        )
    except ValidationError as exc:
        raise _invalid_config(exc, raw) from None
    if navigator is not None and (engine_url is not None or lora_path is not None):
        raise typer.BadParameter("--navigator starts the embedded engine twice; leave out --engine-url and --lora-path")
    for flag, adapter in (("--lora-path", lora_path), ("--navigator", navigator)):
        if adapter is not None and not (Path(adapter) / "adapter_config.json").is_file():
            raise typer.BadParameter(
                f"{adapter!r} has no adapter_config.json (expected a PEFT adapter folder, e.g. "
                "probes/data/navigator-lora)",
                param_hint=flag,
            )
    folder = out or runs_dir() / "probes" / datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    # With --navigator the arms go to OUT/base and OUT/navigator, the comparison to OUT itself.
    targets = [folder] if navigator is None else [folder, folder / "base", folder / "navigator"]
    try:
        for target in targets:
            check_out_folder(target, overwrite=overwrite)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--out") from None
    try:  # now, not after the agent phase: its results are written only once it is done
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise typer.BadParameter(f"{folder}: cannot create the folder ({exc.strerror})", param_hint="--out") from None
    if not os.access(folder, os.W_OK):
        raise typer.BadParameter(f"{folder}: the folder is not writable", param_hint="--out")

    console = Console()
    console.print(f"probe study → {folder}")

    def progress(done: int) -> None:
        console.print(f"  trajectories done: {done}", highlight=False)

    arms = {"base": lora_path} if navigator is None else {"base": None, "navigator": navigator}
    if navigator is not None:  # an old comparison would describe arms about to be replaced (`probe compare` redoes it)
        (folder / "comparison.md").unlink(missing_ok=True)
    reports = {}
    try:
        for name, adapter in arms.items():
            target = folder if navigator is None else folder / name
            with contextlib.ExitStack() as stack:
                cfg = config
                if config.engine_url is None:
                    from interleaf.runtime.engine.process import EngineProcess

                    extra = ("--lora-path", adapter) if adapter else ()
                    console.print(f"starting the embedded engine{' with ' + adapter if adapter else ''} …")
                    proc = stack.enter_context(EngineProcess(*extra, startup_timeout_s=300.0))
                    cfg = config.model_copy(update={"engine_url": proc.url})
                reports[name] = run_study(cfg, target, progress=progress, overwrite=overwrite)
            r = reports[name]
            console.print(f"{name}: {r.n_grids} grids, {r.n_steps} steps in {r.wall_s:.0f} s; {target / 'report.md'}")
    except (ValueError, RuntimeError, OSError) as exc:
        console.print(f"[red]probe run failed:[/red] {exc}")
        raise typer.Exit(1) from None
    if navigator is not None:
        from interleaf.probes.report import render_comparison

        (folder / "comparison.md").write_text(render_comparison(reports))
        console.print(f"comparison: {folder / 'comparison.md'}")


@app.command("train-navigator")
def train_navigator(
    out: Path = typer.Option(Path("probes/data/navigator-lora"), help="Adapter folder to write."),
    grids: int = typer.Option(400, help="Training grids (one BFS-optimal trajectory each)."),
    sizes: str = typer.Option("7", help="Grid sizes of the training grids."),
    densities: str = typer.Option("0", help="Wall densities of the training grids (0: open rooms)."),
    seed: int = typer.Option(1000, help="Seed of the training grids (keep it apart from study seeds)."),
    rank: int = typer.Option(8, help="LoRA rank."),
    lr: float = typer.Option(3e-3, help="Learning rate."),
    batch_size: int = typer.Option(4, help="Sequences per optimiser step."),
    epochs: float = typer.Option(1.0, help="Passes over the examples."),
    max_minutes: float = typer.Option(30.0, help="Wall-clock budget of the optimisation loop."),
    threads: int = typer.Option(2, help="torch threads (1 on a CPU shared with other jobs: see docs/probes.md)."),
    model_path: str | None = typer.Option(None, help="Base model (HF dir or .gguf); default SmolLM2-135M-Instruct."),
) -> None:
    """Train the positive-control navigator: a LoRA adapter on BFS-optimal grid trajectories (CPU)."""
    import shlex
    import sys

    from interleaf.probes.navigator import NavigatorConfig
    from interleaf.probes.navigator import train_navigator as train
    from interleaf.runtime.engine.model_store import resolve_model

    config = NavigatorConfig(
        sizes=_ints(sizes, "--sizes"),
        densities=_floats(densities, "--densities"),
        grids=grids,
        seed=seed,
        rank=rank,
        lr=lr,
        batch_size=batch_size,
        epochs=epochs,
        max_minutes=max_minutes,
        threads=threads,
    )
    base = resolve_model(model_path).path

    def progress(step: int, total: int, loss: float) -> None:
        typer.echo(f"step {step}/{total} loss {loss:.4f}")

    command = "interleaf probe " + " ".join(shlex.quote(a) for a in sys.argv[sys.argv.index("train-navigator") :])
    log = train(config, base, out, command=command, progress=progress)
    typer.echo(
        f"{log.examples} examples, {log.optimiser_steps} steps ({log.epochs_done:.2f} epochs) in {log.wall_s:.0f} s; "
        f"loss {log.loss_first:.3f} -> {log.loss_last:.3f}; adapter {log.adapter_bytes / 1e6:.1f} MB in {out}"
    )


@app.command("compare")
def compare(
    folders: list[Path] = typer.Argument(..., help="Study folders with report.json, e.g. OUT/base OUT/navigator."),
    out: Path | None = typer.Option(None, help="Write the markdown here (default: print it)."),
) -> None:
    """Studies side by side: behaviour and probes with their 95 % CIs (names are the folder names)."""
    from interleaf.probes import StudyReport
    from interleaf.probes.records import read_json
    from interleaf.probes.report import render_comparison

    reports = {}
    for f in folders:
        path = f / "report.json"
        if not path.exists():
            raise typer.BadParameter(f"{f}: no report.json; run `interleaf probe run` (or `probe report`) first")
        try:
            reports[f.name] = read_json(path, StudyReport)
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="FOLDERS") from None
    text = render_comparison(reports)
    if out is None:
        typer.echo(text)
    else:
        out.write_text(text)
        typer.echo(str(out))


@app.command("report")
def report(folder: Path = typer.Argument(..., help="A study folder written by `interleaf probe run`.")) -> None:
    """Recompute metrics, probes and the report from a study folder's stored artefacts (no engine)."""
    from interleaf.probes import StudyReport, analyse
    from interleaf.probes.records import read_json
    from interleaf.probes.study import load_config

    try:
        config = load_config(folder)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="FOLDER") from None
    old = folder / "report.json"
    model, url, agent_s = "unknown", "unknown", 0.0
    if old.exists():
        try:
            prev = read_json(old, StudyReport)
            model, url, agent_s = prev.model, prev.engine_url, prev.agent_s
        except ValueError as exc:  # the report is what this command rewrites: say so and go on
            typer.echo(f"ignoring the previous report: {exc}", err=True)
    try:
        analyse(folder, config, model=model, engine_url=url, agent_s=agent_s)
    except ValueError as exc:
        typer.echo(f"interleaf probe report: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(str(folder / "report.md"))

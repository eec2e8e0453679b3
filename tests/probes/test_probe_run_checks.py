"""`interleaf probe run` checks its options and its output folder before anything starts: a bad value is
one usage error naming the option, the value and what is allowed (exit 2), and an existing study is
never overwritten without ``--overwrite``. None of these tests starts an engine."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import httpx
import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

import interleaf.runtime.engine.process as engine_process
from interleaf.commands import probe as probe_cmd
from interleaf.probes import StudyConfig, StudyReport, build_grids, run_study
from interleaf.probes.study import run_trajectories
from tests.probes.test_probe_study import scripted_engine

SMALL = ["--sizes", "7", "--densities", "0", "--grids", "2", "--trajectories", "1", "--layers", "3"]


@pytest.fixture
def engine_starts(monkeypatch) -> list[tuple[str, ...]]:
    """Every start of the embedded engine `probe run` attempts (none may happen in these tests)."""
    starts: list[tuple[str, ...]] = []

    class NoEngine:
        def __init__(self, *args: str, **kwargs: object) -> None:
            starts.append(args)
            raise RuntimeError("the test's engine stand-in was started")

    monkeypatch.setattr(engine_process, "EngineProcess", NoEngine)
    return starts


def probe_run(*args: str):
    res = CliRunner().invoke(probe_cmd.app, ["run", *args], env={"COLUMNS": "400"})
    return res, " ".join(re.sub(r"[│╭╮╰╯─]", " ", res.output).split())


BAD_OPTIONS = {
    # the review's hang: Semaphore(0) waited forever once the engine was up
    "concurrency 0": (["--concurrency", "0", "--sizes", "7", "--densities", "0", "--grids", "2",
                       "--trajectories", "1", "--reasoning-chars", "0"],
                      "--concurrency 0: Input should be greater than or equal to 1"),
    "grids 0": (["--grids", "0"], "--grids 0: Input should be greater than or equal to 1"),
    "trajectories -1": (["--trajectories", "-1"], "--trajectories -1: Input should be greater than or equal to 1"),
    "no sizes": (["--sizes", ""], "gives 0 base grid(s); probes are tested on held-out grids, so a study needs "
                                  "at least 2: raise --grids or add sizes, densities or variants"),
    "one base grid": (["--sizes", "7", "--densities", "0", "--grids", "1"], "--grids 1 × 1 size(s)"),
    "even size": (["--sizes", "7,8"], "--sizes '7,8': 8 is not a supported size; use odd sizes >= 5"),
    "size twice": (["--sizes", "7,7"], "--sizes '7,7': 7 is listed twice"),
    "density above 1": (["--densities", "0,1.5"], "--densities '0,1.5': 1.5 is outside [0, 1]"),
    "unknown variant": (["--variants", "foo"], "--variants 'foo': 'foo' is not one of keydoor, keynodoor, twopathkey"),
    "plain is no key variant": (["--variants", "plain"], "'plain' is not one of keydoor, keynodoor, twopathkey"),
    "unknown transform": (["--transforms", "spin"], "'spin' is not one of rotate, reflect, transpose, swap"),
    "negative layer": (["--layers", "-1"], "--layers '-1': -1 is not a layer index"),
    "no probe kind": (["--probe-kinds", ""], "--probe-kinds '': names no probe family; use one or more of linear, mlp"),
    "zero temperature": (["--temperature", "0"], "--temperature 0.0: Input should be greater than 0"),
    "test fraction 1": (["--test-fraction", "1"], "--test-fraction 1.0: Input should be less than 1"),
    "negative pca": (["--pca-dims", "-1"], "--pca-dims -1: Input should be greater than or equal to 1 (0: no PCA)"),
    "negative seed": (["--seed", "-3"], "--seed -3: Input should be greater than or equal to 0"),
    "missing adapter": (["--lora-path", "no/such/adapter"], "'no/such/adapter' has no adapter_config.json"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(BAD_OPTIONS))
def test_a_bad_option_is_one_usage_error_before_any_engine_starts(
    case: str, engine_starts: list, tmp_path: Path
) -> None:
    args, needle = BAD_OPTIONS[case]
    res, text = probe_run(*args, "--out", str(tmp_path / "study"))
    assert res.exit_code == 2, text
    assert needle in text, text
    assert "Traceback" not in text and "starting the embedded engine" not in text
    assert engine_starts == []
    assert not (tmp_path / "study").exists()  # nothing written either


def test_the_config_model_bounds_every_field_and_names_it() -> None:
    """The same checks for API users, who never see the CLI."""
    assert StudyConfig().base_grids == 2 * 3 * 4
    for bad in [{"concurrency": 0}, {"grids": 0}, {"trajectories": 0}, {"sizes": [9, 6]}, {"densities": [-0.1]},
                {"variants": ["foo"]}, {"layers": []}, {"last_k": 0}, {"next_k": 0}, {"timeout_s": float("inf")},
                {"densities": [float("nan")]}, {"pca_dims": 0}, {"test_fraction": 0.0}]:  # fmt: skip
        with pytest.raises(ValidationError, match=next(iter(bad))):
            StudyConfig(**bad)
    # A key-variant-only study (no plain densities) is allowed.
    assert StudyConfig(densities=[], variants=["keydoor"], sizes=[7], grids=2).base_grids == 2


def test_trajectories_refuse_a_zero_concurrency_that_skipped_validation() -> None:
    """model_copy does not validate: Semaphore(0) would wait forever, so the runner checks too."""
    config = StudyConfig(sizes=[7], densities=[0.0], grids=2, trajectories=1, layers=[3], reasoning_chars=0)
    config = config.model_copy(update={"concurrency": 0})
    run = run_trajectories(
        config, "http://scripted", build_grids(config), transport=httpx.MockTransport(scripted_engine)
    )
    with pytest.raises(ValueError, match="concurrency: 0"):
        asyncio.run(asyncio.wait_for(run, timeout=10))


def precious(folder: Path) -> dict[str, bytes]:
    """The review's folder: a study's steps and report, which a failed run used to truncate."""
    (folder / "plots").mkdir(parents=True)
    (folder / "steps.jsonl").write_text('{"precious":1}\n')
    (folder / "report.json").write_text('{"x":1}\n')
    return snapshot(folder)


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize(
    ("extra", "needle"),
    [(["--grids", "0"], "--grids 0: Input should be"),
     (SMALL, "{folder} already holds a study ({folder}/steps.jsonl exists); pass a new folder, or --overwrite")],
    ids=["bad option", "good options"],
)  # fmt: skip
def test_run_refuses_a_folder_that_holds_a_study(
    extra: list[str], needle: str, engine_starts: list, tmp_path: Path
) -> None:
    folder = tmp_path / "precious"
    before = precious(folder)
    res, text = probe_run(*extra, "--out", str(folder))
    assert res.exit_code == 2, text
    assert needle.format(folder=folder) in text, text
    assert engine_starts == []
    assert snapshot(folder) == before


def test_navigator_run_refuses_a_folder_whose_arm_holds_a_study(engine_starts: list, tmp_path: Path) -> None:
    (tmp_path / "out" / "navigator").mkdir(parents=True)
    (tmp_path / "out" / "navigator" / "config.json").write_text("{}")
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text("{}")
    res, text = probe_run(*SMALL, "--navigator", str(adapter), "--out", str(tmp_path / "out"))
    assert res.exit_code == 2, text
    assert f"{tmp_path / 'out' / 'navigator' / 'config.json'} exists" in text, text
    assert engine_starts == []


def test_run_study_refuses_an_existing_study_without_touching_it(tmp_path: Path) -> None:
    before = precious(tmp_path)
    config = StudyConfig(sizes=[7], densities=[0.0], grids=2, trajectories=1, layers=[3], engine_url="http://scripted")

    def no_engine(request: httpx.Request) -> httpx.Response:
        raise AssertionError("the engine was called before the folder was checked")

    with pytest.raises(ValueError, match=re.escape(f"{tmp_path} already holds a study")):
        run_study(config, tmp_path, transport=httpx.MockTransport(no_engine))
    assert snapshot(tmp_path) == before


def test_overwrite_keeps_the_old_study_until_the_new_agent_phase_is_done(tmp_path: Path) -> None:
    before = precious(tmp_path)
    config = StudyConfig(sizes=[7], densities=[0.0], grids=2, trajectories=1, layers=[3], engine_url="http://scripted")

    def failing_engine(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/generate":
            raise httpx.ConnectError("engine gone", request=request)
        return scripted_engine(request)

    with pytest.raises(RuntimeError, match="engine gone"):  # `probe run` prints it as one line, exit 1
        run_study(config, tmp_path, overwrite=True, transport=httpx.MockTransport(failing_engine))
    assert snapshot(tmp_path) == before


def test_overwrite_replaces_every_artefact_of_the_old_study(tmp_path: Path) -> None:
    precious(tmp_path)
    (tmp_path / "comparison.md").write_text("an old comparison")
    config = StudyConfig(sizes=[7], densities=[0.0], grids=2, trajectories=1, layers=[3], pca_dims=None,
                         probe_kinds=["linear"], reasoning_chars=0, engine_url="http://scripted")  # fmt: skip
    report = run_study(config, tmp_path, overwrite=True, transport=httpx.MockTransport(scripted_engine))
    assert StudyReport.model_validate_json((tmp_path / "report.json").read_text()) == report
    steps = [json.loads(line) for line in (tmp_path / "steps.jsonl").read_text().splitlines()]
    assert len(steps) == report.n_steps > 0 and "precious" not in steps[0]
    assert not (tmp_path / "comparison.md").exists()  # it described the old study

"""Reading trajectory files that are not what they should be: every bad input is one error naming the
file (and the line and field where there are some), through the API and through ``interleaf report``."""

from __future__ import annotations

import gzip
import json
import math
import re

import numpy as np
import pytest
from typer.testing import CliRunner

from interleaf.telemetry import (
    HARDWARE_PROFILES,
    MODEL_PROFILES,
    TurnArrays,
    build_report,
    dump_trajectory,
    load_trajectories,
    pte_breakdown,
    render_report,
)
from interleaf.telemetry.records import MAX_TOKENS, SCHEMA_VERSION, Trajectory
from tests.telemetry import telemetry_fixtures as fx
from tests.telemetry.test_report import _cli


def record() -> dict:
    """A valid record as a JSON object (engine figures on both turns)."""
    return json.loads(dump_trajectory(fx.held()))


def write(path, *records: dict) -> str:
    # json.dumps writes NaN and Infinity bare, as a careless producer would.
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return str(path)


def report(*args: str):
    return CliRunner().invoke(_cli(), ["report", *args], env={"COLUMNS": "400", "TERMINAL_WIDTH": "400"})


def assert_one_line_error(res, *needles: str) -> None:
    assert res.exit_code not in (0, 1, 130), res.output  # a usage error, not a crash or "aborted"
    assert res.exception is None or isinstance(res.exception, SystemExit), res.exception
    text = " ".join(re.sub(r"[│╭╮╰╯─]", " ", res.output).split())  # the error box, unwrapped
    assert "Traceback" not in text and "aborted" not in text
    for needle in needles:
        assert needle in text, text


IMPOSSIBLE = [
    ("prompt_tokens", -500, "greater than or equal to 0"),
    ("cached_tokens", -1, "greater than or equal to 0"),
    ("completion_tokens", -3, "greater than or equal to 0"),
    ("prompt_tokens", 2**63 - 1, f"less than or equal to {MAX_TOKENS}"),  # int64 would wrap negative
    ("prompt_tokens", 10**30, f"less than or equal to {MAX_TOKENS}"),  # OverflowError in numpy before
    ("cached_tokens", 131, "exceeds prompt_tokens=130"),
    ("batch_size", float("nan"), "finite number"),
    ("batch_size", float("inf"), "finite number"),  # made the weight term silently 0
    ("batch_size", -5, "greater than or equal to 1"),  # silently clamped to 1 before
    ("batch_size", 0, "greater than or equal to 1"),
]


@pytest.mark.parametrize(("field", "value", "why"), IMPOSSIBLE)
def test_impossible_cache_figures_are_refused_naming_file_line_and_field(tmp_path, field, value, why) -> None:
    bad = record()
    bad["turns"][1]["cache"][field] = value
    path = write(tmp_path / "t.jsonl", record(), bad)
    with pytest.raises(ValueError) as err:
        load_trajectories(path)
    text = str(err.value)
    assert "t.jsonl:2 is not a Trajectory record: turns[1].cache" in text and why in text
    assert "\n" not in text
    res = report(path)
    assert_one_line_error(res, "t.jsonl:2", "turns[1].cache", why)


@pytest.mark.parametrize(
    ("field", "value", "why"),
    [
        ("score", 7.5, "less than or equal to 1"),
        ("score", float("nan"), "finite number"),
        ("started_at", float("nan"), "finite number"),
        ("ended_at", -1e308, "greater than or equal to 0"),
    ],
)
def test_impossible_trajectory_fields_are_refused(tmp_path, field, value, why) -> None:
    bad = record()
    bad[field] = value
    assert_one_line_error(report(write(tmp_path / "t.jsonl", bad)), "t.jsonl:1", f"{field}=", why)


def test_figures_assigned_after_validation_are_refused_not_clamped() -> None:
    """A record's fields can be assigned without validation; the PTE arrays check what they read."""
    t = fx.held()
    t.turns[1].cache.batch_size = -5.0
    with pytest.raises(ValueError, match=r"trajectory 'held' turn 1: cache\.batch_size=-5\.0"):
        TurnArrays.from_trajectories([t])
    t = fx.held()
    t.turns[0].cache.prompt_tokens = 10**30
    with pytest.raises(ValueError, match=r"turn 0: cache\.prompt_tokens=1000000000000000000000000000000"):
        TurnArrays.from_trajectories([t])


def test_a_job_folder_reads_its_trajectories_and_another_folder_is_one_error(tmp_path) -> None:
    job = tmp_path / "job-1"
    job.mkdir()
    (job / "trajectories.jsonl").write_text(dump_trajectory(fx.held()) + "\n")
    assert [t.id for t in load_trajectories(job)] == ["held"]
    res = report(str(job))
    assert res.exit_code == 0, res.output
    assert "| SmolLM2-135M-Instruct | arith | 1 |" in res.stdout
    (tmp_path / "other").mkdir()
    assert_one_line_error(report(str(tmp_path / "other")), "other is a folder without a trajectories.jsonl")


def test_compression_is_told_by_content_and_broken_gzip_names_the_file(tmp_path) -> None:
    plain_named_gz = tmp_path / "plain.jsonl.gz"
    plain_named_gz.write_text(dump_trajectory(fx.held()) + "\n")
    assert [t.id for t in load_trajectories(plain_named_gz)] == ["held"]
    assert report(str(plain_named_gz)).exit_code == 0

    body = "".join(dump_trajectory(t) + "\n" for t in (fx.held(), fx.recompute(), fx.confirmatory()))
    truncated = tmp_path / "cut.jsonl.gz"
    truncated.write_bytes(gzip.compress(body.encode())[:-40])
    with pytest.raises(ValueError, match=r"cut\.jsonl\.gz:\d+: the gzip stream is truncated"):
        load_trajectories(truncated)
    assert_one_line_error(report(str(truncated)), "cut.jsonl.gz", "truncated")  # was "aborted", rc 130

    corrupt = tmp_path / "corrupt.jsonl.gz"
    data = bytearray(gzip.compress(body.encode()))
    data[20:40] = b"\x00" * 20
    corrupt.write_bytes(bytes(data))
    assert_one_line_error(report(str(corrupt)), "corrupt.jsonl.gz", "gzip stream is")


def test_encodings_bom_and_line_endings(tmp_path) -> None:
    line = dump_trajectory(fx.held())
    bom = tmp_path / "bom.jsonl"
    bom.write_bytes(b"\xef\xbb\xbf" + line.encode() + b"\r\n")
    assert [t.id for t in load_trajectories(bom)] == ["held"]
    assert report(str(bom)).exit_code == 0
    bad = tmp_path / "latin1.jsonl"
    bad.write_bytes(line.encode() + b"\n" + b'{"id": "caf\xe9"}\n')
    with pytest.raises(ValueError, match=r"latin1\.jsonl:2: byte 0xe9 at column 12 is not UTF-8"):
        load_trajectories(bad)
    assert_one_line_error(report(str(bad)), "latin1.jsonl:2", "not UTF-8")


def test_bad_json_and_non_records_name_the_line(tmp_path) -> None:
    good = dump_trajectory(fx.held())
    cases = {
        "cut.jsonl": (good + "\n" + good[:500] + "\n", "cut.jsonl:2", "Invalid JSON"),
        "array.jsonl": ("[]\n", "array.jsonl:1", "not a JSON object"),
        "empty_object.jsonl": ("{}\n", "empty_object.jsonl:1", "id: required field missing"),
        "wrong_type.jsonl": (good.replace('"delta_ids":[', '"delta_ids":"abc","x":['), "wrong_type.jsonl:1", "ids="),
    }
    for name, (text, where, why) in cases.items():
        (tmp_path / name).write_text(text)
        assert_one_line_error(report(str(tmp_path / name)), where, why)


def test_an_empty_file_is_an_error_for_the_report(tmp_path) -> None:
    for name, text in {"empty.jsonl": "", "blank.jsonl": "\n  \n\n"}.items():
        (tmp_path / name).write_text(text)
        assert load_trajectories(tmp_path / name) == []  # the SDK reads an empty file as no trajectories
        with pytest.raises(ValueError, match=f"no trajectories in .*{name}"):
            load_trajectories(tmp_path / name, empty_ok=False)
        assert_one_line_error(report(str(tmp_path / name)), f"no trajectories in {tmp_path / name}")


def test_records_carry_a_schema_version_and_newer_ones_are_refused(tmp_path) -> None:
    assert json.loads(dump_trajectory(fx.held()))["schema_version"] == SCHEMA_VERSION
    old = record()
    del old["schema_version"]  # written before the field existed
    assert load_trajectories(write(tmp_path / "old.jsonl", old))[0].schema_version == 1
    newer = record()
    newer["schema_version"] = SCHEMA_VERSION + 1
    assert_one_line_error(
        report(write(tmp_path / "new.jsonl", newer)),
        "new.jsonl:1",
        f"schema_version {SCHEMA_VERSION + 1} was written by a newer interleaf",
        "upgrade interleaf",
    )


def test_report_json_never_carries_a_bare_nan() -> None:
    rows = build_report([fx.held()])
    rows[0].summary.pte_mean["evict_all"] = float("nan")
    rows[0].summary.episode_wall_p50_s = float("inf")

    def refuse(constant: str) -> float:
        raise AssertionError(f"bare {constant} in the JSON output")

    data = json.loads(render_report(rows, "json"), parse_constant=refuse)
    assert data[0]["summary"]["pte_mean"]["evict_all"] is None
    assert data[0]["summary"]["episode_wall_p50_s"] is None


def test_markdown_cells_are_escaped_and_pricing_is_said(tmp_path) -> None:
    t = fx.held()
    t.suite = "ar|ith\n| evil"
    other = fx.silent_python()
    other.model = "my-private-model"
    hidden = fx.held()
    hidden.model = "Smol\u202eLM\u0000"  # a right-to-left override and a NUL: shown, not obeyed
    md = render_report(build_report([t, other, hidden]), "md")
    assert "| ar\\|ith \\| evil |" in md and "| Smol\\u202eLM\\u0000 |" in md
    table = md.splitlines()[2:7]  # header, separator, the three rows: the same number of cell borders
    assert len({len(re.findall(r"(?<!\\)\|", line)) for line in table}) == 1, table
    assert "No PTE (–) for Smol\\u202eLM\\u0000, my-private-model: no model profile" in md
    path = tmp_path / "t.jsonl"
    path.write_text(dump_trajectory(fx.held()) + "\n")
    res = report(str(path), "--model-profile", "Qwen3-32B")
    assert res.exit_code == 0, res.output
    assert "SmolLM2-135M-Instruct × arith priced as Qwen3-32B." in res.stdout
    qwen = pte_breakdown(fx.held(), MODEL_PROFILES["Qwen3-32B"], HARDWARE_PROFILES["H100-PCIe"])
    assert f"{qwen.evict_all:,.0f}" in res.stdout


def test_csv_says_why_a_cell_is_empty() -> None:
    constrained = fx.confirmatory()
    constrained.tool_calls_constrained = True
    other = fx.silent_python()
    other.model = "my-private-model"
    csv_text = render_report(build_report([constrained, other]), "csv")
    header, *lines = csv_text.splitlines()
    rows = [dict(zip(header.split(","), line.split(","), strict=True)) for line in lines]
    smol = next(r for r in rows if r["model"] == "SmolLM2-135M-Instruct")
    assert smol["tool_format_collapse_freq"] == "n/a (constrained decoding)"
    private = next(r for r in rows if r["model"] == "my-private-model")
    assert private["unprofiled_models"] == "my-private-model" and private["pte_evict_all"] == ""


def test_report_help_lists_every_hardware_profile() -> None:
    from interleaf.telemetry.hardware_profile import EXTRA_HARDWARE_PROFILES

    res = report("--help")
    text = " ".join(res.output.split())
    for name in [*HARDWARE_PROFILES, *EXTRA_HARDWARE_PROFILES]:
        assert name in text


def test_valid_records_keep_loading() -> None:
    t = Trajectory.model_validate_json(dump_trajectory(fx.held()))
    assert t == fx.held()
    assert math.isfinite(np.sum(TurnArrays.from_trajectories([t]).prompt_tokens))

"""Trace files (Mooncake JSONL + sessions) and the workload generators."""

from __future__ import annotations

import gzip
import json

import pytest

from interleaf.runtime.simulate import SHAPES, TraceError, dump_trace, generate, load_trace, parse_trace, sessions


def test_malformed_line_names_its_number(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_text(
        '{"timestamp": 0, "input_length": 10, "output_length": 2, "hash_ids": [1]}\n\n{"input_length": 5, oops}\n'
    )
    with pytest.raises(TraceError, match=r"t\.jsonl:3: not valid JSON"):
        load_trace(path)


def test_bad_field_names_line_and_field():
    lines = ['{"input_length": 10, "output_length": 2}', '{"input_length": -4, "output_length": 2}']
    with pytest.raises(TraceError, match=r"<trace>:2: input_length: .*-4"):
        parse_trace(lines)
    with pytest.raises(TraceError, match=r":1: output_length: Field required"):
        parse_trace(['{"input_length": 3}'])


def test_aiperf_lines_become_sessions_with_pauses():
    # The shape `aiperf synthesize agentic-code` writes: timestamp on the first turn, delay (ms) on later ones.
    rows = [
        {"session_id": "b", "input_length": 700, "output_length": 5, "hash_ids": [9, 10], "timestamp": 2000.0},
        {"session_id": "a", "input_length": 53238, "output_length": 80, "hash_ids": [0, 1], "timestamp": 0.0,
         "group_id": 7},
        {"session_id": "a", "input_length": 673, "output_length": 658, "hash_ids": [200064, 200065],
         "delay": 19358.3},
    ]  # fmt: skip
    scripts = sessions(parse_trace([json.dumps(r) for r in rows]))
    assert [s.session_id for s in scripts] == ["a", "b"]
    a, b = scripts
    assert b.start_s == 2.0
    assert [t.input_length for t in a.turns] == [53238, 673]
    assert a.turns[1].tool_pause_s == pytest.approx(19.3583)
    assert a.peak_context == 53238 + 80 + 673 + 658


def test_generated_workload_round_trips_and_keeps_its_shape(tmp_path):
    trace = generate("swe", 40, seed=3)
    path = tmp_path / "swe.jsonl"
    dump_trace(trace, path)
    assert load_trace(path) == trace
    shape = SHAPES["swe"]
    for script in sessions(trace):
        assert shape.turns[0] <= len(script.turns) <= shape.turns[1]
        first, *rest = script.turns
        assert shape.first_turn[0] <= first.input_length <= shape.first_turn[1]
        assert first.hash_ids == [0] and first.block_tokens == shape.shared_prefix  # the shared prefix
        assert all(shape.tool_output[0] <= t.input_length <= shape.tool_output[1] for t in rest)
        assert all(shape.output[0] <= t.output_length <= shape.output[1] for t in script.turns)
    pauses = sorted(t.tool_pause_s for t in trace if t.tool_pause_s is not None)
    assert 2.0 < pauses[len(pauses) // 2] < 4.5  # median 3 s


def test_unknown_workload_is_named():
    with pytest.raises(ValueError, match="workload='nope'"):
        generate("nope", 1)


def test_fit_context_cuts_sessions_at_the_window():
    from interleaf.runtime.simulate import fit_context

    rows = [
        {"session_id": "a", "turn": 0, "input_length": 60, "output_length": 10},
        {"session_id": "a", "turn": 1, "input_length": 20, "output_length": 10},  # 100: fits exactly
        {"session_id": "a", "turn": 2, "input_length": 1, "output_length": 1},  # 102: cut
        {"session_id": "b", "turn": 0, "input_length": 200, "output_length": 1},  # nothing fits: dropped
        {"session_id": "c", "turn": 0, "input_length": 5, "output_length": 1},
    ]
    scripts, cut = fit_context(sessions(parse_trace([json.dumps(r) for r in rows])), 100)
    assert [(s.session_id, len(s.turns)) for s in scripts] == [("a", 2), ("c", 1)] and cut == 2


@pytest.mark.parametrize(
    ("line", "says"),
    [
        ('{"timestamp": NaN, "input_length": 5, "output_length": 1}', "timestamp: Input should be a finite number"),
        ('{"timestamp": Infinity, "input_length": 5, "output_length": 1}', "timestamp: Input should be a finite"),
        ('{"input_length": 5, "output_length": 1, "tool_pause_s": Infinity}', "tool_pause_s: Input should be a fin"),
        ('{"input_length": true, "output_length": 1}', "input_length: a number is expected, not true/false"),
        (
            '{"input_length": 100000000000000000000000, "output_length": 1}',
            "input_length: Input should be less than or equal to 1073741824",
        ),
        (
            '{"input_length": 5, "output_length": 1, "block_tokens": 1000000000000}',
            "block_tokens: Input should be less",
        ),
    ],
)
def test_values_a_trace_cannot_mean_are_refused_naming_line_and_field(line, says):
    # Each was read before: NaN as a timestamp (a 3,600 s makespan), true as 1 token, a 10^12-token hash block
    # (58 GiB of content written out).
    with pytest.raises(TraceError, match=r"^<trace>:2: ") as refused:
        parse_trace(['{"input_length": 3, "output_length": 1}', line])
    assert says in str(refused.value)


@pytest.mark.parametrize(
    ("turns", "says"),
    [
        ([0, 0], r"<trace>:2: session 'a' repeats turn 0 \(first at <trace>:1\)"),
        ([0, 5], r"<trace>:2: session 'a' has turn 5 but no turn 1; .* without gaps"),
        ([1, 2], r"<trace>:1: session 'a' has turn 1 but no turn 0"),
        ([0, None], r"<trace>:2: session 'a' numbers some of its turns and not others"),
    ],
)
def test_turn_numbers_that_repeat_or_leave_a_gap_are_refused(turns, says):
    rows = [{"session_id": "a", "input_length": 5, "output_length": 1, "turn": t} for t in turns]
    with pytest.raises(TraceError, match=says):
        parse_trace([json.dumps({k: v for k, v in r.items() if v is not None}) for r in rows])


def test_a_line_without_session_id_never_joins_an_explicit_session():
    # Line 2 has no session id; its synthetic one was "line-1", the explicit id of line 1: one two-turn session.
    lines = [
        '{"session_id": "line-1", "input_length": 5, "output_length": 1}',
        '{"input_length": 6, "output_length": 1}',
    ]
    scripts = sessions(parse_trace(lines))
    assert len(scripts) == 2 and len({s.session_id for s in scripts}) == 2
    assert sorted(len(s.turns) for s in scripts) == [1, 1]


def test_a_gzipped_trace_is_read_and_bytes_that_are_not_utf8_name_file_and_line(tmp_path):
    plain = b'{"input_length": 5, "output_length": 1}\n{"input_length": 7, "output_length": 2}\n'
    (tmp_path / "t.jsonl.gz").write_bytes(gzip.compress(plain))
    assert [t.input_length for t in load_trace(tmp_path / "t.jsonl.gz")] == [5, 7]
    (tmp_path / "bad.jsonl").write_bytes(plain + b'{"input_length": \x8b5, "output_length": 1}\n')
    with pytest.raises(TraceError, match=r"bad\.jsonl:3: byte 0x8b at column 18 is not UTF-8"):
        load_trace(tmp_path / "bad.jsonl")
    (tmp_path / "cut.jsonl.gz").write_bytes(gzip.compress(plain)[:20])
    with pytest.raises(TraceError, match=r"cut\.jsonl\.gz: the gzip stream is corrupt or truncated"):
        load_trace(tmp_path / "cut.jsonl.gz")


def test_a_trajectory_file_is_read_as_a_recorded_job_and_errors_stay_short(tmp_path):
    from interleaf.telemetry.records import Trajectory, Turn, TurnTimings
    from interleaf.telemetry.trajectory_file import dump_trajectory

    turns = [
        Turn(index=0, delta_ids=[7] * 30, completion_ids=[8] * 5, text="a"),
        Turn(index=1, delta_ids=[7] * 10, completion_ids=[8] * 3, text="b", timings=TurnTimings(pause_s=2.5)),
    ]
    path = tmp_path / "trajectories.jsonl"
    path.write_text(dump_trajectory(Trajectory(id="job-1", turns=turns)) + "\n")
    (script,) = sessions(load_trace(path))
    assert script.session_id == "job-1"
    assert [(t.input_length, t.output_length, t.tool_pause_s) for t in script.turns] == [(30, 5, None), (10, 3, 2.5)]
    # A line that is no request at all: the value is cut, the message stays one short line (it was 14.7 KB).
    with pytest.raises(TraceError) as refused:
        parse_trace([json.dumps({"input_length": {"x": "y" * 10_000}, "output_length": 1})])
    assert len(str(refused.value)) < 200 and "..." in str(refused.value)

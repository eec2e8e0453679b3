"""Trace files (Mooncake JSONL + sessions) and the workload generators."""

from __future__ import annotations

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

"""``interleaf.text``: the one lone-surrogate check every text boundary uses."""

from __future__ import annotations

import json

from interleaf.text import lone_surrogate, printable, surrogate_problem


def test_a_lone_surrogate_is_found_where_it_is_and_a_pair_is_text() -> None:
    assert lone_surrogate("ok é 😀") is None and surrogate_problem("ok") is None
    text = json.loads('"ab\\udfffc"')  # valid JSON, not Unicode
    assert lone_surrogate(text) == 2
    assert surrogate_problem(text) == "a lone surrogate U+DFFF at index 2"
    assert lone_surrogate(json.loads('"\\ud83d\\ude00"')) is None  # a complete pair is one character
    assert printable(text) == "ab\\udfffc" and printable(text).encode("utf-8")

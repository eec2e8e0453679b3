"""Prefix stability: the ids sent for turn n are a prefix of turn n+1's (never re-rendered).

A property test on the Conversation; the same invariant on what the real engine saw is
``test_backend_engine.py::test_engine_sees_growing_prefixes``.
"""

from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from interleaf.runtime.client import Conversation

token_lists = st.lists(st.integers(min_value=0, max_value=49151), min_size=0, max_size=12)
turns = st.lists(
    st.tuples(token_lists.filter(bool), token_lists, st.sampled_from(["keep", "open", "drop"])),
    min_size=1,
    max_size=8,
)


@settings(max_examples=200, deadline=None)
@given(turns)
def test_turn_prompts_are_prefixes_whatever_the_session_does(script) -> None:
    conv = Conversation()
    seen: list[list[int]] = []
    for i, (delta, output, session_event) in enumerate(script):
        if session_event == "open":
            conv.attach_session(f"s{i}")
        elif session_event == "drop":
            conv.detach_session()
        sent, session = conv.request(delta)
        prompt = conv.prompt(delta)
        # What the engine reconstructs: with a continued session, its held ids plus the sent delta.
        if session is not None and session.previous_rid is not None:
            assert sent == delta
        else:
            assert sent == prompt
        conv.commit(delta, output, f"r{i}")
        seen.append(prompt)
    for earlier, later in itertools.pairwise(seen):
        assert later[: len(earlier)] == earlier
    for i, prompt in enumerate(seen):
        assert conv.turn_prompt(i) == prompt
    assert conv.ids == [t for delta, out, _ in script for t in (*delta, *out)]

"""Text that is not Unicode: the one check for a lone UTF-16 surrogate, and the one way to show such text.

JSON can carry ``"\\ud800"`` (half of a surrogate pair, alone), and Python decodes it into a ``str`` that
UTF-8 cannot encode: no tokenizer, log, Redis value or subprocess can take it. Every boundary that takes
text (the engine's requests, job specs, tool arguments, tool output) asks ``lone_surrogate`` and words
its own error, naming its own field.
"""

from __future__ import annotations

__all__ = ["lone_surrogate", "printable", "surrogate_problem"]


def lone_surrogate(text: str) -> int | None:
    """The index of the first lone UTF-16 surrogate in ``text``; None when UTF-8 can encode all of it."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return exc.start
    return None


def surrogate_problem(text: str) -> str | None:
    """What is wrong with ``text`` in words (``a lone surrogate U+D800 at index 3``), None when nothing is."""
    at = lone_surrogate(text)
    return None if at is None else f"a lone surrogate U+{ord(text[at]):04X} at index {at}"


def printable(text: str) -> str:
    """``text`` with what UTF-8 cannot encode (a lone surrogate) written as a ``\\udXXX`` escape."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")

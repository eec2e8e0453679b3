"""Reading a python tool's result: stdout, stderr and how the run ended.

interleaf's python tool (and the paper's SandboxFusion agents) return ``stdout:\\n…\\n\\nstderr:\\n…``;
any other python tool's result is read as plain output.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_SANDBOX_FUSION = re.compile(r"^\s*stdout:\n(?P<stdout>.*?)\n*stderr:\n?(?P<stderr>.*)$", re.S)
# The exception line a traceback ends with ("ZeroDivisionError: division by zero").
_EXCEPTION_LINE = re.compile(r"^(?P<name>[A-Za-z_][\w.]*(?:Error|Exception|Exit|Interrupt))(?::|$)", re.M)
_SYNTAX_ERRORS = frozenset({"SyntaxError", "IndentationError", "TabError"})


@dataclass(frozen=True)
class PythonOutput:
    """A python call's result, split."""

    stdout: str
    stderr: str

    @classmethod
    def parse(cls, result: str) -> PythonOutput:
        """Split a SandboxFusion-style result; anything else is all stdout."""
        m = _SANDBOX_FUSION.match(result)
        if m is None:
            return cls(stdout=result, stderr="")
        return cls(stdout=m.group("stdout"), stderr=m.group("stderr"))

    @property
    def exception(self) -> str | None:
        """The name of the exception the run ended with, when stderr (or a plain result) holds one.
        A warning (``DeprecationWarning: …``) is not an exception."""
        text = self.stderr or self.stdout
        names = [m.group("name") for m in _EXCEPTION_LINE.finditer(text)]
        names = [n for n in names if not n.endswith("Warning")]
        if not names or ("Traceback" not in text and names[-1].split(".")[-1] not in _SYNTAX_ERRORS):
            return None
        return names[-1].split(".")[-1]

    @property
    def syntax_error(self) -> bool:
        """The code did not compile (SyntaxError, IndentationError, TabError)."""
        return self.exception in _SYNTAX_ERRORS

    @property
    def empty(self) -> bool:
        """Nothing printed and nothing raised: the code ran but showed no result (a missing print)."""
        return not self.stdout.strip() and self.exception is None


__all__ = ["PythonOutput"]

"""docs/tools.md stays true: its first example runs and produces the schema the page shows."""

from __future__ import annotations

import json
import re
from pathlib import Path

from typer.testing import CliRunner

DOC = Path(__file__).parents[2] / "docs" / "tools.md"
SAMPLE = f"{Path(__file__).with_name('tools_mcp_sample.py')}:toolset"


def test_first_example_matches_shown_schema():
    text = DOC.read_text()
    code = re.search(r"```python\n(.*?)```", text, re.S).group(1)
    namespace: dict = {}
    exec(compile(code, str(DOC), "exec"), namespace)
    convert = namespace["convert"]
    assert convert(20.0) == 68.0
    shown = re.search(r">>> convert.openai_schema\(\)\n(.*?)```", text, re.S).group(1)
    assert convert.openai_schema() == json.loads(shown)


def test_cli_list_and_call():
    from interleaf.commands.tools import app

    runner = CliRunner()
    listed = runner.invoke(app, ["list", SAMPLE])
    assert listed.exit_code == 0, listed.output
    assert [s["function"]["name"] for s in json.loads(listed.output)] == ["add", "calculator", "crash"]
    called = runner.invoke(app, ["call", SAMPLE, "add", '{"a": 1, "b": 1}'])
    assert called.exit_code == 0 and json.loads(called.output)["content"] == "2"
    bad = runner.invoke(app, ["call", SAMPLE, "nope"])
    assert json.loads(bad.output)["error_type"] == "UnknownToolError"

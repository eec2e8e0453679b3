"""docs/tools.md stays true: its first example runs and produces the schema the page shows."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
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


def test_cli_list_defaults_to_the_built_in_tools():
    from interleaf.commands.tools import app

    listed = CliRunner().invoke(app, ["list"])
    assert listed.exit_code == 0, listed.output
    assert [s["function"]["name"] for s in json.loads(listed.output)] == ["python", "calculator", "answer"]
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    assert "interleaf tools list" in readme


def test_cli_call_errors_are_one_line_and_exit_non_zero(tmp_path):
    from interleaf.commands.tools import app

    (tmp_path / "broken.py").write_text(
        "from interleaf.tools import tool\n\n"
        "@tool\ndef bug(s: str = '') -> str:\n    '''Has a bug.'''\n    raise ValueError('oops')\n"
    )
    spec = f"{tmp_path / 'broken.py'}:bug"
    runner = CliRunner()
    crashed = runner.invoke(app, ["call", spec, "bug"])
    assert crashed.exit_code == 1 and "Traceback" not in crashed.output
    assert crashed.output.strip().splitlines() == [
        "interleaf tools call: tool infrastructure failed: tool 'bug' failed with ValueError: oops (after 1 "
        "attempt(s)); raise ToolError from the tool for failures the model should see"
    ]
    for arguments in ('{"s": "a\\ud800b"}', '{"s": ' + "[" * 1000 + "]" * 1000 + "}", '{"s": 1' + "0" * 4300 + "}"):
        refused = runner.invoke(app, ["call", spec, "bug", arguments])
        assert refused.exit_code == 1 and "Traceback" not in refused.output
        assert json.loads(refused.output)["error_type"] == "ToolArgumentError"
    unknown = runner.invoke(app, ["call", SAMPLE, "nope"])
    assert unknown.exit_code == 1 and json.loads(unknown.output)["error_type"] == "UnknownToolError"


def test_cli_a_spec_naming_a_function_with_arguments_is_a_usage_error():
    from interleaf.commands.tools import app

    listed = CliRunner().invoke(app, ["list", "json:dumps"])
    shown = " ".join(listed.output.replace("│", " ").split())
    assert listed.exit_code == 2 and "Traceback" not in shown
    assert "toolset 'json:dumps': dumps is a function that needs arguments" in shown


def test_the_documented_name_rule_is_the_enforced_one():
    from interleaf.tools import tool
    from interleaf.tools.tool import _NAME

    assert "(1–64 of `A-Z a-z 0-9 _ -`" in DOC.read_text() and _NAME.pattern == r"^[A-Za-z0-9_-]{1,64}$"
    with pytest.raises(ValueError, match=r"tool name 'time\.now' is invalid"):
        tool(name="time.now")(lambda: None)

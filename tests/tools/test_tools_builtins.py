"""Built-in tools through a Toolset: python (SandboxFusion format), calculator, answer, search/visit."""

from __future__ import annotations

import math
import re
import time

import pytest

from interleaf.tools import (
    Corpus,
    Document,
    SandboxLimits,
    ToolContext,
    ToolError,
    Toolset,
    answer,
    calculator,
    make_corpus_tools,
    make_python_tool,
    python_tool,
)
from interleaf.tools.builtin.calculator import evaluate
from interleaf.tools.builtin.corpus import focus_on_goal


@pytest.fixture
def ctx(tmp_path) -> ToolContext:
    return ToolContext(episode_id="ep-builtins", scratch_dir=tmp_path)


async def test_python_tool_sandbox_fusion_format(ctx):
    ts = Toolset([python_tool])
    res = await ts.call("python", {"code": "print(6 * 7)"}, ctx)
    assert (res.content, res.is_error) == ("stdout:\n42\n\n\nstderr:\n", False)
    empty = await ts.call("python", {"code": "6 * 7"}, ctx)  # the "Lack of Tool Priors" case: no print
    assert empty.content == "stdout:\n\n\nstderr:\n"
    assert python_tool.parameters["required"] == ["code"] and python_tool.name == "python"


async def test_python_tool_error_and_files_persist(ctx):
    ts = Toolset([python_tool])
    res = await ts.call("python", {"code": "open('state.txt', 'w').write('7')\nraise ValueError('bad')"}, ctx)
    assert res.is_error and res.error_type == "ToolError"
    assert res.content.startswith("stdout:\n\n\nstderr:\nTraceback") and "ValueError: bad" in res.content
    again = await ts.call("python", {"code": "print(open('state.txt').read())"}, ctx)
    assert again.content == "stdout:\n7\n\n\nstderr:\n"


async def test_python_tool_timeout_keeps_partial_output(ctx):
    quick = make_python_tool(SandboxLimits(wall_s=1.0))
    res = await Toolset([quick]).call("python", {"code": "print('a', flush=True)\nwhile True: pass"}, ctx)
    assert res.error_type == "ToolTimeout"
    assert res.content.startswith("stdout:\na\n\n\nstderr:\n") and "wall-clock limit" in res.content


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("2 + 3 * 4", 14),
        ("(2 + 3) * 4", 20),
        ("2 ^ 10", 1024),
        ("7 // 2 + 7 % 2", 4),
        ("-3 ** 2", -9),
        ("sqrt(16) + factorial(5)", 124.0),
        ("round(pi, 3)", 3.142),
        ("comb(10, 3)", 120),
        ("log(e)", 1.0),
    ],
)
def test_calculator_evaluates(expression, expected):
    assert math.isclose(evaluate(expression), expected)


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("__import__('os')", "unknown function '__import__'"),
        ("__import__('os').system('true')", "unsupported syntax"),
        ("(1).__class__", "unsupported syntax"),
        ("1 / 0", "division by zero"),
        ("2 ** 99999999", "exponent 99999999 is too large"),
        ("10 ** 5000", "more than 4000 digits"),
        ("factorial(100000)", "factorial(100000) is not supported"),
        ("x + 1", "unknown name 'x'"),
        ("2 +", "cannot parse"),
        ("sqrt(-1)", "math domain error"),
    ],
)
def test_evaluate_refuses_with_reason(expression, message):
    with pytest.raises(ToolError, match=re.escape(message)):
        evaluate(expression)


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("1 / 0", "division by zero"),
        ("2 ^ 99999999", "exponent 99999999 is too large"),
        ("10 ^ 5000", "more than 4000 digits"),
        ("2 +", "cannot parse"),
    ],
)
async def test_calculator_refuses_with_reason(ctx, expression, message):
    res = await Toolset([calculator]).call("calculator", {"expression": expression}, ctx)
    assert res.is_error and res.error_type == "ToolError" and message in res.content


@pytest.mark.parametrize("expression", ["x + 1", "sqrt(16)", "__import__('os')", "Compute 2 + 2", "1" * 201])
async def test_calculator_schema_refuses_what_is_not_arithmetic(ctx, expression):
    res = await Toolset([calculator]).call("calculator", {"expression": expression}, ctx)
    assert res.is_error and res.error_type == "ToolArgumentError" and "field 'expression'" in res.content


async def test_calculator_reads_mod_and_caret(ctx):
    res = await Toolset([calculator]).call("calculator", {"expression": "((31 mod 34) * (17 + 75 * 27)) ^ 2"}, ctx)
    assert (res.content, res.is_error) == (str((31 % 34 * (17 + 75 * 27)) ** 2), False)


async def test_answer_tool(ctx):
    res = await Toolset([answer]).call("answer", '{"answer": "Paris"}', ctx)
    assert (res.content, res.is_error) == ("Paris", False)
    assert answer.parameters["required"] == ["answer"]


DOCS = [
    Document(url="https://wiki.local/paris", title="Paris", text="Paris is the capital of France. " * 3),
    Document(url="https://wiki.local/berlin", title="Berlin", text="Berlin is the capital of Germany."),
    Document(url="https://wiki.local/tokyo", title="Tokyo", text="Tokyo hosts the 1964 and 2020 Olympic games."),
]


async def test_search_ranks_and_formats(ctx):
    search, visit = make_corpus_tools(Corpus(DOCS))
    assert (search.name, visit.name) == ("search", "visit")
    assert search.parameters["properties"]["query"]["type"] == "array"
    res = await Toolset([search, visit]).call("search", {"query": ["capital of Germany", "olympic games"]}, ctx)
    first, second = res.content.split("\n\n")
    assert first.startswith("## Results for 'capital of Germany'\n1. [Berlin](https://wiki.local/berlin)")
    assert second.startswith("## Results for 'olympic games'\n1. [Tokyo](https://wiki.local/tokyo)")
    assert "Paris" not in second  # only documents with a positive score are listed
    none = await Toolset([search]).call("search", {"query": ["zzzqqq"]}, ctx)
    assert "No results" in none.content
    bad = await Toolset([search]).call("search", {"query": []}, ctx)
    assert bad.error_type == "ToolArgumentError" and "field 'query'" in bad.content


async def test_visit_reads_capped_pages(ctx):
    long_doc = Document(url="https://wiki.local/long", title="Long", text="a" * 20_000)
    search, visit = make_corpus_tools(Corpus([*DOCS, long_doc]), max_page_chars=1000)
    ts = Toolset([search, visit])
    res = await ts.call("visit", {"url": "https://wiki.local/berlin", "goal": "capital"}, ctx)
    assert res.content.startswith("# Berlin\nURL: https://wiki.local/berlin\n") and "capital of Germany" in res.content
    cut = await ts.call("visit", {"url": "https://wiki.local/long", "goal": "x"}, ctx)
    assert "characters of less relevant text omitted]" in cut.content and len(cut.content) < 1200
    missing = await ts.call("visit", {"url": "https://nowhere.local", "goal": "x"}, ctx)
    assert missing.error_type == "ToolError" and "No page at url 'https://nowhere.local'" in missing.content


def test_corpus_rejects_duplicate_urls():
    with pytest.raises(ValueError, match="duplicate document url"):
        Corpus([DOCS[0], DOCS[0]])


async def test_paper_tool_names(ctx):
    tools = make_corpus_tools(Corpus(DOCS), search_name="google_search_tool", visit_name="visit_tool")
    assert Toolset(tools).names == ["google_search_tool", "visit_tool"]


def test_visit_keeps_the_passages_that_match_the_goal():
    filler = "\n\n".join(f"Paragraph {i} is about nothing in particular." for i in range(40))
    text = f"Lead paragraph.\n\n{filler}\n\nThe harbour of Vessel Bay was founded in 1420.\n\n{filler}"
    out = focus_on_goal(text, "when was the harbour founded", 300)
    assert out.startswith("Lead paragraph.") and "founded in 1420" in out
    assert out.endswith("characters of less relevant text omitted]")
    assert focus_on_goal("short", "x", 300) == "short"


def test_calculator_closes_parentheses_left_open_at_the_end():
    assert evaluate("((31 mod 34) * (17 + (75 * 27))") == 31 * (17 + 75 * 27)
    with pytest.raises(ToolError, match="cannot parse"):
        evaluate("(2 + 3))")  # one too many is still an error


# --- the calculator's refusals come at once, and suggest only what it reads --------------------------


async def test_calculator_refuses_a_huge_power_before_computing_it(ctx):
    started = time.monotonic()
    res = await Toolset([calculator]).call("calculator", {"expression": "(10^3999)^9999"}, ctx)
    assert res.error_type == "ToolError" and "more than 4000 digits (about 39,986,001)" in res.content
    assert time.monotonic() - started < 1
    with pytest.raises(ToolError, match="more than 4000 digits"):
        evaluate("comb(1000000, 500000)")
    with pytest.raises(ToolError, match="the number of digits must be between"):
        evaluate("round(5, -99999999)")


@pytest.mark.parametrize("expression", ["(-8)^(1/3)", "(0 - 2) ^ 0.5"])
async def test_calculator_gives_real_results_only(ctx, expression):
    res = await Toolset([calculator]).call("calculator", {"expression": expression}, ctx)
    assert res.error_type == "ToolError" and "has no real result" in res.content and "real results only" in res.content


@pytest.mark.parametrize("expression", ["2 3", "2,3", "(2 + 3))", "2 +* 3", "1..2"])
async def test_calculator_hints_suggest_only_what_it_reads(ctx, expression):
    res = await Toolset([calculator]).call("calculator", {"expression": expression}, ctx)
    assert res.error_type == "ToolError", res
    assert res.content.endswith("use numbers, + - * / % (or mod), ^ for a power, parentheses, and round(x, n)")
    for foreign in ("Perhaps", "Did you mean", "0o", "**", "//", "functions and constants"):
        assert foreign not in res.content, res.content


async def test_calculator_reads_leading_zeros_as_pocket_calculators_do(ctx):
    res = await Toolset([calculator]).call("calculator", {"expression": "007 + 0.05 + 1.005"}, ctx)
    assert (res.content, res.is_error) == (str(7 + 0.05 + 1.005), False)


# --- the python tool --------------------------------------------------------------------------------


async def test_python_tool_at_the_episode_deadline_keeps_partial_output(tmp_path):
    ctx = ToolContext(episode_id="ep", scratch_dir=tmp_path, deadline=time.monotonic() + 3)
    res = await Toolset([python_tool]).call(
        "python", {"code": "import time\nprint('hi', flush=True)\ntime.sleep(60)"}, ctx
    )
    assert res.error_type == "ToolTimeout" and res.content.startswith("stdout:\nhi\n"), res.content
    assert "wall-clock limit" in res.content


async def test_python_tool_refuses_a_lone_surrogate_as_an_argument_error(ctx):
    res = await Toolset([python_tool]).call("python", '{"code": "print(\'a\\ud800\')"}', ctx)
    assert res.error_type == "ToolArgumentError" and "field 'code'" in res.content and "lone surrogate" in res.content


async def test_python_tool_shows_the_exit_status_and_the_end_of_a_long_output(ctx):
    ts = Toolset([make_python_tool(max_output_tokens=200)])
    code = "print('x' * 100_000)\nraise ValueError('the reason')"
    res = await ts.call("python", {"code": code}, ctx)
    assert res.is_error and res.truncated and res.content.startswith("stdout:\nxxxx")
    assert res.content.endswith("ValueError: the reason\nExit status 1."), res.content[-300:]
    silent = await ts.call("python", {"code": "import os\nos._exit(7)"}, ctx)
    assert silent.error_type == "ToolError" and silent.content == "stdout:\n\n\nstderr:\nExit status 7."

"""The benchmarks' options as a user meets them: a bad option is one line on stderr naming the option and
its value, exit status 2, no traceback, before anything (an engine, Ray, a server) starts
(``bench/options.py``). Each script runs as ``python bench/x.py`` in a subprocess, as documented; none of
these command lines gets far enough to start anything, and a 30 s limit fails the test if one does."""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"


def _options():
    spec = importlib.util.spec_from_file_location("bench_options", BENCH / "options.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


options = _options()


def run_bench(script: str, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(BENCH / script), *argv], capture_output=True, text=True, timeout=30)


@pytest.mark.parametrize(
    ("script", "argv", "says"),
    [
        # 8: Semaphore(0) hung for ever.
        ("agents.py", ["--n", "1", "--suites", "arith", "--arms", "direct", "--concurrency", "0"],
         "argument --concurrency: '0' is not an integer >= 1"),
        ("agents.py", ["--n", "0"], "argument --n: '0' is not an integer >= 1"),
        ("agents.py", ["--suites", "nope"], "--suites nope: unknown suite 'nope'"),
        ("agents.py", ["--arms", "direct,bogus"], "argument --arms: 'bogus' is not one of direct, unconstrained, full"),
        # 9: an unknown transport ran over Ray under its own name.
        ("runtime.py", ["--only", "overhead", "--calls", "3", "--transports", "channel,bogus"],
         "argument --transports: 'bogus' is not one of channel, ray"),
        ("runtime.py", ["--calls", "0"], "argument --calls: '0' is not an integer >= 1"),
        ("runtime.py", ["--episodes", "0"], "argument --episodes: '0'"),
        ("runtime.py", ["--concurrency", "0"], "argument --concurrency: '0'"),
        ("pte.py", ["abc"], "argument n_turns: 'abc' is not an integer >= 1"),
        ("pte.py", ["-5"], "argument n_turns: '-5' is not an integer >= 1"),
        ("engine.py", ["--long-sizes", "abc"], "argument --long-sizes: 'abc' is not an integer between 1 and 8192"),
        ("engine.py", ["--long-sizes", "2048,"], "argument --long-sizes: '2048,' has an empty item"),
        ("engine.py", ["--sim-sessions", "-1"], "argument --sim-sessions: '-1' is not an integer >= 1"),
        ("retention.py", ["--tool-median-s", "0"], "argument --tool-median-s: '0' is not a finite number > 0"),
        ("retention.py", ["--decode", "9", "3"], "--decode 9 3: MIN must be <= MAX"),
        ("retention.py", ["--budget-ratio", "0"], "argument --budget-ratio: '0' is not a finite number > 0"),
        ("retention.py", ["--budget-ratio", "-1"], "argument --budget-ratio: '-1'"),
        # Every episode failed, exit 0: the KV was sized below one agent's context.
        ("retention.py", ["--agents", "1", "--turns", "1", "--sim"], "--budget-ratio 0.5: the engine's KV would be"),
        ("grounding_grammar.py", ["--n", "0"], "argument --n: '0' is not an integer >= 1"),
        ("simulate_fidelity.py", ["--policies", "bogus"], "argument --policies: policy 'bogus' is not one of"),
        ("simulate_fidelity.py", ["--policies", "none,oracle"], "'oracle' exists only in the simulation"),
        ("simulate_fidelity.py", ["--agents", "0"], "argument --agents: '0' is not an integer >= 1"),
        ("simulate_fidelity.py", ["--workload", "nope"], "argument --workload: invalid choice: 'nope'"),
        ("simulate_fidelity.py", ["--gpu", "NOPE"], "argument --gpu: hardware='NOPE' is not a built-in profile"),
        ("sim_calibrate.py", ["--gpu", "NOPE"], "argument --gpu: hardware='NOPE' is not a built-in profile"),
        ("sim_calibrate.py", ["--device", "nope"], "argument --device: 'nope' is not a device timed here"),
        ("serve_health.py", ["--n", "0"], "argument --n: '0' is not an integer between 1 and"),
    ],
)  # fmt: skip
def test_a_bad_option_is_one_line_and_exit_2(script: str, argv: list[str], says: str) -> None:
    done = run_bench(script, *argv)
    assert (done.returncode, done.stdout) == (2, ""), done.stderr
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.startswith(f"bench/{script}: ") and says in done.stderr, done.stderr


def test_pte_has_help() -> None:
    done = run_bench("pte.py", "--help")
    assert done.returncode == 0 and "n_turns" in done.stdout, done.stderr


def test_parser_error_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    p = options.BenchParser(prog="bench/x.py")
    p.add_argument("--n", type=options.int_at_least(1))
    with pytest.raises(SystemExit) as exited:
        p.parse_args(["--n", "0"])
    assert exited.value.code == 2
    assert capsys.readouterr().err == (
        "bench/x.py: argument --n: '0' is not an integer >= 1 (see 'python bench/x.py --help')\n"
    )
    with pytest.raises(SystemExit):
        p.fail("--decode", "9 3", "MIN must be <= MAX")
    assert capsys.readouterr().err.startswith("bench/x.py: --decode 9 3: MIN must be <= MAX (see")


@pytest.mark.parametrize("text", ["nan", "inf", "-inf", "0", "-1", "x", ""])
def test_number_above_zero_refuses(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match=repr(text)):
        options.number_above(0)(text)


def test_checked_types_accept_their_range() -> None:
    assert options.number_above(0)("1e-9") == 1e-9
    assert options.number_above(0, inclusive=True)("0") == 0.0
    assert options.int_at_least(1, 8192)("8192") == 8192
    with pytest.raises(argparse.ArgumentTypeError):
        options.int_at_least(1, 8192)("8193")
    with pytest.raises(argparse.ArgumentTypeError):
        options.int_at_least(1)("2.5")
    pick = options.comma_list(options.one_of(("channel", "ray")))
    assert pick("ray, channel") == ["ray", "channel"]
    for bad in ("", "ray,", ",ray", "ray,,channel", "bogus"):
        with pytest.raises(argparse.ArgumentTypeError):
            pick(bad)
    assert options.gpu_profile("h100") == "h100" and options.gpu_profile("cpu") == "cpu"
    with pytest.raises(argparse.ArgumentTypeError, match="NOPE"):
        options.gpu_profile("NOPE")
    with pytest.raises(argparse.ArgumentTypeError, match="nope"):
        options.model_profile("nope")

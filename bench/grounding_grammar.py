"""What grounding costs the turn grammar: build (``tool_call_grammar``), xgrammar compile, and the
token mask while the calculator's expression is written, on SmolLM2-135M's vocabulary, for the
first ``--n`` ``arith`` questions, with grounded numbers only and with grounded expressions too.

Run: ``python bench/grounding_grammar.py [--n 20]``. Prints both variants' medians side by side and
then on/off ratios (how much grounded expressions multiply each cost); progress and an ETA go to stderr.
Not a test: the figures depend on the load.
"""

from __future__ import annotations

import statistics
import time

import xgrammar as xg
from options import BenchParser, int_at_least
from progress import Progress

from interleaf.agents import load_suite
from interleaf.runtime.engine.model_store import load_tokenizer
from interleaf.tools import GrammarOptions, calculator, expressions_in, numbers_in, tool_call_grammar
from interleaf.tools.call_format import call_head

NUMBER = r"-?[0-9]{1,24}(\.[0-9]{1,12})?"  # the ``number`` answer type's pattern


def main(n: int) -> None:
    tok = load_tokenizer()
    compiler = xg.GrammarCompiler(xg.TokenizerInfo.from_huggingface(tok, vocab_size=49152), cache_enabled=False)
    compiler.compile_grammar(tool_call_grammar([calculator.openai_schema()]))  # first compile pays set-up
    tasks = load_suite("arith", n, 0).tasks
    progress = Progress("grounding grammar", total=2 * len(tasks), unit="questions")
    medians: dict[bool, dict[str, float]] = {}
    for with_expressions in (False, True):
        builds, compiles, masks = [], [], []
        for task in tasks:
            q = task.question
            opts = GrammarOptions(
                max_reasoning_chars=0,
                answer_pattern=NUMBER,
                grounded_numbers=numbers_in([q]),
                grounded_expressions=expressions_in([q]) if with_expressions else (),
            )
            t0 = time.perf_counter()
            ebnf = tool_call_grammar([calculator.openai_schema()], opts)
            t1 = time.perf_counter()
            matcher = xg.GrammarMatcher(compiler.compile_grammar(ebnf))
            builds.append(t1 - t0)
            compiles.append(time.perf_counter() - t1)
            bitmask = xg.allocate_token_bitmask(1, 49152)
            text = "<tool_call>" + call_head("calculator") + '{"expression": "' + task.metadata["expression"]
            for token in tok.encode(text):
                t = time.perf_counter()
                matcher.fill_next_token_bitmask(bitmask)
                masks.append(time.perf_counter() - t)
                if not matcher.accept_token(token):
                    raise SystemExit(f"the grammar refuses the question's own expression: {text!r}")
            progress.advance(note=f"grounded expressions {'on' if with_expressions else 'off'}")
        p99 = sorted(masks)[int(0.99 * len(masks))]
        label = "on " if with_expressions else "off"
        print(f"grounded expressions {label}: build {1e3 * statistics.median(builds):.2f} ms, "
              f"compile {1e3 * statistics.median(compiles):.1f} ms (max {1e3 * max(compiles):.1f}), "
              f"mask median {1e3 * statistics.median(masks):.3f} ms, p99 {1e3 * p99:.3f} ms")  # fmt: skip
        medians[with_expressions] = {"build": statistics.median(builds), "compile": statistics.median(compiles),
                                     "mask": statistics.median(masks), "mask p99": p99}  # fmt: skip
    on, off = medians[True], medians[False]
    print("on/off: " + ", ".join(f"{k} {on[k] / off[k]:.2f}x" for k in on))


if __name__ == "__main__":
    p = BenchParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int_at_least(1), default=20, help="arith questions")
    main(p.parse_args().n)

"""Run by tests/conformance/test_sglang_frontend.py with the Python of a venv that has SGLang's frontend
(``sglang==0.5.23``): drives the server at ``argv[1]`` through ``sgl.RuntimeEndpoint`` and prints one JSON
object with what each primitive returned. Imports nothing of interleaf: it is the ecosystem's client."""

from __future__ import annotations

import json
import sys

import sglang as sgl

USER = "<|im_start|>user\n{}<|im_end|>\n<|im_start|>assistant\n"


@sgl.function
def answer(s, question):
    s += USER.format(question)
    s += sgl.gen("answer", max_tokens=8, temperature=0)


@sgl.function
def pick(s):
    s += USER.format("Is the sky blue? Answer yes or no.")
    s += sgl.select("choice", choices=["yes", "no", "purple"])


@sgl.function
def forked(s):
    s += USER.format("Name a colour.")
    branches = s.fork(2)
    for i, branch in enumerate(branches):
        branch += sgl.gen("colour", max_tokens=4, temperature=0 if i == 0 else 0.8)
    s += "Colours: " + branches[0]["colour"] + " / " + branches[1]["colour"]


@sgl.function
def phone(s):
    s += USER.format("Give me a phone number.")
    s += "Phone: " + sgl.gen("number", regex=r"[0-9]{3}-[0-9]{4}", max_tokens=12, temperature=0)


def main() -> None:
    sgl.set_default_backend(sgl.RuntimeEndpoint(sys.argv[1]))
    one = answer.run(question="What is 2+2?")
    batch = answer.run_batch([{"question": "Say hi."}, {"question": "Say bye."}])
    streamed = answer.run(question="What is 2+2?", stream=True)
    chunks = list(streamed.text_iter("answer"))
    chosen = pick.run()
    fork = forked.run()
    number = phone.run()
    result = {
        "answer": one["answer"],
        "answer_meta": one.get_meta_info("answer"),
        "batch": [b["answer"] for b in batch],
        "stream_chunks": chunks,
        "choice": chosen["choice"],
        "choice_meta": chosen.get_meta_info("choice"),
        "fork_text": fork.text(),
        "phone": number["number"],
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()

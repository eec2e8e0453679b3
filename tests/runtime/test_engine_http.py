"""The embedded engine over real HTTP: SGLang's protocol, sessions, radix cache, hidden states, errors."""

from __future__ import annotations

import json

import httpx
import pytest
import torch

from tests.conftest import start_engine, stop_process
from tests.waiting import wait_until

pytestmark = pytest.mark.model

CHAT = "<|im_start|>user\n{q}<|im_end|>\n<|im_start|>assistant\n"
GREEDY = {"temperature": 0, "max_new_tokens": 12}


def gen(url: str, **body) -> dict:
    r = httpx.post(f"{url}/generate", json=body, timeout=120)
    assert r.status_code == 200, r.text
    return r.json()


def open_session(url: str, timeout: float = 60) -> str:
    r = httpx.post(f"{url}/open_session", json={"capacity_of_str_len": 0, "streaming": True, "timeout": timeout})
    assert r.status_code == 200, r.text
    return r.json()


def metric(url: str, name: str) -> float:
    for line in httpx.get(f"{url}/metrics").text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"metric {name} not exported")


def wait_running(url: str) -> None:
    """Wait until the engine is prefilling or decoding a request (the one a thread just sent)."""
    wait_until(
        lambda: metric(url, "sglang:num_running_reqs"),
        until=lambda running: running >= 1,
        message="the request sent from the thread to be running (sglang:num_running_reqs >= 1)",
    )


def test_generate_meta_info_and_server_info(engine_url: str) -> None:
    out = gen(engine_url, text=CHAT.format(q="What is 2+2?"), sampling_params=GREEDY)
    meta = out["meta_info"]
    assert meta["prompt_tokens"] > 0 and meta["completion_tokens"] == len(out["output_ids"]) > 0
    assert {"id", "finish_reason", "cached_tokens", "e2e_latency"} <= set(meta)
    assert meta["finish_reason"]["type"] in ("stop", "length")
    info = httpx.get(f"{engine_url}/server_info").json()
    assert info["internal_states"][0]["max_total_num_tokens"] > 0
    model_info = httpx.get(f"{engine_url}/model_info").json()
    assert model_info["is_generation"] is True
    # the context length is the model's own (SmolLM2-135M: 8192), not a default
    from interleaf.runtime.engine import resolve_model

    config = json.loads((resolve_model().path / "config.json").read_text())
    assert info["context_length"] == model_info["context_length"] == config["max_position_embeddings"]
    assert info["max_req_input_len"] == min(config["max_position_embeddings"], info["max_total_tokens"]) - 1
    assert httpx.get(f"{engine_url}/health_generate", timeout=60).status_code == 200


def test_streaming_sse_matches_non_streaming(engine_url: str) -> None:
    body = {"text": CHAT.format(q="Name a fruit."), "sampling_params": GREEDY}
    plain = gen(engine_url, **body)
    chunks = []
    with httpx.stream("POST", f"{engine_url}/generate", json={**body, "stream": True}, timeout=120) as r:
        for line in r.iter_lines():
            if line.startswith("data: "):
                chunks.append(line[6:])
    assert chunks[-1] == "[DONE]"
    last = json.loads(chunks[-2])
    assert last["output_ids"] == plain["output_ids"] and last["text"] == plain["text"]
    assert len(chunks) > 2  # incremental chunks, not one blob


def test_session_invariant_and_token_identity(engine_url: str) -> None:
    """Turn n+1 cached_tokens == turn n prompt + completion - 1 (the last sampled token has no KV yet)."""
    sid = open_session(engine_url)
    tok_q = CHAT.format(q="Count to three.")
    t1 = gen(engine_url, text=tok_q, session_params={"id": sid}, sampling_params=GREEDY)
    m1 = t1["meta_info"]
    delta = "\n" + CHAT.format(q="And to five?")
    t2 = gen(engine_url, text=delta, session_params={"id": sid, "rid": m1["id"]}, sampling_params=GREEDY)
    m2 = t2["meta_info"]
    assert m2["cached_tokens"] == m1["prompt_tokens"] + m1["completion_tokens"] - 1
    assert m2["prompt_tokens"] > m1["prompt_tokens"] + m1["completion_tokens"]
    # The same full sequence sent cold (no session, radix flushed path differs) gives identical greedy tokens.
    httpx.post(f"{engine_url}/close_session", json={"session_id": sid})
    tok = httpx.post(f"{engine_url}/generate", json={"text": tok_q, "sampling_params": {"max_new_tokens": 0}}).json()
    first_ids = tok["meta_info"]["prompt_tokens"]
    assert first_ids == m1["prompt_tokens"]
    full_ids = None
    # rebuild the session's full prompt: turn-1 prompt + turn-1 output + delta ids
    enc = gen(engine_url, text=tok_q, sampling_params={"max_new_tokens": 0})
    assert enc["meta_info"]["prompt_tokens"] == m1["prompt_tokens"]
    from interleaf.runtime.engine import load_tokenizer

    t = load_tokenizer()
    full_ids = t.encode(tok_q, add_special_tokens=False) + t1["output_ids"] + t.encode(delta, add_special_tokens=False)
    cold = gen(engine_url, input_ids=full_ids, sampling_params=GREEDY)
    assert cold["meta_info"]["prompt_tokens"] == m2["prompt_tokens"]
    assert cold["output_ids"] == t2["output_ids"]


def test_radix_reuse_is_token_identical_to_cold(engine_url: str) -> None:
    prompt = CHAT.format(q="Write one sentence about the sea and the sky at dawn.")
    cold_engine_first = gen(engine_url, text=prompt, sampling_params=GREEDY)
    warm = gen(engine_url, text=prompt, sampling_params=GREEDY)
    assert warm["meta_info"]["cached_tokens"] == warm["meta_info"]["prompt_tokens"] - 1
    assert warm["output_ids"] == cold_engine_first["output_ids"]


def test_bad_inputs_name_the_field_and_server_keeps_serving(engine_url: str) -> None:
    sid = open_session(engine_url)
    cases = [
        ({"text": "a", "input_ids": [1]}, "text"),
        ({"input_ids": [1], "session_params": {"id": "no-such-session"}}, "session_params.id"),
        ({"input_ids": [1], "session_params": {"id": sid, "offset": 3}}, "session_params.offset"),
        ({"input_ids": [1], "session_params": {"id": sid, "replace": True}}, "session_params.replace"),
        ({"input_ids": [1], "sampling_params": {"max_new_tokens": -5}}, "sampling_params.max_new_tokens"),
        ({"input_ids": [1, 10**7]}, "input_ids[1]"),
        ({"input_ids": "not a list"}, "input_ids"),
        ({"input_ids": [1], "sampling_params": {"temperature": "hot"}}, "sampling_params.temperature"),
        ({"input_ids": [1], "sampling_params": {"regex": "("}}, "sampling_params.regex"),
    ]
    for body, field in cases:
        r = httpx.post(f"{engine_url}/generate", json=body, timeout=30)
        assert 400 <= r.status_code < 500, (body, r.text)
        err = r.json()["error"]
        assert err["param"].startswith(field), (body, err)
        assert field.split("[")[0].split(".")[-1] in err["message"], err
    # a second in-flight request on the same session is rejected
    long = {
        "input_ids": [1, 2, 3],
        "session_params": {"id": sid},
        "sampling_params": {"max_new_tokens": 200, "ignore_eos": True},
    }
    with httpx.Client(timeout=120) as c:
        import threading

        first = threading.Thread(target=lambda: c.post(f"{engine_url}/generate", json=long))
        first.start()
        wait_running(engine_url)
        r = httpx.post(f"{engine_url}/generate", json={**long, "sampling_params": {"max_new_tokens": 1}})
        assert r.status_code == 400 and "in flight" in r.json()["error"]["message"]
        first.join()
    assert gen(engine_url, input_ids=[1, 2], sampling_params={"max_new_tokens": 2})["meta_info"]["completion_tokens"]
    httpx.post(f"{engine_url}/close_session", json={"session_id": sid})


def test_out_of_range_sampling_and_odd_text_are_400s_and_spare_the_requests_in_flight(engine_url: str) -> None:
    """Values the sampler cannot use (the old engine failed the whole batch on them: every request in flight
    was aborted) and text no tokenizer can encode are refused up front, naming the field."""
    cases = [
        ({"sampling_params": {"min_p": 2}}, "sampling_params.min_p"),
        ({"sampling_params": {"temperature": float("nan")}}, "sampling_params.temperature"),
        ({"sampling_params": {"frequency_penalty": float("nan")}}, "sampling_params.frequency_penalty"),
        ({"sampling_params": {"repetition_penalty": 0}}, "sampling_params.repetition_penalty"),
        ({"sampling_params": {"sampling_seed": -(2**70)}}, "sampling_params.sampling_seed"),
        ({"sampling_params": {"stop": [""]}}, "sampling_params.stop"),
        ({"return_logprob": True, "top_logprobs_num": 10**9}, "top_logprobs_num"),
        ({"return_logprob": True, "hidden_states_last_k": -2, "return_hidden_states": True}, "hidden_states_last_k"),
    ]
    innocent = {"input_ids": [1, 2, 3], "sampling_params": {"max_new_tokens": 40, "ignore_eos": True}}
    with httpx.Client(timeout=120) as c:
        import threading

        result: dict = {}
        first = threading.Thread(target=lambda: result.update(c.post(f"{engine_url}/generate", json=innocent).json()))
        first.start()
        wait_running(engine_url)
        for body, field in cases:
            raw = json.dumps({"input_ids": [1, 2], **body})  # NaN as Python's json writes it (httpx refuses to)
            r = httpx.post(f"{engine_url}/generate", content=raw, headers={"content-type": "application/json"})
            assert r.status_code == 400, (body, r.text)
            assert r.json()["error"]["param"] == field, (body, r.json())
        for route, body, field in [("generate", {"text": "a\ud800 b"}, "text"),
                                   ("generate", {"text": ["ok", "\udfff"]}, "text[1]"),
                                   ("tokenize", {"prompt": "\ud800"}, "prompt")]:  # fmt: skip
            raw = json.dumps(body)  # json.dumps writes the lone surrogate as the escape JSON allows
            r = httpx.post(f"{engine_url}/{route}", content=raw, headers={"content-type": "application/json"})
            assert r.status_code == 400 and r.json()["error"]["param"] == field, r.text
            assert "surrogate" in r.json()["error"]["message"]
        first.join()
    assert result["meta_info"]["finish_reason"] == {"type": "length", "length": 40}, result["meta_info"]


def test_malformed_bodies_and_unknown_routes_get_the_error_shape(engine_url: str) -> None:
    as_json = {"content-type": "application/json"}
    r = httpx.post(f"{engine_url}/generate", content=b'{"input_ids": [1],}', headers=as_json)
    err = r.json()["error"]
    assert r.status_code == 400 and err["param"] == "body" and "invalid JSON at character 18" in err["message"]
    r = httpx.post(f"{engine_url}/generate", content=b'{"input_ids": [1]}')  # no Content-Type
    assert r.status_code == 400 and "Content-Type: application/json" in r.json()["error"]["message"]
    r = httpx.post(f"{engine_url}/generate", json={"input_ids": [1, [2]]})
    assert r.status_code == 400 and r.json()["error"]["param"] == "input_ids[1]", r.text
    for method, path, status in [("GET", "/no_such_route", 404), ("DELETE", "/generate", 405)]:
        r = httpx.request(method, f"{engine_url}{path}")
        assert r.status_code == status and r.json()["error"]["code"] == status, r.text
        assert path in r.json()["error"]["message"]
    r = httpx.post(f"{engine_url}/open_session", content=b'{"timeout": NaN}', headers=as_json)
    assert r.status_code == 400 and r.json()["error"]["param"] == "timeout", r.text


def test_a_stop_string_matched_at_the_start_leaves_empty_text(engine_url: str) -> None:
    greedy = {"temperature": 0, "max_new_tokens": 12}
    first = gen(engine_url, text=CHAT.format(q="Say hello."), sampling_params=greedy)["text"]
    head = first[:3]
    out = gen(engine_url, text=CHAT.format(q="Say hello."), sampling_params={**greedy, "stop": [head]})
    assert out["text"] == "" and out["meta_info"]["finish_reason"] == {"type": "stop", "matched": head}
    kept = gen(engine_url, text=CHAT.format(q="Say hello."), sampling_params={**greedy, "stop": [head],
               "no_stop_trim": True})  # fmt: skip
    assert kept["text"].startswith(head)


def test_a_client_that_leaves_a_non_streamed_request_aborts_it(engine_url: str) -> None:
    """Starlette does not cancel a non-streamed handler when its client goes away: the engine checks."""
    body = {"input_ids": [1, 2, 3], "sampling_params": {"max_new_tokens": 3000, "ignore_eos": True}}
    for path, payload in [("/generate", body),
                          ("/v1/chat/completions", {"messages": [{"role": "user", "content": "Tell a story."}],
                                                    "max_tokens": 3000, "ignore_eos": True})]:  # fmt: skip
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(f"{engine_url}{path}", json=payload, timeout=httpx.Timeout(30, read=1.0))
        wait_until(lambda: metric(engine_url, "sglang:num_running_reqs"), until=lambda n: n == 0,
                   message=f"the request to {path} to be aborted after its client left")  # fmt: skip


def test_plain_sessions_are_not_counted_as_streaming(engine_url: str) -> None:
    before = httpx.get(f"{engine_url}/server_info").json()["internal_states"][0]["num_streaming_sessions"]
    plain = [httpx.post(f"{engine_url}/open_session", json={}).json() for _ in range(2)]
    info = httpx.get(f"{engine_url}/server_info").json()["internal_states"][0]
    assert info["num_streaming_sessions"] == before and metric(engine_url, "sglang:num_streaming_sessions") == before
    if before == 0:  # nothing pins KV: the flush is not refused for the plain sessions
        # An earlier test's aborted request may still be leaving the scheduler: wait that out, never a refusal
        # that names sessions.
        answer = wait_until(
            lambda: httpx.post(f"{engine_url}/flush_cache"),
            until=lambda r: r.status_code == 200 or "running and" not in r.text,
            message="the engine to go idle for the flush",
        )
        assert answer.status_code == 200, answer.text
    for sid in plain:
        httpx.post(f"{engine_url}/close_session", json={"session_id": sid})


def test_abort_rolls_back_session_turn(engine_url: str) -> None:
    import threading

    sid = open_session(engine_url)
    t1 = gen(engine_url, text=CHAT.format(q="Hi"), session_params={"id": sid}, sampling_params=GREEDY)
    res: dict = {}
    body = {"input_ids": [198, 28], "rid": "to-abort", "session_params": {"id": sid},
            "sampling_params": {"max_new_tokens": 400, "ignore_eos": True}}  # fmt: skip
    th = threading.Thread(
        target=lambda: res.update(httpx.post(f"{engine_url}/generate", json=body, timeout=120).json())
    )
    th.start()
    wait_running(engine_url)
    httpx.post(f"{engine_url}/abort_request", json={"rid": "to-abort"})
    th.join()
    assert res["meta_info"]["finish_reason"]["type"] == "abort"
    # the aborted turn is rolled back: the next turn continues from turn 1, not from the aborted tokens
    t3 = gen(engine_url, input_ids=[200], session_params={"id": sid}, sampling_params={"max_new_tokens": 1})
    m1 = t1["meta_info"]
    assert t3["meta_info"]["prompt_tokens"] == m1["prompt_tokens"] + m1["completion_tokens"] + 1
    assert t3["meta_info"]["cached_tokens"] >= m1["prompt_tokens"] + m1["completion_tokens"] - 1
    httpx.post(f"{engine_url}/close_session", json={"session_id": sid})


def test_hidden_states_match_transformers(engine_url: str) -> None:
    from transformers import AutoModelForCausalLM

    from interleaf.runtime.engine import load_tokenizer, resolve_model

    prompt = CHAT.format(q="Where is the goal?")
    out = gen(engine_url, text=prompt, return_hidden_states=True, hidden_states_layers=[0, 7, 15],
              hidden_states_last_k=3, sampling_params={"max_new_tokens": 3, "temperature": 0})  # fmt: skip
    hs = out["meta_info"]["hidden_states"]
    assert hs["layers"] == [0, 7, 15]
    prompt_hs = torch.tensor(hs["prompt"])
    assert prompt_hs.shape == (3, 3, 576)
    assert torch.tensor(hs["output"]).shape == (3, 3, 576)
    ids = load_tokenizer().encode(prompt, add_special_tokens=False)
    model = AutoModelForCausalLM.from_pretrained(resolve_model().path)
    with torch.no_grad():
        ref = model(torch.tensor([ids + out["output_ids"][:-1]]), output_hidden_states=True).hidden_states
    n = len(ids)
    for i, layer in enumerate([0, 7, 15]):
        # transformers' hidden_states[l + 1] is the output of decoder layer l
        torch.testing.assert_close(prompt_hs[i], ref[layer + 1][0, n - 3 : n], atol=2e-3, rtol=1e-3)
        torch.testing.assert_close(torch.tensor(hs["output"][i]), ref[layer + 1][0, -3:], atol=2e-3, rtol=1e-3)


def test_prompt_logprobs_match_transformers_and_ignore_the_cache(engine_url: str) -> None:
    from transformers import AutoModelForCausalLM

    from interleaf.runtime.engine import load_tokenizer, resolve_model

    prompt = CHAT.format(q="Name a colour.")
    gen(engine_url, text=prompt, sampling_params={"max_new_tokens": 1})  # the whole prompt is now cached
    body = {"text": prompt, "return_logprob": True, "logprob_start_len": 4, "return_text_in_logprobs": True,
            "sampling_params": {"max_new_tokens": 2, "temperature": 0}}  # fmt: skip
    meta = gen(engine_url, **body)["meta_info"]
    ids = load_tokenizer().encode(prompt, add_special_tokens=False)
    got = meta["input_token_logprobs"]
    # SGLang's shape: one entry per prompt token from logprob_start_len on, the first without a logprob
    assert [t for _, t, _ in got] == ids[4:] and got[0][0] is None
    assert all(text == load_tokenizer().decode([t]) for _, t, text in got)
    assert meta["cached_tokens"] <= 4  # positions from logprob_start_len on were recomputed
    model = AutoModelForCausalLM.from_pretrained(resolve_model().path)
    with torch.no_grad():
        ref = torch.log_softmax(model(torch.tensor([ids])).logits[0].float(), dim=-1)
    expected = [float(ref[p - 1, ids[p]]) for p in range(5, len(ids))]
    torch.testing.assert_close(torch.tensor([lp for lp, _, _ in got[1:]]), torch.tensor(expected), atol=2e-3,
                               rtol=1e-3)  # fmt: skip
    # without logprob_start_len: output logprobs only, input list empty (as SGLang)
    meta = gen(engine_url, text=prompt, return_logprob=True, sampling_params={"max_new_tokens": 1})["meta_info"]
    assert meta["input_token_logprobs"] == [] and len(meta["output_token_logprobs"]) == 1
    r = httpx.post(f"{engine_url}/generate", json={**body, "logprob_start_len": len(ids) + 1})
    assert r.status_code == 400 and r.json()["error"]["param"] == "logprob_start_len"


def test_plain_session_continues_forks_and_replaces_like_sglang(engine_url: str) -> None:
    r = httpx.request("GET", f"{engine_url}/open_session", json={"capacity_of_str_len": 0})  # GET, as SGLang allows
    assert r.status_code == 200, r.text
    sid = r.json()
    greedy = {"max_new_tokens": 4, "temperature": 0}
    first = gen(engine_url, input_ids=[1, 504, 3575], sampling_params=greedy, session_params={"id": sid}, rid="a")
    full = [1, 504, 3575, *first["output_ids"]]
    # continue "a": its prompt + output + the new ids, served from the radix cache
    cont = gen(engine_url, input_ids=[282], sampling_params=greedy, session_params={"id": sid, "rid": "a"}, rid="b")
    assert cont["meta_info"]["prompt_tokens"] == len(full) + 1
    assert cont["meta_info"]["cached_tokens"] >= 3
    # fork "a" again, without its output, then cut at an offset
    fork = gen(engine_url, input_ids=[282], sampling_params=greedy, rid="c",
               session_params={"id": sid, "rid": "a", "drop_previous_output": True})  # fmt: skip
    assert fork["meta_info"]["prompt_tokens"] == 4
    cut = gen(engine_url, input_ids=[282], sampling_params=greedy, rid="d", session_params={"id": sid, "rid": "a",
              "offset": 2})  # fmt: skip
    assert cut["meta_info"]["prompt_tokens"] == 3
    # replace drops "a"'s children: continuing "b" is then an unknown rid, a 400 naming the field
    gen(engine_url, input_ids=[282], sampling_params=greedy, rid="e", session_params={"id": sid, "rid": "a",
        "replace": True})  # fmt: skip
    r = httpx.post(f"{engine_url}/generate", json={"input_ids": [282], "session_params": {"id": sid, "rid": "b"}})
    assert r.status_code == 400 and r.json()["error"]["param"] == "session_params.rid"
    assert httpx.request("GET", f"{engine_url}/close_session", json={"session_id": sid}).status_code == 200
    r = httpx.post(f"{engine_url}/generate", json={"input_ids": [282], "session_params": {"id": sid}})
    assert r.status_code == 400 and r.json()["error"]["param"] == "session_params.id"


def test_tokenize_detokenize_load_flush_and_sglang_server_info(engine_url: str) -> None:
    tok = httpx.post(f"{engine_url}/tokenize", json={"prompt": "hello world"}).json()
    assert tok["count"] == len(tok["tokens"]) > 0 and tok["max_model_len"] == 8192
    batch = httpx.post(f"{engine_url}/v1/tokenize", json={"prompt": ["a", "b c"]}).json()
    assert len(batch["tokens"]) == 2 and batch["count"] == [len(t) for t in batch["tokens"]]
    assert httpx.post(f"{engine_url}/detokenize", json={"tokens": tok["tokens"]}).json() == {"text": "hello world"}
    both = httpx.post(f"{engine_url}/v1/detokenize", json={"tokens": batch["tokens"]}).json()
    assert both == {"text": ["a", "b c"]}
    r = httpx.post(f"{engine_url}/detokenize", json={"tokens": [1, 10**9]})
    assert r.status_code == 400 and r.json()["error"]["param"] == "tokens[1]"
    load = httpx.get(f"{engine_url}/get_load").json()
    assert load[0]["dp_rank"] == 0 and {"num_reqs", "num_waiting_reqs", "num_tokens"} <= set(load[0])
    assert httpx.get(f"{engine_url}/flush_cache").status_code in (200, 400)  # GET accepted (400 = sessions open)
    info = httpx.get(f"{engine_url}/get_server_info").json()
    assert info["max_total_num_tokens"] == info["internal_states"][0]["max_total_num_tokens"] > 0
    assert 0 < info["max_req_input_len"] < info["max_total_num_tokens"]
    gen(engine_url, input_ids=[1, 2], sampling_params={"max_new_tokens": 0})  # no token: e2e latency still observed
    assert metric(engine_url, "sglang:num_requests_total") >= 1
    assert metric(engine_url, "sglang:e2e_request_latency_seconds_count") >= 1


def test_eviction_spares_pinned_session_then_timeout_and_close_release() -> None:
    proc, url = start_engine("--max-total-tokens", "600", "--chunked-prefill-size", "256")
    try:
        sid = open_session(url, timeout=600)
        pinned = CHAT.format(q="Remember the number 42. " * 8)
        t1 = gen(url, text=pinned, session_params={"id": sid}, sampling_params={"max_new_tokens": 4, "temperature": 0})
        m1 = t1["meta_info"]
        unpinned = "Rivers and mountains, an unrelated question. " * 4
        assert gen(url, text=unpinned, sampling_params={"max_new_tokens": 2})["meta_info"]["cached_tokens"] == 0
        # pressure: several distinct long prompts push the unpinned prefix out
        for i in range(6):
            gen(url, text=f"{i} filler text to fill the pool. " * 20, sampling_params={"max_new_tokens": 1})
        assert metric(url, "sglang:evicted_tokens_total") > 0
        assert gen(url, text=unpinned, sampling_params={"max_new_tokens": 2})["meta_info"]["cached_tokens"] == 0
        assert metric(url, "sglang:streaming_session_held_tokens") == m1["prompt_tokens"] + m1["completion_tokens"] - 1
        t2 = gen(url, input_ids=[198], session_params={"id": sid}, sampling_params={"max_new_tokens": 1})
        assert t2["meta_info"]["cached_tokens"] == m1["prompt_tokens"] + m1["completion_tokens"] - 1
        # closing releases the pin
        assert httpx.post(f"{url}/close_session", json={"session_id": sid}).json()["closed"] is True
        assert metric(url, "sglang:streaming_session_held_tokens") == 0
        r = httpx.post(f"{url}/generate", json={"input_ids": [198], "session_params": {"id": sid}})
        assert r.status_code == 400
        # so does the inactivity timeout
        sid2 = open_session(url, timeout=2)
        gen(url, text=pinned, session_params={"id": sid2}, sampling_params={"max_new_tokens": 2})
        assert metric(url, "sglang:num_streaming_sessions") == 1
        wait_until(
            lambda: metric(url, "sglang:num_streaming_sessions"),
            until=lambda sessions: sessions == 0,
            message="the idle session to time out (sglang:num_streaming_sessions == 0)",
            interval_s=0.5,
        )
        assert metric(url, "sglang:num_streaming_sessions") == 0
        assert metric(url, "sglang:streaming_session_held_tokens") == 0
        assert httpx.post(f"{url}/flush_cache").status_code == 200
    finally:
        stop_process(proc)


def test_server_without_sessions_emulates_plain_sglang() -> None:
    proc, url = start_engine("--sglang-defaults", "--max-total-tokens", "512")
    try:
        r = httpx.post(f"{url}/open_session", json={"capacity_of_str_len": 0, "streaming": True})
        assert r.status_code == 400 and "--enable-streaming-session" in r.json()["error"]["message"]
        assert httpx.get(f"{url}/metrics").status_code == 404
        assert (
            gen(url, input_ids=[1, 2, 3], sampling_params={"max_new_tokens": 1})["meta_info"]["completion_tokens"] == 1
        )
    finally:
        stop_process(proc)

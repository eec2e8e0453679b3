"""The scheduler: one thread that owns the KV cache (cache_manager.py), the sessions and the model.

Each iteration: take new work from the inbox; reap expired sessions; run one prefill chunk of
the oldest admitted request (chunked prefill); run one batched decode step over every running
request (continuous batching: requests join after their prefill and leave when they finish).
Admission is by free KV: a request waits until its prompt fits in free + evictable slots. When a
decode step cannot get a slot even after evicting every unlocked prefix, the newest running
request is *retracted* (its KV goes back to the radix cache as evictable, it re-queues and
resumes later from prompt + output so far). Nothing waits forever: a request that cannot fit
even with the pool otherwise empty is aborted with a message naming the pinned sessions.
"""

from __future__ import annotations

import concurrent.futures
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import torch

from interleaf.runtime.engine.cache_manager import CacheManager
from interleaf.runtime.engine.executor import Executor, ForwardBatch
from interleaf.runtime.engine.request import Req, ReqState, SamplingParams
from interleaf.runtime.engine.sampler import make_generator, sample
from interleaf.runtime.engine.stop_conditions import StopConditions

if TYPE_CHECKING:
    from interleaf.runtime.engine.grammar import GrammarBackend

log = logging.getLogger("interleaf.engine")
T = TypeVar("T")


@dataclass
class SchedulerStats:
    """Counters behind /metrics (read without locks: ints and floats only)."""

    prompt_tokens: int = 0
    cached_tokens: int = 0
    generation_tokens: int = 0
    retractions: int = 0
    requests: int = 0
    """Requests finished (completed or aborted): ``sglang:num_requests_total``."""
    last_step_tokens_per_s: float = 0.0


class Scheduler:
    """The engine's one scheduling thread: admission, chunked prefill, batched decode, retraction."""

    def __init__(
        self,
        executor: Executor,
        *,
        grammar: GrammarBackend | None = None,
        chunk_size: int = 512,
        max_running: int = 64,
        enable_radix: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.executor = executor
        self.clock = clock
        """Seconds for request timings and session timeouts; a discrete-event simulation
        (``interleaf.runtime.simulate``) injects its virtual clock and calls ``step()`` itself."""
        self.cache = CacheManager(executor.kv_capacity, enable_radix=enable_radix)
        self.tokenizer = executor.tokenizer
        self.grammar = grammar
        self.chunk_size = chunk_size
        self.max_running = max_running
        self.max_seq_len = min(executor.context_length, executor.kv_capacity)
        """Longest sequence (prompt + output) a request may reach: the model's context, or the whole KV
        pool when that is smaller (a longer one could never be resident). Generation stops there."""
        self.stop_conditions = StopConditions(executor.tokenizer, executor.eos_token_ids, self.max_seq_len)
        self.waiting: deque[Req] = deque()
        self.prefilling: Req | None = None
        self.running: list[Req] = []
        self.stats = SchedulerStats()
        self.observe: Callable[[tuple[str, float]], None] = lambda pair: None
        """Called with (histogram name, seconds): queue, ttft, itl, e2e; the server wires /metrics."""
        self._inbox: queue.Queue = queue.Queue()
        self._stop = threading.Event()
        self._alive: Callable[[], bool] | None = None

    # --- public API (any thread) ---------------------------------------------------------------
    def run_forever(self, alive: Callable[[], bool] | None = None) -> None:
        """Run the loop on the calling thread until ``stop()`` (or ``alive()`` turns false).

        The server calls this on the main thread: on this CPU build, torch ops issued from a secondary
        thread ran ~25% slower at batch 8 (OpenMP teams of non-main threads do not spin-wait).
        """
        self._alive = alive
        self._loop()

    def stop(self) -> None:
        """Ask the loop to end (within half a second when idle); safe in a signal handler: takes no lock."""
        self._stop.set()

    def submit(self, req: Req) -> None:
        """Queue ``req`` for admission."""
        self._inbox.put(("req", req))

    def abort(self, rid: str, message: str = "aborted by /abort_request") -> None:
        """Finish request ``rid`` with an abort reason carrying ``message``, wherever it is."""
        self._inbox.put(("abort", (rid, message)))

    def call(self, fn: Callable[[Scheduler], T]) -> concurrent.futures.Future[T]:
        """Run ``fn(self)`` on the scheduler thread; the future holds its result (for state changes)."""
        fut: concurrent.futures.Future[T] = concurrent.futures.Future()
        self._inbox.put(("call", (fn, fut)))
        return fut

    @property
    def idle(self) -> bool:
        """Nothing queued, prefilling or decoding."""
        return not self.waiting and self.prefilling is None and not self.running

    @property
    def num_running(self) -> int:
        """Requests prefilling or decoding."""
        return len(self.running) + (1 if self.prefilling else 0)

    # --- the loop --------------------------------------------------------------------------------
    def _loop(self) -> None:
        torch.set_grad_enabled(False)
        last_check = time.monotonic()
        while not self._stop.is_set():
            if self._alive is not None and time.monotonic() - last_check > 1.0:
                last_check = time.monotonic()
                if not self._alive():
                    log.error("HTTP server thread ended; stopping the scheduler")
                    return
            try:
                did = self.step(block=self.idle)
                if not did and (self.waiting or self.prefilling):
                    time.sleep(0.005)  # waiting for KV to free up (sessions closing, timeouts)
            except Exception:  # a bug must not silently kill the engine: fail the requests in flight
                log.exception("scheduler step failed")
                for req in [*self.running, *([self.prefilling] if self.prefilling else [])]:
                    self._finish(req, {"type": "abort", "message": "internal engine error; see server log"})
                self.running.clear()
                self.prefilling = None

    def step(self, block: bool = False) -> bool:
        """One iteration: take new work (waiting up to half a second for it when ``block``), reap
        expired sessions, run one prefill round and one decode step; True when any forward ran."""
        self._drain_inbox(block=block)
        self._reap_sessions()
        did = self._prefill_round()
        did |= self._decode_step()
        return did

    def _drain_inbox(self, block: bool) -> None:
        timeout = 0.5 if block else 0.0
        while True:
            try:
                kind, item = self._inbox.get(block=block, timeout=timeout) if block else self._inbox.get_nowait()
            except queue.Empty:
                return
            block = False
            if kind == "req":
                self._enqueue(item)
            elif kind == "abort":
                self._abort(*item)
            elif kind == "call":
                fn, fut = item
                try:
                    fut.set_result(fn(self))
                except Exception as exc:
                    fut.set_exception(exc)

    def _enqueue(self, req: Req, *, front: bool = False) -> None:
        """Put ``req`` in the waiting queue, which stays ordered by priority (larger first): behind the
        requests of its priority or higher (first come, first served), or, ``front`` (a retracted request),
        ahead of those of its priority. With every priority 0 (FCFS) these are append and appendleft."""
        waiting = self.waiting
        if front:
            i = 0
            while i < len(waiting) and waiting[i].priority > req.priority:
                i += 1
            waiting.insert(i, req)
            return
        i = len(waiting)
        while i > 0 and waiting[i - 1].priority < req.priority:
            i -= 1
        waiting.insert(i, req)

    def _abort(self, rid: str, message: str) -> None:
        for req in list(self.waiting):
            if req.rid == rid:
                self.waiting.remove(req)
                self._finish(req, {"type": "abort", "message": message})
        if self.prefilling is not None and self.prefilling.rid == rid:
            req, self.prefilling = self.prefilling, None
            self._finish(req, {"type": "abort", "message": message})
        for req in list(self.running):
            if req.rid == rid:
                self.running.remove(req)
                self._finish(req, {"type": "abort", "message": message})

    def _reap_sessions(self) -> None:
        for sid in self.cache.sessions.expired(self.clock()):
            self.close_session(sid)

    # --- sessions (scheduler thread) -------------------------------------------------------------
    def close_session(self, sid: str) -> bool:
        """Close streaming session and/or radix session ``sid``, aborting its turn in flight; False if
        neither was open."""
        existed, inflight = self.cache.close_session(sid)
        if inflight is not None:
            self._abort(inflight.rid, f"session {sid!r} closed")
        return existed

    # --- admission and prefill -------------------------------------------------------------------
    def _admit(self, req: Req, *, others: bool = False) -> bool:
        """Admit ``req`` if its KV fits (True), or leave it waiting (False); one that cannot fit with nothing
        else running is aborted (True: it left the queue). ``others``: requests admitted earlier in this
        prefill round hold KV (they will be running, and retractable, next round)."""
        need = self.cache.admit(req)
        if need:
            if not self.running and self.prefilling is None and not others:
                self._finish(req, {"type": "abort", "message": self.cache.no_room_message(need)})
                return True
            return False
        if req.retractions == 0:
            req.cached_tokens = req.n_prefix
            self.stats.cached_tokens += req.n_prefix
            self.stats.prompt_tokens += len(req.input_ids)
        req.state = ReqState.PREFILLING
        req.prefill_started = req.prefill_started or self.clock()
        if req.prefill_started and req.retractions == 0:
            self.observe(("queue", req.prefill_started - req.created))
        return True

    def _prefill_round(self) -> bool:
        """Prefill up to this iteration's token budget (``chunk_size``), then let decode run.

        Several waiting requests (agent turn deltas are short) are admitted in one round and prefilled
        together in padded forwards; a long prompt takes the rest of the budget and continues next round.
        """
        budget = self.chunk_size
        work: list[tuple[Req, int, torch.Tensor]] = []  # (request, first position, new slots)
        while budget > 0:
            req = self.prefilling
            if req is None:
                if not self.waiting or len(self.running) + len(work) >= self.max_running:
                    break
                req = self.waiting[0]
                if not self._admit(req, others=bool(work)):
                    break
                self.waiting.popleft()
                if req.finished:
                    continue
            self.prefilling = None
            start = req.prefill_done
            n = min(budget, len(req.seq_ids) - start)
            new_slots = self.cache.alloc(n)
            while new_slots is None and self._retract_one(exclude=req):  # decode grew since admission
                new_slots = self.cache.alloc(n)
            if new_slots is None and work:
                # This round's other chunks hold the slots (they cannot be retracted before they run):
                # continue next round, when they are running requests that can be.
                self.prefilling = req
                break
            if new_slots is None:
                self._finish(req, {"type": "abort", "message": self.cache.no_room_message(n)})
                continue
            work.append((req, start, new_slots))
            budget -= n
            if start + n < len(req.seq_ids):
                self.prefilling = req  # partially prefilled: it continues next round
                break
        for group in _padding_groups(work):
            self._prefill_forward(group)
        return bool(work)

    def _prefill_forward(self, group: list[tuple[Req, int, torch.Tensor]]) -> None:
        """One padded forward over several requests' prefill chunks; emits first tokens of finished prompts."""
        B = len(group)
        n_max = max(int(s.numel()) for _, _, s in group)
        tokens = torch.zeros(B, n_max, dtype=torch.int64)
        positions = torch.zeros(B, n_max, dtype=torch.int64)
        write = torch.zeros(B, n_max, dtype=torch.int64)  # padding rows write to the reserved slot 0
        tables, logit_index = [], []
        for b, (req, start, new_slots) in enumerate(group):
            n = int(new_slots.numel())
            tokens[b, :n] = torch.tensor(req.seq_ids[start : start + n])
            positions[b, :n] = torch.arange(start, start + n)
            positions[b, n:] = start + n - 1
            write[b, :n] = new_slots
            tables.append(torch.cat([req.slots, new_slots]))
            logit_index.append(n - 1)
        layers = tuple(sorted({layer for r, _, _ in group if r.capture for layer in r.capture.layers}))
        out = self.executor.forward(ForwardBatch(
            tokens=tokens, positions=positions, write_slots=write,
            kv_slots=torch.nn.utils.rnn.pad_sequence(tables, batch_first=True, padding_value=0),
            kv_len=torch.tensor([len(t) for t in tables]), logit_index=torch.tensor(logit_index),
            capture_layers=layers, all_logits=any(_wants_prompt_logprobs(r) for r, _, _ in group)))  # fmt: skip
        done, rows = [], []
        for b, ((req, start, new_slots), table) in enumerate(zip(group, tables, strict=True)):
            n = int(new_slots.numel())
            req.slots = table
            req.prefill_done = start + n
            if _wants_prompt_logprobs(req) and out.all_logits is not None:
                _collect_prompt_logprobs(req, start, out.all_logits[b, :n])
            if req.capture:
                for layer in req.capture.layers:
                    req.capture.push(layer, out.hidden[layer][b, :n])
            if req.prefill_done < len(req.seq_ids):
                continue
            if req.capture and req.capture.prompt is None:
                req.capture.prompt = req.capture.snapshot()
            if req.params.max_new_tokens == 0:
                self._finish(req, {"type": "length", "length": 0})
                continue
            req.state = ReqState.RUNNING
            self.running.append(req)
            done.append(req)
            rows.append(b)
        if done:
            self._emit(out.logits[rows], done, batch_size=len(done))

    # --- decode ------------------------------------------------------------------------------------
    def _decode_step(self) -> bool:
        if not self.running:
            return False
        batch: list[Req] = []
        slots: list[torch.Tensor] = []
        for req in list(self.running):
            if req not in self.running:  # retracted to make room for an older request
                continue
            slot = self.cache.alloc(1)
            while slot is None and self._retract_one(exclude=req):
                slot = self.cache.alloc(1)
            if slot is None:  # alone in the pool and still no room: only pinned KV is left
                self.running.remove(req)
                self._finish(req, {"type": "abort", "message": self.cache.no_room_message(1)})
                continue
            batch.append(req)
            slots.append(slot)
        for req, slot in zip(batch, slots, strict=True):
            if req not in self.running:
                self.cache.free(slot)
        keep = [(r, s) for r, s in zip(batch, slots, strict=True) if r in self.running]
        if not keep:
            return True
        batch = [r for r, _ in keep]
        new_slots = torch.cat([s for _, s in keep])
        B = len(batch)
        tables = [torch.cat([r.slots, s]) for r, s in keep]
        kv_len = torch.tensor([len(t) for t in tables])
        if self.executor.needs_kv_table:
            kv_slots = torch.nn.utils.rnn.pad_sequence(tables, batch_first=True, padding_value=0)
        else:  # the simulator only needs lengths; skip the O(batch x context) table
            kv_slots = torch.empty(B, 0, dtype=torch.int64)
        layers = tuple(sorted({layer for r in batch if r.capture for layer in r.capture.layers}))
        t0 = self.clock()
        out = self.executor.forward(ForwardBatch(
            tokens=torch.tensor([[r.output_ids[-1]] for r in batch]), positions=(kv_len - 1)[:, None],
            write_slots=new_slots[:, None], kv_slots=kv_slots, kv_len=kv_len,
            logit_index=torch.zeros(B, dtype=torch.int64), capture_layers=layers))  # fmt: skip
        dt = self.clock() - t0
        self.stats.last_step_tokens_per_s = B / dt if dt > 0 else 0.0
        self.observe(("itl", dt))
        for i, (r, t) in enumerate(zip(batch, tables, strict=True)):
            r.slots = t
            if r.capture:
                for layer in r.capture.layers:
                    r.capture.push(layer, out.hidden[layer][i])
        self._emit(out.logits, batch, batch_size=B)
        return True

    def _emit(self, logits: torch.Tensor, reqs: list[Req], batch_size: int) -> None:
        want = [i for i, r in enumerate(reqs) if r.top_logprobs_num >= 0]
        logprobs = torch.log_softmax(logits[want].float(), dim=-1) if want else None
        if self.grammar is not None:
            self.grammar.mask(logits, reqs)
        tokens, failed = _sample_isolated(logits, reqs)
        for req in failed:  # only the request the sampler could not serve fails; its batch goes on
            self.running.remove(req)
            self._finish(req, {"type": "abort", "message": "sampling failed for this request; see server log"})
        if logprobs is not None:
            for row, i in enumerate(want):
                req, lp = reqs[i], logprobs[row]
                if tokens[i] < 0:
                    continue
                req.output_logprobs.append((float(lp[tokens[i]]), tokens[i]))
                if req.top_logprobs_num > 0:
                    top = torch.topk(lp, req.top_logprobs_num)
                    req.output_top_logprobs.append(list(zip(top.values.tolist(), top.indices.tolist(), strict=True)))
        now = self.clock()
        for req, tok in zip(reqs, tokens, strict=True):
            if tok < 0:
                continue
            req.output_ids.append(tok)
            req.batch_size_sum += batch_size
            req.decode_steps += 1
            self.stats.generation_tokens += 1
            if req.first_token_at is None:
                req.first_token_at = now
                self.observe(("ttft", now - req.created))
            reason = self.stop_conditions.reason(req, tok)
            if reason is not None:
                self.running.remove(req)
                self._finish(req, reason)
            elif req.stream:  # non-streaming waiters only need the final event
                req.notify("token")

    # --- retraction and finishing ----------------------------------------------------------------
    def _retract_one(self, exclude: Req) -> bool:
        """Retract the newest running request other than ``exclude``; False when there is none."""
        candidates = [r for r in self.running if r is not exclude]
        if not candidates:
            return False
        victim = candidates[-1]
        self.running.remove(victim)
        self.cache.release(victim)
        victim.retractions += 1
        victim.state = ReqState.WAITING
        self.stats.retractions += 1
        self._enqueue(victim, front=True)  # it resumes before the requests of its priority that came later
        log.info("retracted %s after %d tokens (KV pool full)", victim.rid, len(victim.output_ids))
        return True

    def _finish(self, req: Req, reason: dict[str, Any]) -> None:
        self.cache.finish(req, completed=reason["type"] != "abort")
        req.state = ReqState.FINISHED
        req.finish_reason = reason
        req.finished_at = self.clock()
        if req.capture is not None and req.capture.prompt is None:
            req.capture.prompt = req.capture.snapshot()
        if not (reason["type"] == "stop" and isinstance(reason.get("matched"), str)):
            # A stop string's match already left the trimmed text (possibly empty) in req.text.
            req.text = self.tokenizer.decode(req.output_ids, skip_special_tokens=req.params.skip_special_tokens)
        self.stats.requests += 1
        self.observe(("e2e", req.finished_at - req.created))  # every finished request, as SGLang
        req.notify("done")


def _sample_isolated(logits: torch.Tensor, reqs: list[Req]) -> tuple[list[int], list[Req]]:
    """``sample`` for the batch; when it raises, row by row, so that only the requests whose row fails
    (token -1) are lost, not every request in the batch."""
    try:
        return sample(logits, reqs), []
    except Exception:
        log.exception("sampling a batch of %d failed; sampling its rows one by one", len(reqs))
    tokens: list[int] = []
    failed: list[Req] = []
    for i, req in enumerate(reqs):
        try:
            tokens.append(sample(logits[i : i + 1], [req])[0])
        except Exception:
            log.exception("sampling request %s failed", req.rid)
            tokens.append(-1)
            failed.append(req)
    if len(failed) == len(reqs) > 1:  # not one request's values: the sampler itself is broken, fail loudly
        raise RuntimeError(f"sampling failed for every one of the {len(reqs)} rows of the batch")
    return tokens, failed


def _wants_prompt_logprobs(req: Req) -> bool:
    """Whether ``req``'s prompt logprobs are still to be collected (retracted requests resume after them)."""
    return req.logprob_start >= 0 and req.retractions == 0


def _collect_prompt_logprobs(req: Req, start: int, logits: torch.Tensor) -> None:
    """Append the logprobs of the prompt tokens that rows ``start..`` of this chunk predict (row p predicts
    token p + 1), from ``req.logprob_start`` on; that first token's logprob is None, as in SGLang."""
    ids = req.input_ids
    if not req.input_logprobs:
        req.input_logprobs.append((None, ids[req.logprob_start]))
    first = max(start, req.logprob_start)
    last = min(start + int(logits.shape[0]), len(ids) - 1)  # the last prompt row predicts the first output
    if last <= first:
        return
    rows = torch.log_softmax(logits[first - start : last - start].float(), dim=-1)
    targets = torch.tensor(ids[first + 1 : last + 1])
    values = rows[torch.arange(last - first), targets].tolist()
    req.input_logprobs.extend(zip(values, ids[first + 1 : last + 1], strict=True))


def _padding_groups(work: list[tuple[Req, int, torch.Tensor]]) -> list[list[tuple[Req, int, torch.Tensor]]]:
    """Split prefill chunks into forwards whose padding wastes at most a third of the compute."""
    groups: list[list[tuple[Req, int, torch.Tensor]]] = []
    for item in sorted(work, key=lambda w: int(w[2].numel())):
        if groups:
            g = groups[-1]
            n_max = int(item[2].numel())
            real = sum(int(w[2].numel()) for w in g) + n_max
            if n_max * (len(g) + 1) * 2 <= real * 3:
                g.append(item)
                continue
        groups.append([item])
    return groups


def new_request(rid: str, input_ids: list[int], params: SamplingParams, **kw: Any) -> Req:
    """A request with its sampling generator seeded from ``params.sampling_seed``."""
    req = Req(rid=rid, input_ids=input_ids, params=params, **kw)
    req.generator = make_generator(params.sampling_seed)
    return req

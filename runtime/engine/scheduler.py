"""The scheduler: one thread that owns the KV pool, the radix cache, sessions and the model.

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
from dataclasses import dataclass
from typing import Any, Protocol

import torch

from interleaf.runtime.engine.kv_pool import KVPool
from interleaf.runtime.engine.llama import ForwardBatch, ForwardOutput
from interleaf.runtime.engine.radix_cache import RadixCache
from interleaf.runtime.engine.request import HiddenCapture, Req, ReqState
from interleaf.runtime.engine.sampler import make_generator, sample
from interleaf.runtime.engine.session import Session

log = logging.getLogger("interleaf.engine")


class Executor(Protocol):
    n_layers: int
    vocab_size: int

    def forward(self, batch: ForwardBatch) -> ForwardOutput: ...


@dataclass
class SchedulerStats:
    """Counters behind /metrics (read without locks: ints and floats only)."""

    prompt_tokens: int = 0
    cached_tokens: int = 0
    generation_tokens: int = 0
    retractions: int = 0
    finished_requests: int = 0
    decode_steps: int = 0
    decode_seqs: int = 0
    last_step_tokens_per_s: float = 0.0


class Scheduler:
    def __init__(
        self,
        executor: Executor,
        capacity: int,
        *,
        tokenizer: Any,
        eos_token_ids: list[int],
        grammar: Any = None,
        chunk_size: int = 512,
        max_running: int = 64,
        context_length: int = 8192,
        enable_radix: bool = True,
    ):
        self.executor = executor
        self.pool = KVPool(capacity)
        self.radix = RadixCache(self.pool, enabled=enable_radix)
        self.tokenizer = tokenizer
        self.eos_token_ids = eos_token_ids
        self.grammar = grammar
        self.chunk_size = chunk_size
        self.max_running = max_running
        self.context_length = context_length
        self.waiting: deque[Req] = deque()
        self.prefilling: Req | None = None
        self.running: list[Req] = []
        self.sessions: dict[str, Session] = {}
        self.sessions_lock = threading.Lock()
        self.radix_sessions: dict[str, list] = {}
        self.stats = SchedulerStats()
        self.observe: Any = lambda pair: None
        """Called with (histogram name, seconds): queue, ttft, itl, e2e; the server wires /metrics."""
        self._inbox: queue.Queue = queue.Queue()
        self._stop = threading.Event()
        self._alive: Any = None
        self._thread = threading.Thread(target=self._loop, name="interleaf-scheduler", daemon=True)

    # --- public API (any thread) ---------------------------------------------------------------
    def start(self) -> None:
        """Run the loop in a background thread (in-process use; the server runs it on the main thread)."""
        self._thread.start()

    def run_forever(self, alive: Any = None) -> None:
        """Run the loop on the calling thread until ``stop()`` (or ``alive()`` turns false).

        The server calls this on the main thread: on this CPU build, torch ops issued from a secondary
        thread ran ~25% slower at batch 8 (OpenMP teams of non-main threads do not spin-wait).
        """
        self._alive = alive
        self._loop()

    def stop(self) -> None:
        self._stop.set()
        self._inbox.put(("wake", None))
        if self._thread.is_alive():
            self._thread.join(timeout=10)

    def submit(self, req: Req) -> None:
        self._inbox.put(("req", req))

    def abort(self, rid: str, message: str = "aborted by /abort_request") -> None:
        self._inbox.put(("abort", (rid, message)))

    def call(self, fn: Any) -> Any:
        """Run ``fn(self)`` on the scheduler thread and return its result (for state changes)."""
        fut: concurrent.futures.Future = concurrent.futures.Future()
        self._inbox.put(("call", (fn, fut)))
        return fut

    @property
    def idle(self) -> bool:
        return not self.waiting and self.prefilling is None and not self.running

    @property
    def num_running(self) -> int:
        return len(self.running) + (1 if self.prefilling else 0)

    @property
    def session_held_tokens(self) -> int:
        return sum(s.held_tokens for s in list(self.sessions.values()) if not s.closed)

    @property
    def used_tokens(self) -> int:
        return self.pool.capacity - self.pool.available

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
                self._drain_inbox(block=self.idle)
                self._reap_sessions()
                did = self._prefill_round()
                did |= self._decode_step()
                if not did and (self.waiting or self.prefilling):
                    time.sleep(0.005)  # waiting for KV to free up (sessions closing, timeouts)
            except Exception:  # a bug must not silently kill the engine: fail the requests in flight
                log.exception("scheduler step failed")
                for req in [*self.running, *([self.prefilling] if self.prefilling else [])]:
                    self._finish(req, {"type": "abort", "message": "internal engine error; see server log"})
                self.running.clear()
                self.prefilling = None

    def _drain_inbox(self, block: bool) -> None:
        timeout = 0.5 if block else 0.0
        while True:
            try:
                kind, item = self._inbox.get(block=block, timeout=timeout) if block else self._inbox.get_nowait()
            except queue.Empty:
                return
            block = False
            if kind == "req":
                self.waiting.append(item)
            elif kind == "abort":
                self._abort(*item)
            elif kind == "call":
                fn, fut = item
                try:
                    fut.set_result(fn(self))
                except Exception as exc:
                    fut.set_exception(exc)

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
        now = time.monotonic()
        with self.sessions_lock:
            expired = [s for s in self.sessions.values() if s.expired(now)]
        for s in expired:
            self.close_session(s.id)

    # --- sessions (scheduler thread) -------------------------------------------------------------
    def close_session(self, sid: str) -> bool:
        with self.sessions_lock:
            s = self.sessions.pop(sid, None)
        refs = self.radix_sessions.pop(sid, [])
        for node in refs:
            self.radix.soft_ref(node, -1)
        if s is None:
            return bool(refs)
        s.closed = True
        if s.node is not None:
            self.radix.unlock(s.node)
            s.node = None
        if s.inflight is not None:
            self._abort(s.inflight.rid, f"session {sid!r} closed")
        return True

    # --- admission and prefill -------------------------------------------------------------------
    def _admit(self, req: Req) -> bool:
        fill = req.seq_ids
        keep = max(1, req.capture.last_k if req.capture else 1)
        match = self.radix.match_prefix(fill[: max(0, len(fill) - keep)])
        self.radix.lock(match.node)
        need = len(fill) - match.length
        if need > self.pool.available + self.radix.evictable_tokens:
            self.radix.unlock(match.node)
            if not self.running and self.prefilling is None:
                self._finish(req, {"type": "abort", "message": self._no_room_message(need)})
                return True
            return False
        req.prefix_node = match.node
        req.slots = match.slots
        req.n_prefix = match.length
        req.prefill_done = match.length
        if req.retractions == 0:
            req.cached_tokens = match.length
            self.stats.cached_tokens += match.length
            self.stats.prompt_tokens += len(req.input_ids)
        req.state = ReqState.PREFILLING
        req.prefill_started = req.prefill_started or time.monotonic()
        if req.prefill_started and req.retractions == 0:
            self.observe(("queue", req.prefill_started - req.created))
        return True

    def _no_room_message(self, need: int) -> str:
        free = self.pool.available + self.radix.evictable_tokens
        return (
            f"request needs {need} more KV tokens but only {free} of max_total_num_tokens={self.pool.capacity} "
            f"can be freed; {self.session_held_tokens} tokens are pinned by {len(self.sessions)} streaming "
            "sessions: close sessions or raise --max-total-tokens"
        )

    def _alloc(self, n: int) -> torch.Tensor | None:
        slots = self.pool.alloc(n)
        if slots is None:
            self.radix.evict(n - self.pool.available)
            slots = self.pool.alloc(n)
        return slots

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
                if not self._admit(req):
                    break
                self.waiting.popleft()
                if req.finished:
                    continue
            self.prefilling = None
            start = req.prefill_done
            n = min(budget, len(req.seq_ids) - start)
            new_slots = self._alloc(n)
            while new_slots is None and self._retract_one(exclude=req):  # decode grew since admission
                new_slots = self._alloc(n)
            if new_slots is None:
                self._finish(req, {"type": "abort", "message": self._no_room_message(n)})
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
            capture_layers=layers))  # fmt: skip
        done, rows = [], []
        for b, ((req, start, new_slots), table) in enumerate(zip(group, tables, strict=True)):
            n = int(new_slots.numel())
            req.slots = table
            req.prefill_done = start + n
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
            slot = self._alloc(1)
            while slot is None and self._retract_one(exclude=req):
                slot = self._alloc(1)
            if slot is None:  # alone in the pool and still no room: only pinned KV is left
                self.running.remove(req)
                self._finish(req, {"type": "abort", "message": self._no_room_message(1)})
                continue
            batch.append(req)
            slots.append(slot)
        for req, slot in zip(batch, slots, strict=True):
            if req not in self.running:
                self.pool.free(slot)
        keep = [(r, s) for r, s in zip(batch, slots, strict=True) if r in self.running]
        if not keep:
            return True
        batch = [r for r, _ in keep]
        new_slots = torch.cat([s for _, s in keep])
        B = len(batch)
        tables = [torch.cat([r.slots, s]) for r, s in keep]
        kv_len = torch.tensor([len(t) for t in tables])
        if getattr(self.executor, "needs_kv_table", True):
            kv_slots = torch.nn.utils.rnn.pad_sequence(tables, batch_first=True, padding_value=0)
        else:  # the simulator only needs lengths; skip the O(batch x context) table
            kv_slots = torch.empty(B, 0, dtype=torch.int64)
        layers = tuple(sorted({layer for r in batch if r.capture for layer in r.capture.layers}))
        t0 = time.monotonic()
        out = self.executor.forward(ForwardBatch(
            tokens=torch.tensor([[r.output_ids[-1]] for r in batch]), positions=(kv_len - 1)[:, None],
            write_slots=new_slots[:, None], kv_slots=kv_slots, kv_len=kv_len,
            logit_index=torch.zeros(B, dtype=torch.int64), capture_layers=layers))  # fmt: skip
        dt = time.monotonic() - t0
        self.stats.decode_steps += 1
        self.stats.decode_seqs += B
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
        tokens = sample(logits, reqs)
        if logprobs is not None:
            for row, i in enumerate(want):
                req, lp = reqs[i], logprobs[row]
                req.output_logprobs.append((float(lp[tokens[i]]), tokens[i]))
                if req.top_logprobs_num > 0:
                    top = torch.topk(lp, req.top_logprobs_num)
                    req.output_top_logprobs.append(list(zip(top.values.tolist(), top.indices.tolist(), strict=True)))
        now = time.monotonic()
        for req, tok in zip(reqs, tokens, strict=True):
            req.output_ids.append(tok)
            req.batch_size_sum += batch_size
            req.decode_steps += 1
            self.stats.generation_tokens += 1
            if req.first_token_at is None:
                req.first_token_at = now
                self.observe(("ttft", now - req.created))
            reason = self._stop_reason(req, tok)
            if reason is not None:
                self.running.remove(req)
                self._finish(req, reason)
            elif req.stream:  # non-streaming waiters only need the final event
                req.notify("token")

    def _stop_reason(self, req: Req, tok: int) -> dict[str, Any] | None:
        p = req.params
        if req.grammar is not None:
            if not req.grammar.accept_token(tok):
                return {"type": "abort", "message": f"grammar rejected token {tok}"}
            if req.grammar.is_terminated():
                return {"type": "stop", "matched": tok}
        if tok in p.stop_token_ids or (not p.ignore_eos and tok in self.eos_token_ids):
            return {"type": "stop", "matched": tok}
        if p.stop:
            text = self.tokenizer.decode(req.output_ids, skip_special_tokens=p.skip_special_tokens)
            tail_from = max(0, len(req.text) - max(len(s) for s in p.stop))
            req.text = text
            for s in p.stop:
                pos = text.find(s, tail_from)
                if pos >= 0:
                    req.text = text if p.no_stop_trim else text[:pos]
                    return {"type": "stop", "matched": s}
        if len(req.output_ids) >= p.max_new_tokens:
            return {"type": "length", "length": p.max_new_tokens}
        if len(req.input_ids) + len(req.output_ids) >= self.context_length:
            return {"type": "length", "length": len(req.output_ids)}
        return None

    # --- retraction and finishing ----------------------------------------------------------------
    def _retract_one(self, exclude: Req | None, prefer_not: Req | None = None) -> bool:
        """Retract the newest running request (not ``exclude``); False when none can be."""
        candidates = [r for r in self.running if r is not exclude]
        if not candidates:
            return False
        others = [r for r in candidates if r is not prefer_not]
        victim = (others or candidates)[-1]
        self.running.remove(victim)
        self._release_kv(victim)
        victim.retractions += 1
        victim.state = ReqState.WAITING
        self.stats.retractions += 1
        self.waiting.appendleft(victim)
        log.info("retracted %s after %d tokens (KV pool full)", victim.rid, len(victim.output_ids))
        return True

    def _release_kv(self, req: Req) -> Any:
        """Give the request's KV to the radix cache (evictable) and drop its lock; returns the node."""
        node = None
        n = int(req.slots.numel())
        if n:
            ids = req.seq_ids[:n]
            if self.radix.enabled:
                already, node = self.radix.insert(ids, req.slots)
                if already > req.n_prefix:
                    self.pool.free(req.slots[req.n_prefix : already])
            else:
                self.pool.free(req.slots[req.n_prefix :])
        if req.prefix_node is not None:
            self.radix.unlock(req.prefix_node)
            req.prefix_node = None
        req.slots = torch.empty(0, dtype=torch.int64)
        req.n_prefix = 0
        req.prefill_done = 0
        return node

    def _finish(self, req: Req, reason: dict[str, Any]) -> None:
        n_kv = int(req.slots.numel())
        ids_with_kv = req.seq_ids[:n_kv]
        node = self._release_kv(req)
        req.state = ReqState.FINISHED
        req.finish_reason = reason
        req.finished_at = time.monotonic()
        if reason["type"] != "abort" and node is not None:
            if req.session_id is not None:
                self._advance_session(req, node, ids_with_kv)
            if req.radix_session_id is not None:
                self.radix.soft_ref(node, +1)
                self.radix_sessions.setdefault(req.radix_session_id, []).append(node)
        elif req.session_id is not None:
            with self.sessions_lock:  # aborted turn: the session rolls back to its last finished turn
                s = self.sessions.get(req.session_id)
                if s is not None and s.inflight is req:
                    s.inflight = None
                    s.last_active = time.monotonic()
        if req.capture is not None and req.capture.prompt is None:
            req.capture.prompt = req.capture.snapshot()
        if not req.text or req.finish_reason.get("type") != "stop" or not req.params.stop:
            req.text = self.tokenizer.decode(req.output_ids, skip_special_tokens=req.params.skip_special_tokens)
        self.stats.finished_requests += 1
        if req.first_token_at is not None:
            self.observe(("e2e", req.finished_at - req.created))
        req.notify("done")

    def _advance_session(self, req: Req, node: Any, ids_with_kv: list[int]) -> None:
        with self.sessions_lock:
            s = self.sessions.get(req.session_id or "")
            if s is None or s.closed:
                return
            self.radix.lock(node)
            if s.node is not None:
                self.radix.unlock(s.node)
            s.node = node
            s.kv_ids = ids_with_kv
            s.pending_ids = req.seq_ids[len(ids_with_kv) :]
            s.last_rid = req.rid
            s.inflight = None
            s.last_active = time.monotonic()


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


def new_request(rid: str, input_ids: list[int], params: Any, **kw: Any) -> Req:
    req = Req(rid=rid, input_ids=input_ids, params=params, **kw)
    req.generator = make_generator(params.sampling_seed)
    return req


def capture_for(layers: list[int] | None, last_k: int | None, n_layers: int) -> HiddenCapture:
    chosen = tuple(layers) if layers else (n_layers - 1,)
    for layer in chosen:
        if not 0 <= layer < n_layers:
            raise ValueError(f"hidden_states_layers: layer {layer} out of range 0..{n_layers - 1}")
    k = last_k or 3
    if k < 1:
        raise ValueError(f"hidden_states_last_k must be >= 1, got {k}")
    return HiddenCapture(layers=chosen, last_k=k)

"""Token sampling: penalties, temperature, top-k, top-p, min-p, per-request seeded generators."""

from __future__ import annotations

import torch

from interleaf.runtime.engine.request import Req


def sample(logits: torch.Tensor, reqs: list[Req]) -> list[int]:
    """One token per row of ``logits`` (B, vocab), already grammar-masked."""
    if all(r.params.greedy and not _penalised(r) for r in reqs):
        return logits.argmax(dim=-1).tolist()  # the common case, one op for the whole batch
    out: list[int] = []
    for row, req in zip(logits, reqs, strict=True):
        p = req.params
        if _penalised(req):
            row = _penalise(row.clone(), req)
        if p.greedy:
            out.append(int(torch.argmax(row)))
            continue
        row = row / p.temperature
        if p.top_k > 0:
            kth = torch.topk(row, min(p.top_k, row.numel())).values[-1]
            row = row.masked_fill(row < kth, float("-inf"))
        probs = torch.softmax(row, dim=-1)
        if p.top_p < 1.0:
            sorted_p, idx = torch.sort(probs, descending=True)
            drop = torch.cumsum(sorted_p, 0) - sorted_p > p.top_p
            sorted_p[drop] = 0
            probs = torch.zeros_like(probs).scatter_(0, idx, sorted_p)
        if p.min_p > 0:
            probs[probs < p.min_p * probs.max()] = 0
        out.append(int(torch.multinomial(probs / probs.sum(), 1, generator=req.generator)))
    return out


def _penalised(req: Req) -> bool:
    p = req.params
    return bool(p.frequency_penalty or p.presence_penalty or p.repetition_penalty != 1.0)


def _penalise(row: torch.Tensor, req: Req) -> torch.Tensor:
    p = req.params
    if not req.output_ids:
        return row
    ids = torch.tensor(req.output_ids)
    uniq, counts = torch.unique(ids, return_counts=True)
    if p.repetition_penalty != 1.0:
        vals = row[uniq]
        row[uniq] = torch.where(vals > 0, vals / p.repetition_penalty, vals * p.repetition_penalty)
    row[uniq] -= p.frequency_penalty * counts.to(row.dtype) + p.presence_penalty
    return row


def make_generator(seed: int | None) -> torch.Generator | None:
    if seed is None:
        return None
    g = torch.Generator()
    g.manual_seed(seed)
    return g

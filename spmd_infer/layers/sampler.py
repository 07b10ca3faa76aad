"""Sampling from logits with per-request counter-based noise: same tokens whatever the batch or layout.

Each request's randomness is a pure function of (seed, request id, output position, token id): an
integer hash turned into Gumbel noise. So a request samples the same token in any batch, on any DP
rank, after any preemption, and every TP rank of a DP group samples the same token with no broadcast.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import torch
from spmd_kernels import greedy_argmax, gumbel_sample

from ..host_memory import to_device

MASK32 = 0xFFFFFFFF


def _mix32(x):
    """lowbias32 (Chris Wellons): a 32-bit permutation with strong avalanche; works on ints and int64 tensors."""
    x = x ^ (x >> 16)
    x = (x * 0x7FEB352D) & MASK32
    x = x ^ (x >> 15)
    x = (x * 0x846CA68B) & MASK32
    return x ^ (x >> 16)


def request_key(seed: int, request_id) -> int:
    """A 32-bit key for the request's generator, stable across processes (no Python hash salt)."""
    digest = hashlib.blake2b(f"{seed}\x00{request_id!r}".encode(), digest_size=8).digest()
    return int.from_bytes(digest[:4], "little") ^ _mix32(int.from_bytes(digest[4:], "little"))


def sample_key(seed: int, request_id, sample_index: int) -> int:
    """The key of completion `sample_index` of a request (n > 1); completion 0 keeps the n = 1 key."""
    return request_key(seed, request_id if sample_index == 0 else (request_id, sample_index))


def row_stream(key, position):
    """The hash state for one draw: request key and output position (ints, or int64 arrays/tensors)."""
    return _mix32(_mix32(key) ^ _mix32((position * 0x9E3779B9) & MASK32))


@dataclass
class SamplingTensors:
    """Per-row sampling parameters for one step, already on the logits' device."""

    temperature: torch.Tensor  # [S] float32, 0 for greedy rows
    top_k: torch.Tensor  # [S] int64, 0 = off
    top_p: torch.Tensor  # [S] float32
    min_p: torch.Tensor  # [S] float32
    streams: torch.Tensor  # [S] int64 row_stream values
    need_top_k: bool
    need_top_p: bool
    need_min_p: bool
    all_greedy: bool

    @classmethod
    def build(cls, params: list, keys: list[int], positions: list[int], device: torch.device) -> "SamplingTensors":
        """From each row's SamplingParams, generator key and output position: one copy to the device."""
        all_greedy = all(p.greedy for p in params)
        n = len(params)
        if all_greedy:  # argmax needs none of the tensors
            empty = torch.empty(0, device=device)
            return cls(empty, empty, empty, empty, empty, False, False, False, True)
        host = np.empty((5, n), dtype=np.float64)
        host[0] = [p.temperature for p in params]
        host[1] = [p.top_k for p in params]
        host[2] = [p.top_p for p in params]
        host[3] = [p.min_p for p in params]
        # Streams are < 2**32, exact in float64; row_stream over arrays is the same integer hash.
        host[4] = row_stream(np.asarray(keys, dtype=np.int64), np.asarray(positions, dtype=np.int64))
        dev = to_device(host, device)
        sampled = [p for p in params if not p.greedy]
        return cls(temperature=dev[0].float(), top_k=dev[1].long(), top_p=dev[2].float(), min_p=dev[3].float(),
                   streams=dev[4].long(), need_top_k=any(p.top_k > 0 for p in sampled),
                   need_top_p=any(p.top_p < 1.0 for p in sampled), need_min_p=any(p.min_p > 0.0 for p in sampled),
                   all_greedy=False)


def gumbel_noise(streams: torch.Tensor, vocab: int) -> torch.Tensor:
    """[S, V] standard Gumbel noise, a pure function of each row's stream and the token id."""
    ids = torch.arange(vocab, device=streams.device, dtype=torch.int64)
    bits = _mix32(_mix32(streams.unsqueeze(1) ^ ids.unsqueeze(0)))
    u = ((bits >> 8).to(torch.float32) + 0.5) / 2.0**24  # 24 bits fill a float32 mantissa; never 0 or 1
    return -torch.log(-torch.log(u))


def sample(logits: torch.Tensor, t: SamplingTensors) -> torch.Tensor:
    """logits [S, V] in the model's dtype or float32 (penalties and masks already applied) -> token ids [S] int64.

    The same tokens either way: argmax and the fused kernel compare values exactly as float32 would, and the
    other paths compute in float32.
    """
    if t.all_greedy:
        return greedy_argmax(logits) if logits.is_cuda else logits.argmax(dim=-1)
    if logits.is_cuda and not (t.need_top_k or t.need_top_p or t.need_min_p):
        return gumbel_sample(logits, t.temperature, t.streams)  # fused: the [S, V] noise never exists
    logits = logits.float()
    greedy = logits.argmax(dim=-1)
    temp = torch.where(t.temperature > 0, t.temperature, 1.0).unsqueeze(1)
    scaled = logits / temp
    if t.need_top_k:
        scaled = _apply_top_k(scaled, t.top_k)
    if t.need_top_p or t.need_min_p:
        probs = scaled.softmax(dim=-1)
        if t.need_min_p:
            scaled = scaled.masked_fill(probs < t.min_p.unsqueeze(1) * probs.max(dim=-1, keepdim=True).values,
                                        float("-inf"))
        if t.need_top_p:
            scaled = _apply_top_p(scaled, probs, t.top_p)
    drawn = (scaled + gumbel_noise(t.streams, scaled.shape[-1])).argmax(dim=-1)
    return torch.where(t.temperature > 0, drawn, greedy)


def _apply_top_k(scaled: torch.Tensor, top_k: torch.Tensor) -> torch.Tensor:
    vocab = scaled.shape[-1]
    k = torch.where((top_k > 0) & (top_k < vocab), top_k, vocab)
    kth = scaled.sort(dim=-1, descending=True).values.gather(1, (k - 1).unsqueeze(1))
    return scaled.masked_fill(scaled < kth, float("-inf"))


def _apply_top_p(scaled: torch.Tensor, probs: torch.Tensor, top_p: torch.Tensor) -> torch.Tensor:
    sorted_p, order = probs.sort(dim=-1, descending=True)
    # Keep a token if the mass strictly before it is below top_p (so the most likely one always stays).
    drop_sorted = (sorted_p.cumsum(dim=-1) - sorted_p) >= top_p.unsqueeze(1)
    drop = torch.zeros_like(drop_sorted).scatter(1, order, drop_sorted)
    return scaled.masked_fill(drop, float("-inf"))


def apply_output_penalties(logits: torch.Tensor, rows: list[int], outputs: list[list[int]],
                           presence: list[float], frequency: list[float]) -> None:
    """OpenAI's rule, in place: a token's logit loses presence once if the output holds it, and frequency once per
    time it does (vLLM's order: after the repetition penalty, on the output tokens only)."""
    for row, tokens, p, f in zip(rows, outputs, presence, frequency):
        if not tokens:
            continue
        ids, counts = torch.tensor(tokens, device=logits.device, dtype=torch.int64).unique(return_counts=True)
        logits[row, ids] -= p + f * counts.to(logits.dtype)


def apply_repetition_penalty(logits: torch.Tensor, rows: list[int], token_sets: list[list[int]],
                             penalties: list[float]) -> None:
    """transformers' rule, in place: seen tokens' positive logits are divided, negative ones multiplied."""
    for row, tokens, penalty in zip(rows, token_sets, penalties):
        ids = torch.tensor(sorted(set(tokens)), device=logits.device, dtype=torch.int64)
        seen = logits[row, ids]
        logits[row, ids] = torch.where(seen > 0, seen / penalty, seen * penalty)

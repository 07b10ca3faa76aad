"""Sampling from logits with per-request counter-based noise: same tokens whatever the batch or layout.

Each request's randomness is a pure function of (seed, request id, output position, token id): an
integer hash turned into Gumbel noise. So a request samples the same token in any batch, on any DP
rank, after any preemption, and every TP rank of a DP group samples the same token with no broadcast.

Filters are a per-row value threshold tau on the scaled logits x = logits / temperature (float32, IEEE division):
a row keeps {v : x_v >= tau}, and the draw is argmax(x_v + noise_v) over the kept tokens (on CUDA inside the fused
Gumbel kernel, so neither the [S, V] noise nor a mask exists). Every rule keeps or drops tied values together:
- top-k (0 < top_k < V): keep x_v >= the k-th largest value (transformers' rule: ties with the k-th stay);
- p = softmax of x over the top-k set; min-p: keep p_v >= min_p * max(p);
- top-p (< 1): keep v when the mass of the tokens strictly more probable than v is < top_p (so the most probable
  always stays, and tied tokens stay or go together, whatever order a sort put them in).
A token is kept when it passes all three; min-p and top-p both read p over the top-k set, not each other's result.
On the row sorted in descending order each rule keeps a prefix, so all three keep one too, and tau is the value at
its end (filter_thresholds): a value threshold keeps the whole tie group of that last token, which turns top-p's
sorted-order prefix (mass before the position < top_p) into the tie rule above. Greedy rows (temperature 0) take the
argmax of the raw logits, which every filter keeps.

Batch invariance holds for the filters too: a row's tau is the same bits in any batch. A row's path (torch.topk's
candidates or a full sort, TOPK_CANDIDATES) follows its own parameters; the softmax denominator and the masses are
summed one row a program (candidate_thresholds), in an order fixed by the row alone (torch's sum and cumsum on CUDA
change their order with the batch's shape).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import torch
from spmd_kernels import (
    candidate_thresholds,
    candidate_thresholds_ref,
    greedy_argmax,
    gumbel_sample,
    tail_floor,
    tail_floor_ref,
)

from ..host_memory import upload_typed

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


# Rows with top_k up to this take their sorted candidates from torch.topk (at most this many values a row), and so do
# rows without top_k (top_p and / or min_p): their kept set is found among that many candidates, or, where it runs
# past them, by a pass over the whole row for min-p and a search over it for top-p (tail_floor). Rows with a larger
# top_k sort their whole row. The choice follows the row's own parameters alone, never the batch's, and the threshold
# does not depend on how many candidates a row has past its own k (see _group_thresholds). On an H200 at a 152k
# vocabulary, 256 rows: torch.topk of 1024 0.64 ms, a full sort 2.7 ms.
TOPK_CANDIDATES = 1024


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
    topk_rows: torch.Tensor  # int64, ascending: sampled rows with a filter and 1 <= top_k <= TOPK_CANDIDATES
    tail_rows: torch.Tensor  # int64, ascending: sampled rows without top_k (top_k <= 0) with top_p < 1 or min_p > 0
    sort_rows: torch.Tensor  # int64, ascending: the other sampled rows with a filter
    topk_kmax: int  # the largest top_k of topk_rows (0 when there are none)

    @classmethod
    def build(cls, params: list, keys: list[int], positions: list[int], device: torch.device) -> "SamplingTensors":
        """From each row's SamplingParams, generator key and output position: one copy to the device."""
        all_greedy = all(p.greedy for p in params)
        if all_greedy:  # argmax needs none of the tensors
            empty = torch.empty(0, device=device)
            no_rows = torch.empty(0, dtype=torch.int64, device=device)
            return cls(empty, empty, empty, empty, empty, False, False, False, True, no_rows, no_rows, no_rows, 0)
        filtered = [i for i, p in enumerate(params)
                    if not p.greedy and (p.top_k > 0 or p.top_p < 1.0 or p.min_p > 0.0)]
        by_topk = [i for i in filtered if 0 < params[i].top_k <= TOPK_CANDIDATES]
        by_tail = [i for i in filtered if params[i].top_k <= 0]  # vLLM's -1: off
        grouped = set(by_topk + by_tail)
        by_sort = [i for i in filtered if i not in grouped]
        # One copy of typed views: no conversion kernels on the device (each a launch of host time per step).
        filters = np.array([[p.temperature, p.top_p, p.min_p] for p in params], dtype=np.float32).T
        top_k = np.array([p.top_k for p in params], dtype=np.int64)
        streams = row_stream(np.asarray(keys, dtype=np.int64), np.asarray(positions, dtype=np.int64))
        groups = np.array(by_topk + by_tail + by_sort, dtype=np.int64)
        temperature, top_p, min_p, top_k_dev, streams_dev, groups_dev = upload_typed(
            [filters[0], filters[1], filters[2], top_k, streams, groups], device)
        tail_end = len(by_topk) + len(by_tail)
        sampled = [p for p in params if not p.greedy]
        return cls(temperature=temperature, top_k=top_k_dev, top_p=top_p, min_p=min_p, streams=streams_dev,
                   need_top_k=any(p.top_k > 0 for p in sampled), need_top_p=any(p.top_p < 1.0 for p in sampled),
                   need_min_p=any(p.min_p > 0.0 for p in sampled), all_greedy=False,
                   topk_rows=groups_dev[:len(by_topk)], tail_rows=groups_dev[len(by_topk):tail_end],
                   sort_rows=groups_dev[tail_end:],
                   topk_kmax=max((params[i].top_k for i in by_topk), default=0))


def gumbel_noise(streams: torch.Tensor, vocab: int) -> torch.Tensor:
    """[S, V] standard Gumbel noise, a pure function of each row's stream and the token id."""
    ids = torch.arange(vocab, device=streams.device, dtype=torch.int64)
    bits = _mix32(_mix32(streams.unsqueeze(1) ^ ids.unsqueeze(0)))
    u = ((bits >> 8).to(torch.float32) + 0.5) / 2.0**24  # 24 bits fill a float32 mantissa; never 0 or 1
    return -torch.log(-torch.log(u))


def sample(logits: torch.Tensor, t: SamplingTensors) -> torch.Tensor:
    """logits [S, V] in the model's dtype or float32 (penalties and masks already applied) -> token ids [S] int64.

    The same tokens either way: argmax and the fused kernel compare values exactly as float32 would, and the
    other paths compute in float32. CPU and CUDA follow one rule (argmax of kept scaled logits + noise); on the CPU
    in torch, with the [S, V] noise.
    """
    if t.all_greedy:
        return greedy_argmax(logits) if logits.is_cuda else logits.argmax(dim=-1)
    threshold = filter_thresholds(logits, t) if t.need_top_k or t.need_top_p or t.need_min_p else None
    if logits.is_cuda:
        return gumbel_sample(logits, t.temperature, t.streams, threshold)  # fused: the [S, V] noise never exists
    logits = logits.float()
    greedy = logits.argmax(dim=-1)
    scaled = logits / torch.where(t.temperature > 0, t.temperature, 1.0).unsqueeze(1)
    if threshold is not None:
        scaled = torch.where(scaled >= threshold.unsqueeze(1), scaled, float("-inf"))
    drawn = (scaled + gumbel_noise(t.streams, scaled.shape[-1])).argmax(dim=-1)
    return torch.where(t.temperature > 0, drawn, greedy)


def filter_thresholds(logits: torch.Tensor, t: SamplingTensors, kernels: bool | None = None) -> torch.Tensor:
    """[S] float32: each row's tau, the least scaled logit it keeps under its top-k / top-p / min-p (the module's
    rules); -inf for rows without a filter. No host sync: the row groups and their sizes come from the host.

    kernels: candidate_thresholds and tail_floor as Triton kernels (None: on CUDA) or as their torch
    references.
    """
    if kernels is None:
        kernels = logits.is_cuda
    S = logits.shape[0]
    groups = [(rows, kmax, past) for rows, kmax, past in ((t.topk_rows, t.topk_kmax, False),
                                                          (t.tail_rows, TOPK_CANDIDATES, True),
                                                          (t.sort_rows, 0, False)) if rows.numel()]
    if len(groups) == 1 and groups[0][0].numel() == S:  # ascending and distinct: every row, in order
        return _group_thresholds(logits, t, *groups[0], kernels)
    threshold = torch.full((S,), float("-inf"), dtype=torch.float32, device=logits.device)
    for rows, kmax, past in groups:
        threshold.index_copy_(0, rows, _group_thresholds(logits, t, rows, kmax, past, kernels))
    return threshold


def _group_thresholds(logits: torch.Tensor, t: SamplingTensors, rows: torch.Tensor, kmax: int, past: bool,
                      kernels: bool) -> torch.Tensor:
    """Thresholds of one row group: kmax > 0, the rows' top max(kmax) values as candidates; kmax 0, whole rows;
    `past`: rows without top_k, whose kept set may run past the candidates.

    The kept set is a prefix of the sorted candidates c (each rule's is, see the module docstring): tau is the
    value at its end. Candidates cut at kmax change nothing: a row's top-k prefix ends by its own k <= kmax, and
    where ties with the k-th value run past the cut, the cut falls on that same value. Probabilities and masses
    take values past the cut from Z, a sum over the whole row, and from prefix sums whose order is fixed by the
    position (candidate_thresholds): a row's tau is the same bits in any batch.
    """
    def take(x: torch.Tensor) -> torch.Tensor:
        return x if rows.numel() == logits.shape[0] else x.index_select(0, rows)

    x = take(logits)
    temperature = take(t.temperature)
    V = x.shape[1]
    # Raw values sorted, then scaled: the scaled values in sorted order (temperature > 0 here, division monotone).
    vals = x.topk(min(kmax, V), dim=-1).values if kmax else x.sort(dim=-1, descending=True).values
    # The rules on the candidates, one launch on CUDA (each rule keeps a prefix of them; the kernel's docstring).
    thresholds = candidate_thresholds if kernels else candidate_thresholds_ref
    top_p, min_p = take(t.top_p), take(t.min_p)
    tau, count, row_max, exp_sum = thresholds(x, vals, temperature, take(t.top_k), top_p, min_p, t.need_top_p,
                                              t.need_min_p)
    if past and vals.shape[1] < V:
        # A row keeping every candidate may keep more past them: its threshold from the whole row (tau, kept, is the
        # upper bound top-p's search starts from). Where the last candidate is dropped the prefix ends inside the
        # candidates, and the value threshold keeps its tie group past the cut.
        floor = tail_floor if kernels else tail_floor_ref
        floor(x, temperature, top_p, min_p, row_max, exp_sum, count == vals.shape[1], tau, t.need_min_p)
    return tau

"""Multi-head latent attention (DeepSeek MLA) over a paged cache of compressed latents (Triton on CUDA, torch on CPU).

Each token caches one entry per layer: its normed KV latent c (kv_lora_rank) and its roped shared key
k_pe (qk_rope_head_dim), not per-head K and V. kv_b_proj's weight W maps c to every head's k_nope (W_UK)
and V (W_UV). Prefill expands the cached latents to per-head K and V; decode uses the absorbed form:
q_nope·W_UK turns the query into latent space, so attention reads the latents directly and W_UV is
applied once to the attended latent. Both give softmax((q_nope·k_nope + q_pe·k_pe)·scale)·V.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from spmd_kernels import (head_gemm, mla_decode, mla_rope_norm_store, paged_prefill_attention, store_latent,
                          store_latent_ref)
from spmd_kernels.head_gemm import head_gemm_supports
from spmd_kernels.pdl import pdl_enabled
from torch import nn

from ..forward_batch import ForwardBatch
from ..host_memory import to_device

# Cached context tokens expanded to per-head K/V at once in a prefill step (about the warmup's
# max_num_batched_tokens, so the activation peak measured there covers it); a single sequence's
# context is never split, so a longer one is expanded whole.
_EXPAND_TOKENS = 8192
# SPMD_MLA_HEAD_GEMM=1: decode's absorbed products (q_nope by W_UK, the attended latent by W_UV) at up to 16 tokens
# run in kernels/head_gemm.py, which fetches its weights before its wait on the kernel before it (programmatic
# dependent launch), instead of torch.bmm, a cuBLAS launch outside that chain. 0: torch.bmm always. H200 (session 35,
# tests/gpu/run_mla_head_gemm.sh): DeepSeek-V2-Lite decode @1k bs1 / bs8 / bs16 +1.6 / +1.6 / +0.7% tok/s.
HEAD_GEMM = os.environ.get("SPMD_MLA_HEAD_GEMM", "1") == "1"
# SPMD_MLA_ROPE_STORE=1: on CUDA with a cache, q_pe's rotary, the latent's norm and k_pe's rotary into the cache run
# as one kernel (kernels/mla_rope_store.py: the same bits) instead of rms_norm, the rotary and store_latent. 0: three.
# H200 (session 35, tests/gpu/run_mla_rope_store.sh): DeepSeek-V2-Lite decode @1k bs1 2.7 -> 2.6 ms, bs16 / bs64 even.
ROPE_STORE = os.environ.get("SPMD_MLA_ROPE_STORE", "1") == "1"
# Tests set this to take that path on the CPU too (the kernels under the interpreter).
ROPE_STORE_ON_CPU = False


class LatentAttention(nn.Module):
    """Owns one layer's latent cache ([num_blocks, block_size, 1, kv_lora_rank + qk_rope_head_dim], in the model's
    dtype or float8 under cache.dtype=fp8).

    Holds no parameters: the caller passes kv_b_proj's (local heads') weight, so checkpoint names stay
    those of the attention module. Under TP every rank caches the same latents (one shared KV "head").
    """

    # The CUDA decode path has no host syncs and no data-dependent shapes; the torch paths read lengths
    # on the host, but CUDA graphs are never used on CPU.
    cuda_graph_safe = True

    def __init__(self, num_heads: int, kv_lora_rank: int, qk_nope_head_dim: int, qk_rope_head_dim: int,
                 v_head_dim: int, scale: float):
        super().__init__()
        self.num_heads = num_heads
        self.kv_lora_rank = kv_lora_rank
        self.nope, self.rope, self.v_dim = qk_nope_head_dim, qk_rope_head_dim, v_head_dim
        self.scale = scale
        self.cache: torch.Tensor | None = None

    def kv_cache_dims(self) -> list[tuple[int, int]]:
        return [(1, self.kv_lora_rank + self.rope)]

    def bind_kv_cache(self, caches: list[torch.Tensor]) -> None:
        (self.cache,) = caches

    def stores_positioned(self, x: torch.Tensor, batch: ForwardBatch) -> bool:
        """Whether this step's new tokens go into the cache by position_and_store (ROPE_STORE, on CUDA, with a cache
        and slots), the caller then passing forward latent and k_pe as None."""
        return (ROPE_STORE and (x.is_cuda or ROPE_STORE_ON_CPU) and self.cache is not None
                and batch.slot_mapping is not None)

    def position_and_store(self, positions: torch.Tensor, q_pe: torch.Tensor, latent: torch.Tensor,
                           k_pe: torch.Tensor, cos_sin: torch.Tensor, is_neox: bool, norm_weight: torch.Tensor,
                           eps: float, batch: ForwardBatch) -> torch.Tensor:
        """q_pe [T, H, rope] rotated in place (returned); the raw latent [T, R] normed (norm_weight, eps) and the raw
        k_pe [T, rope] rotated into this layer's cache at the batch's slots, in one kernel (stores_positioned)."""
        return mla_rope_norm_store(q_pe, latent, k_pe, positions, cos_sin, is_neox, norm_weight, eps, self.cache,
                                   batch.slot_mapping)

    def forward(self, q_nope: torch.Tensor, q_pe: torch.Tensor, latent: torch.Tensor | None,
                k_pe: torch.Tensor | None, w_kv_b: torch.Tensor, batch: ForwardBatch) -> torch.Tensor:
        """q_nope [T, H, nope], q_pe [T, H, rope], latent [T, R], k_pe [T, rope], w_kv_b [H*(nope+v), R]
        -> [T, H, v]. latent and k_pe None: position_and_store has cached them already."""
        if q_nope.is_cuda or latent is None:
            return self._forward_kernels(q_nope, q_pe, latent, k_pe, w_kv_b, batch)
        entries = torch.cat([latent, k_pe], dim=-1)
        if self.cache is None or batch.slot_mapping is None:
            # Warmup and DP-attention dummy batches: no cache, each sequence attends to its new tokens.
            return self._expanded(q_nope, q_pe, entries, w_kv_b, batch, paged=False)
        # -1 marks padding tokens that own no slot; a float8 cache saturates as the store kernel does.
        store_latent_ref(entries.unsqueeze(1), self.cache, batch.slot_mapping)
        if batch.is_prefill:
            return self._expanded(q_nope, q_pe, self.cache, w_kv_b, batch, paged=True)
        return self._absorbed(q_nope, q_pe, w_kv_b, batch)

    def _expanded(self, q_nope, q_pe, entries, w_kv_b, batch: ForwardBatch, paged: bool) -> torch.Tensor:
        """Per sequence: latents -> per-head K (k_nope ++ shared k_pe) and V, then causal SDPA."""
        q = torch.cat([q_nope, q_pe], dim=-1)
        out = q.new_empty((q.shape[0], self.num_heads, self.v_dim))
        cu, lens = batch.cu_seqlens_q.tolist(), batch.context_lens.tolist()
        block_size = entries.shape[1] if paged else 0
        for i in range(len(cu) - 1):
            qs, qe, kv_len = cu[i], cu[i + 1], lens[i]
            if qe == qs:
                continue
            if paged:
                blocks = batch.block_tables[i, : -(-kv_len // block_size)].long()
                e = entries[blocks].flatten(0, 2)[:kv_len].to(q.dtype)  # a float8 cache widened as read
            else:
                e = entries[qs:qe]
            c, k_pe = e.split([self.kv_lora_rank, self.rope], dim=-1)
            kv = F.linear(c, w_kv_b).view(kv_len, self.num_heads, self.nope + self.v_dim)
            k_nope, v = kv.split([self.nope, self.v_dim], dim=-1)
            k = torch.cat([k_nope, k_pe.unsqueeze(1).expand(-1, self.num_heads, -1)], dim=-1)
            q_len = qe - qs
            # Query j sits at absolute position kv_len - q_len + j and sees keys at positions <= its own.
            mask = torch.ones(q_len, kv_len, dtype=torch.bool, device=q.device).tril(diagonal=kv_len - q_len)
            o = F.scaled_dot_product_attention(q[qs:qe].transpose(0, 1), k.transpose(0, 1), v.transpose(0, 1),
                                               attn_mask=mask, scale=self.scale)
            out[qs:qe] = o.transpose(0, 1)
        return out

    def _absorbed(self, q_nope, q_pe, w_kv_b, batch: ForwardBatch) -> torch.Tensor:
        """Attention in latent space over the paged cache, every query of the batch at once."""
        w = w_kv_b.view(self.num_heads, self.nope + self.v_dim, self.kv_lora_rank)
        w_uk, w_uv = w[:, : self.nope], w[:, self.nope:]  # [H, nope, R], [H, v, R]
        q_latent = torch.einsum("thn,hnr->thr", q_nope, w_uk)
        q_lens = batch.cu_seqlens_q.diff().long()
        seq = torch.repeat_interleave(torch.arange(len(q_lens), device=q_lens.device), q_lens)  # [T]
        # Each query's own position: context_len - q_len + its index within the sequence.
        starts = batch.cu_seqlens_q[:-1].long()[seq]
        pos = (batch.context_lens.long() - q_lens)[seq] + torch.arange(seq.numel(), device=seq.device) - starts
        blocks = batch.block_tables.long().clamp(min=0)  # -1 padding reads block 0, masked out below
        width = batch.max_context_len  # keys beyond the longest context are never visible
        visible = torch.arange(width, device=pos.device)[None, :] <= pos[:, None]  # [T, L]
        e = self.cache[blocks].flatten(1, 3)[:, :width][seq].to(q_latent.dtype)  # [T, L, R + rope]
        # Slots past a sequence's end hold whatever the cache held (maybe NaN): zero them, as 0 * NaN = NaN.
        e = e.masked_fill(~visible[:, :, None], 0.0)
        c, k_pe = e.split([self.kv_lora_rank, self.rope], dim=-1)
        scores = (torch.einsum("thr,tlr->thl", q_latent, c) + torch.einsum("thp,tlp->thl", q_pe, k_pe)) * self.scale
        scores = scores.float().masked_fill(~visible[:, None, :], float("-inf"))
        p = scores.softmax(dim=-1).to(c.dtype)
        out_latent = torch.einsum("thl,tlr->thr", p, c)
        return torch.einsum("thr,hvr->thv", out_latent, w_uv)

    # ---- Triton path (CUDA) ----------------------------------------------------------------------------
    def _forward_kernels(self, q_nope, q_pe, latent, k_pe, w_kv_b, batch: ForwardBatch) -> torch.Tensor:
        if self.cache is None or batch.slot_mapping is None:
            return self._attend_new_tokens(q_nope, q_pe, latent, k_pe, w_kv_b, batch)
        # Padding tokens (slot -1) are skipped by the kernel, not filtered here: no host sync.
        if latent is not None:
            store_latent(latent.unsqueeze(1), self.cache, batch.slot_mapping, rope=k_pe.unsqueeze(1))
        if not batch.is_prefill:
            return self._decode_absorbed(q_nope, q_pe, w_kv_b, batch)
        split = batch.attention_split
        if split is None:
            return self.prefill(torch.cat([q_nope, q_pe], dim=-1), batch, w_kv_b)
        # A prefill graph's capture ends here (engine/prefill_graphs.py): q is formed in attention's static input.
        q = torch.cat([q_nope, q_pe], dim=-1, out=split.q_input((self.num_heads, self.nope + self.rope), q_nope.dtype))
        return split(functools.partial(self.attend, w_kv_b=w_kv_b), {"q": q}, (self.num_heads, self.v_dim), q.dtype)

    def _expand(self, c: torch.Tensor, k_pe: torch.Tensor, w_kv_b: torch.Tensor):
        """Latents c [..., R] and shared keys k_pe [..., 1, rope] -> per-head K [..., H, nope + rope] and
        V [..., H, v] (a strided view of the projection, which the kernel reads as is)."""
        kv = F.linear(c, w_kv_b).unflatten(-1, (self.num_heads, self.nope + self.v_dim))
        k_nope, v = kv.split([self.nope, self.v_dim], dim=-1)
        return torch.cat([k_nope, k_pe.expand(*k_nope.shape[:-1], self.rope)], dim=-1), v

    def _attend_new_tokens(self, q_nope, q_pe, latent, k_pe, w_kv_b, batch: ForwardBatch) -> torch.Tensor:
        """Warmup and DP-attention dummy batches (no cache): each sequence attends causally to its own new
        tokens. The packed tokens act as a paged cache of one-token blocks, so no [H, T, T] scores exist."""
        q = torch.cat([q_nope, q_pe], dim=-1)
        if q.shape[0] == 0:
            return q.new_empty((0, self.num_heads, self.v_dim))
        k, v = self._expand(latent, k_pe.unsqueeze(1), w_kv_b)  # [T, H, nope + rope], [T, H, v]
        cu = batch.cu_seqlens_q
        q_lens = cu.diff()  # a sequence's context is its new tokens here
        # max_query_len is a host int in ForwardBatch; only a batch that lacks it costs a sync.
        max_q = batch.max_query_len or int(q_lens.max())
        tables = cu[:-1, None] + torch.arange(max_q, dtype=cu.dtype, device=cu.device)  # token indices
        return paged_prefill_attention(q, k.unsqueeze(1), v.unsqueeze(1), cu, q_lens.to(torch.int32),
                                       tables.to(torch.int32), self.scale, max_seqlen_q=max_q)

    def attend(self, q: torch.Tensor, batch: ForwardBatch, w_kv_b: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """A prefill graph's attention, launched between its pieces (engine/prefill_graphs.py) for the phase of the
        step that replays them: a prefill, or under DP attention a decode that another DP rank's prefill brought
        into the graphs (q split back into q_nope and q_pe for the absorbed form). Rows past the step's tokens (the
        bucket's padding) are neither read nor written."""
        if batch.is_prefill:
            return self.prefill(q, batch, w_kv_b, out)
        n = batch.num_tokens
        q_nope, q_pe = q[:n].split([self.nope, self.rope], dim=-1)
        out[:n].copy_(self._decode_absorbed(q_nope, q_pe, w_kv_b, batch))
        return out

    def prefill(self, q: torch.Tensor, batch: ForwardBatch, w_kv_b: torch.Tensor,
                out: torch.Tensor | None = None) -> torch.Tensor:
        """The CUDA prefill over the cache (this step's latents stored already), q [T, H, nope + rope] -> [T, H, v],
        into `out` when given: expand only the blocks the batch reads (each once), group by group. Rows of q past
        the batch's tokens (a graph bucket's padding) are not read."""
        if out is None:
            out = q.new_empty((q.shape[0], self.num_heads, self.v_dim))
        for g in _context_groups(batch, self.cache.shape[1]):
            entries = self.cache[g.blocks][:, :, 0].to(q.dtype)  # [n, page, R + rope]; a float8 cache widened
            c, k_pe = entries.split([self.kv_lora_rank, self.rope], dim=-1)
            k, v = self._expand(c, k_pe.unsqueeze(-2), w_kv_b)  # [n, page, H, nope + rope], [n, page, H, v]
            paged_prefill_attention(q[g.q0:g.q1], k, v, g.cu_seqlens_q, g.context_lens,
                                    g.block_tables, self.scale, max_seqlen_q=g.max_q, out=out[g.q0:g.q1])
            del entries, c, k_pe, k, v  # one group's expansion alive at a time
        return out

    def _decode_absorbed(self, q_nope, q_pe, w_kv_b, batch: ForwardBatch) -> torch.Tensor:
        """One query per sequence, attended in latent space: no host syncs, fixed shapes (CUDA-graph safe)."""
        assert q_nope.shape[0] == batch.context_lens.shape[0], "decode takes one token per sequence"
        w = w_kv_b.view(self.num_heads, self.nope + self.v_dim, self.kv_lora_rank)
        q_latent = _per_head_product(q_nope, w[:, : self.nope])  # [T, H, R]
        q_pe = q_pe if q_pe.stride(-1) == 1 else q_pe.contiguous()
        # num_splits and max_context_len left None: the split count comes from the block-table width.
        out_latent = mla_decode(q_latent, q_pe, self.cache, batch.block_tables, batch.context_lens, self.scale,
                                order=batch.decode_order)
        return _per_head_product(out_latent, w[:, self.nope:].transpose(1, 2))  # [T, H, v]


def _per_head_product(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """x [T, H, K] @ w [H, K, N] -> [T, H, N] with a contiguous last dim: head_gemm at decode sizes (HEAD_GEMM, where
    kernels use programmatic dependent launch, and on the CPU, where only the kernel-path tests come), else
    torch.bmm batched over heads, whose transposed result keeps the last dim contiguous."""
    if HEAD_GEMM and (not x.is_cuda or pdl_enabled(x.device)) and head_gemm_supports(x, w):
        return head_gemm(x, w)
    return torch.bmm(x.transpose(0, 1), w).transpose(0, 1)


@dataclass
class _Group:
    """Consecutive sequences s0:s1 (queries q0:q1) of a prefill batch whose cached context is expanded together."""

    s0: int
    s1: int
    q0: int
    q1: int
    max_q: int
    blocks: torch.Tensor  # int64 [n]: the physical cache blocks they read, each once (shared prefixes too)
    block_tables: torch.Tensor  # int32 [s1 - s0, width]: each sequence's blocks as indices into `blocks`
    cu_seqlens_q: torch.Tensor  # int32 [s1 - s0 + 1], from 0
    # int32 [s1 - s0], in a buffer of its own: a slice of the batch's would start at any 4-byte offset, and the kernel
    # is specialized on 16-byte-aligned pointers, so a new variant was compiled mid-run (session 28, 2 x H200).
    context_lens: torch.Tensor


def _context_groups(batch: ForwardBatch, page: int) -> list[_Group]:
    """Every MLA layer of a step reads the same blocks: planned once per batch, kept in its step cache."""
    key = ("mla_prefill_groups", page, _EXPAND_TOKENS)
    if key not in batch.step_cache:
        batch.step_cache[key] = _plan_groups(batch, page, _EXPAND_TOKENS)
    return batch.step_cache[key]


def _plan_groups(batch: ForwardBatch, page: int, budget_tokens: int) -> list[_Group]:
    """Split the batch into groups of about `budget_tokens` cached tokens; a host-side plan (prefill only)."""
    S = batch.context_lens.shape[0]
    device = batch.context_lens.device
    if batch.host_tables is not None:
        # The arrays the batch was packed from: no copy back, so an overlapped step keeps the GPU busy meanwhile.
        cu, ctx, tables = (torch.from_numpy(np.asarray(a, dtype=np.int32)) for a in batch.host_tables)
    else:
        # One device-to-host copy for all three: a sync (prefill attention runs outside any graph, so allowed).
        host = torch.cat([batch.cu_seqlens_q.int(), batch.context_lens.int(),
                          batch.block_tables.int().flatten()]).cpu()
        cu, ctx, tables = host[: S + 1], host[S + 1: 2 * S + 1], host[2 * S + 1:].view(S, -1)
    q_lens = cu.diff()
    num_blocks = torch.where(q_lens > 0, (ctx + page - 1) // page, 0)  # sequences without queries read nothing
    # Group g holds the sequences whose blocks start in [g * budget, (g + 1) * budget).
    group_of = (num_blocks.cumsum(0) - num_blocks) // max(budget_tokens // page, 1)
    groups, s0 = [], 0
    for n in torch.unique_consecutive(group_of, return_counts=True)[1].tolist():
        s1 = s0 + n
        if int(num_blocks[s0:s1].max()) > 0:
            groups.append(_make_group(s0, s1, cu, ctx, q_lens, num_blocks, tables, device))
        s0 = s1
    return groups


def _make_group(s0, s1, cu, ctx, q_lens, num_blocks, tables, device) -> _Group:
    nb = num_blocks[s0:s1]
    width = int(nb.max())
    used = torch.arange(width)[None, :] < nb[:, None]
    # Dedup: sequences sharing a cached prefix point at the same physical blocks; expand those once.
    blocks, local = torch.unique(tables[s0:s1, :width][used], return_inverse=True)
    local_tables = torch.zeros(s1 - s0, width, dtype=torch.int32)
    local_tables[used] = local.int()
    q0, q1 = int(cu[s0]), int(cu[s1])
    # Pinned, asynchronous copies: from pageable memory a copy may first wait for the GPU's queued work.
    return _Group(s0=s0, s1=s1, q0=q0, q1=q1, max_q=int(q_lens[s0:s1].max()),
                  blocks=to_device(blocks.long().numpy(), device),
                  block_tables=to_device(local_tables.numpy(), device),
                  context_lens=to_device(ctx[s0:s1].int().numpy(), device),
                  cu_seqlens_q=to_device((cu[s0: s1 + 1] - q0).int().numpy(), device))

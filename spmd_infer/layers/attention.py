"""Attention over the paged KV cache: stores this step's K/V, then attends causally (torch path)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from spmd_kernels import paged_decode_attention, paged_prefill_attention, store_kv, store_kv_ref
from torch import nn

from ..forward_batch import ForwardBatch


class PagedAttention(nn.Module):
    """Owns a layer's K and V caches ([num_blocks, block_size, kv_heads, head_dim]) once allocated.

    Any module with `kv_cache_dims()` and `bind_kv_cache()` owns cache tensors (MLA holds one latent
    cache instead of K and V); the model runner sizes and allocates them through these two methods.
    """

    def __init__(self, num_heads: int, num_kv_heads: int, head_dim: int, scale: float):
        super().__init__()
        self.num_heads = num_heads
        self.num_kv_heads = num_kv_heads
        self.head_dim = head_dim
        self.scale = scale
        self.k_cache: torch.Tensor | None = None
        self.v_cache: torch.Tensor | None = None

    def kv_cache_dims(self) -> list[tuple[int, int]]:
        """(heads, dim) of each per-token cache entry this layer keeps: K and V."""
        return [(self.num_kv_heads, self.head_dim)] * 2

    def bind_kv_cache(self, caches: list[torch.Tensor]) -> None:
        self.k_cache, self.v_cache = caches

    def stores_through_kernels(self, q: torch.Tensor, batch: ForwardBatch) -> bool:
        """Whether forward() would store this step's K/V with store_kv (so a fused kernel may do it instead)."""
        return q.is_cuda and self.k_cache is not None and batch.slot_mapping is not None

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, batch: ForwardBatch,
                kv_stored: bool = False) -> torch.Tensor:
        """q [T, Hq, D], k/v [T, Hkv, D] -> [T, Hq, D]. kv_stored: k and v are already in the cache (a kernel
        that fused the store into the rotary embedding, kernels/rotary_store_kv.py)."""
        if self.k_cache is None or batch.slot_mapping is None:
            # Warmup/profiling before the cache exists: every sequence attends to its own new tokens.
            return varlen_attention(q, k, v, batch.cu_seqlens_q, batch.context_lens, self.scale, cache=None)
        if q.is_cuda:
            # Triton kernels; no host syncs, so a decode step can be captured in a CUDA graph.
            inputs = {"q": q} if kv_stored else {"q": q, "k": k, "v": v}
            if not batch.is_prefill:
                return self.decode(batch=batch, **inputs)
            if batch.attention_split is not None:  # a prefill graph's capture ends here (prefill_graphs.py)
                return batch.attention_split(self.attend, inputs, q.shape[1:], q.dtype)
            return self.prefill(batch=batch, **inputs)
        if not kv_stored:
            store_kv_ref(k, v, self.k_cache, self.v_cache, batch.slot_mapping)  # the kernel's torch reference
        return varlen_attention(q, self.k_cache, self.v_cache, batch.cu_seqlens_q, batch.context_lens, self.scale,
                                cache=batch.block_tables)

    def attend(self, q: torch.Tensor, batch: ForwardBatch, out: torch.Tensor, k: torch.Tensor | None = None,
               v: torch.Tensor | None = None) -> torch.Tensor:
        """A prefill graph's attention, launched between its pieces (engine/prefill_graphs.py) for the phase of the
        step that replays them: a prefill, or under DP attention a decode that another DP rank's prefill brought
        into the graphs. Rows past the step's tokens (the bucket's padding) are neither read nor written."""
        if batch.is_prefill:
            return self.prefill(q, batch, k, v, out)
        n = batch.num_tokens
        kv = {} if k is None else {"k": k[:n], "v": v[:n]}
        out[:n].copy_(self.decode(q[:n], batch, **kv))
        return out

    def decode(self, q: torch.Tensor, batch: ForwardBatch, k: torch.Tensor | None = None,
               v: torch.Tensor | None = None) -> torch.Tensor:
        """The CUDA decode: this step's K/V into the cache (without them: stored already), then split-KV attention of
        each sequence's one query over its cache (no host sync: CUDA-graph safe)."""
        if k is not None:
            store_kv(k, v, self.k_cache, self.v_cache, batch.slot_mapping)
        return paged_decode_attention(q, self.k_cache, self.v_cache, batch.block_tables, batch.context_lens,
                                      self.scale, order=batch.decode_order)

    def prefill(self, q: torch.Tensor, batch: ForwardBatch, k: torch.Tensor | None = None,
                v: torch.Tensor | None = None, out: torch.Tensor | None = None) -> torch.Tensor:
        """The CUDA prefill: this step's K/V into the cache (without them: stored already), then causal attention
        over the cache, into `out` when given. Rows of q, k and v past the batch's tokens (a graph bucket's padding)
        are not read."""
        if k is not None:
            n = batch.slot_mapping.shape[0]  # (the store's grid covers k's rows: one per slot)
            store_kv(k[:n], v[:n], self.k_cache, self.v_cache, batch.slot_mapping)
        return paged_prefill_attention(q, self.k_cache, self.v_cache, batch.cu_seqlens_q, batch.context_lens,
                                       batch.block_tables, self.scale, max_seqlen_q=batch.max_query_len, out=out)


def varlen_attention(q, k, v, cu_seqlens_q, context_lens, scale, cache) -> torch.Tensor:
    """One causal SDPA per sequence. With `cache` (block tables) k/v are the paged caches, else packed."""
    out = torch.empty_like(q)
    cu = cu_seqlens_q.tolist()
    lens = context_lens.tolist()
    block_size = k.shape[1] if cache is not None else 0
    for i in range(len(cu) - 1):
        qs, qe, kv_len = cu[i], cu[i + 1], lens[i]
        if qe == qs:
            continue
        if cache is None:
            ki, vi = k[qs:qe], v[qs:qe]
        else:
            blocks = cache[i, : -(-kv_len // block_size)].long()
            ki = k[blocks].flatten(0, 1)[:kv_len].to(q.dtype)  # a float8 cache is widened (a no-op otherwise)
            vi = v[blocks].flatten(0, 1)[:kv_len].to(q.dtype)
        q_len = qe - qs
        # Query j sits at absolute position kv_len - q_len + j and sees keys at positions <= its own.
        mask = torch.ones(q_len, kv_len, dtype=torch.bool, device=q.device).tril(diagonal=kv_len - q_len)
        o = F.scaled_dot_product_attention(q[qs:qe].transpose(0, 1), ki.transpose(0, 1), vi.transpose(0, 1),
                                           attn_mask=mask, scale=scale, enable_gqa=True)
        out[qs:qe] = o.transpose(0, 1)
    return out

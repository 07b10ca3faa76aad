"""Multi-head latent attention (DeepSeek MLA) over a paged cache of compressed latents (torch path).

Each token caches one entry per layer: its normed KV latent c (kv_lora_rank) and its roped shared key
k_pe (qk_rope_head_dim), not per-head K and V. kv_b_proj's weight W maps c to every head's k_nope (W_UK)
and V (W_UV). Prefill expands the cached latents to per-head K and V; decode uses the absorbed form:
q_nope·W_UK turns the query into latent space, so attention reads the latents directly and W_UV is
applied once to the attended latent. Both give softmax((q_nope·k_nope + q_pe·k_pe)·scale)·V.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..forward_batch import ForwardBatch


class LatentAttention(nn.Module):
    """Owns one layer's latent cache ([num_blocks, block_size, 1, kv_lora_rank + qk_rope_head_dim]).

    Holds no parameters: the caller passes kv_b_proj's (local heads') weight, so checkpoint names stay
    those of the attention module. Under TP every rank caches the same latents (one shared KV "head").
    """

    cuda_graph_safe = False  # the torch paths read sequence lengths on the host

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

    def forward(self, q_nope: torch.Tensor, q_pe: torch.Tensor, latent: torch.Tensor, k_pe: torch.Tensor,
                w_kv_b: torch.Tensor, batch: ForwardBatch) -> torch.Tensor:
        """q_nope [T, H, nope], q_pe [T, H, rope], latent [T, R], k_pe [T, rope], w_kv_b [H*(nope+v), R]
        -> [T, H, v]."""
        entries = torch.cat([latent, k_pe], dim=-1)
        if self.cache is None or batch.slot_mapping is None:
            # Warmup and DP-attention dummy batches: no cache, each sequence attends to its new tokens.
            return self._expanded(q_nope, q_pe, entries, w_kv_b, batch, paged=False)
        keep = batch.slot_mapping >= 0  # -1 marks padding tokens that own no slot
        self.cache.view(-1, entries.shape[-1])[batch.slot_mapping[keep]] = entries[keep].to(self.cache.dtype)
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
                e = entries[blocks].flatten(0, 2)[:kv_len]
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
        e = self.cache[blocks].flatten(1, 3)[:, :width][seq]  # [T, L, R + rope]
        # Slots past a sequence's end hold whatever the cache held (maybe NaN): zero them, as 0 * NaN = NaN.
        e = e.masked_fill(~visible[:, :, None], 0.0)
        c, k_pe = e.split([self.kv_lora_rank, self.rope], dim=-1)
        scores = (torch.einsum("thr,tlr->thl", q_latent, c) + torch.einsum("thp,tlp->thl", q_pe, k_pe)) * self.scale
        scores = scores.float().masked_fill(~visible[:, None, :], float("-inf"))
        p = scores.softmax(dim=-1).to(c.dtype)
        out_latent = torch.einsum("thl,tlr->thr", p, c)
        return torch.einsum("thr,hvr->thv", out_latent, w_uv)

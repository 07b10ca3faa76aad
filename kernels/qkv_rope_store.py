"""A decode-sized qkv projection with the rotary embedding and the KV-cache store in its epilogue: skinny_gemm,
apply_rotary and store_kv in one launch."""

from __future__ import annotations

import torch

from .rotary_store_kv import rotary_store_kv_ref
from .qkv_epilogue import RopeStore, rope_store_fits
from .skinny_gemm import _launch, _rows, skinny_gemm_config, skinny_gemm_ref, skinny_gemm_supports

# Qwen3's per-head q/k RMSNorms went into this epilogue too, each program then holding one whole head (session 9;
# code at commit a9df00c). Timed on an H200 (session 10, run_qwen3_qkv_norm.sh at that commit), Qwen3-8B decode @1k:
# bs1 4.8-4.9 ms without, 5.0-5.2 ms with it over three tiles; bs16 5.6 against 5.9-6.1 ms. Whole heads mean half
# as many programs streaming the weight (48 instead of 96), which costs more than the launch saved; Qwen3 keeps
# qk_norm_rotary_store_kv after the projection.
# The same epilogue in fp8_linear, over block-float8 qkv weights (session 19; code at commit 45a3845), was timed on an
# H200 (session 20, Llama-3-8B, tests/gpu/run_fp8_qkv_rope.sh and run_fp8_rope_micro.sh at that commit) and removed:
# decode @1k bs64 7.6 against 6.2 ms, bs16 4.3 against 4.0, bs1 3.0 both. Alone, at 64 rows the fused kernel took
# 62.6 us against 19.9 for the projection then rotary_store_kv (16 rows: 23.6 against 15.8; 1 row: 12.0 against
# 12.7). Likely causes, not profiled further: 235 registers a thread at 64 rows against 127 (two programs an SM
# instead of three), and split-K partial sums stored and summed over permuted, unvectorised features.


def qkv_rope_store_supports(x: torch.Tensor, weight: torch.Tensor, rope: RopeStore) -> bool:
    """Whether qkv_rope_store takes this projection: skinny_gemm's operands, a weight of (q + 2 kv heads) * head_dim
    rows, the rotary embedding over whole heads, and output tiles that split heads evenly."""
    n, k = weight.shape
    return skinny_gemm_supports(x, weight) and rope_store_fits(n, skinny_gemm_config(n, k, weight.element_size())[0],
                                                               rope)


def qkv_rope_store(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, rope: RopeStore,
                   config: tuple[int, int, int, int] | None = None) -> torch.Tensor:
    """qkv = x @ weight^T (+ bias) for at most 16 rows, its q and k heads rotated (neox, rope.cos_sin over the whole
    head at rope.positions) and its k and v written into the paged
    caches at rope.slot_mapping (slot < 0: not stored), in one launch. Returns qkv [..., N] with q and k rotated."""
    n, k = weight.shape
    x2 = _rows(x, k)
    m = x2.shape[0]
    if not qkv_rope_store_supports(x2, weight, rope):
        raise ValueError(f"qkv_rope_store takes skinny_gemm's operands, a weight of (q + 2 kv heads) * head_dim rows, "
                         f"rotary over whole heads and output tiles that divide head_dim; got x {tuple(x.shape)} "
                         f"{x.dtype}, weight {tuple(weight.shape)} {weight.dtype}, heads {rope.num_q_heads}/"
                         f"{rope.num_kv_heads} x {rope.head_dim}, rot_dim {rope.cos_sin.shape[-1]}: use the "
                         f"projection, then rotary_store_kv")
    assert rope.positions.shape == (m,) and rope.slot_mapping.shape == (m,)
    out = torch.empty((m, n), dtype=x.dtype, device=x.device)
    if m > 0:
        _launch(x2, weight, bias, out, config, rope)
    return out.view(*x.shape[:-1], n)


def qkv_rope_store_ref(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                       rope: RopeStore) -> torch.Tensor:
    """Plain-PyTorch reference for :func:`qkv_rope_store`: the projection, then rotary_store_kv_ref on its heads
    (the caches written in place)."""
    qkv = skinny_gemm_ref(x, weight, bias)
    qkv2 = qkv.reshape(-1, qkv.shape[-1])
    hq, hkv, d = rope.num_q_heads, rope.num_kv_heads, rope.head_dim
    parts = qkv2.split([hq * d, hkv * d, hkv * d], -1)
    q, k, v = (t.reshape(-1, heads, d) for t, heads in zip(parts, (hq, hkv, hkv)))
    q_rot, k_rot = rotary_store_kv_ref(q, k, v, rope.positions, rope.cos_sin, True, rope.k_cache, rope.v_cache,
                                       rope.slot_mapping)
    out = torch.cat([q_rot.flatten(1), k_rot.flatten(1), v.flatten(1)], -1)
    return out.view(qkv.shape)

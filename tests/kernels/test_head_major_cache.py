"""Every kernel that writes or reads the per-head KV cache over head-major pages ([blocks, Hkv, page, D], seen as
[blocks, page, Hkv, D]: each head's page one contiguous run; cache.layout=head) does exactly what it does over the
engine's token-major pages ([blocks, page, Hkv, D], a token's heads side by side): the same stored values and the
same attention outputs, bit for bit. The kernels address the cache by its three strides, so a layout is only a
different set of strides."""

import pytest
import torch

from spmd_kernels import (build_cos_sin_cache, paged_decode_attention, paged_prefill_attention,
                          qk_norm_rotary_store_kv, qkv_rope_store, rotary_store_kv, store_kv)
from spmd_kernels.qkv_epilogue import RopeStore

FP8 = torch.float8_e4m3fn


def head_major(cache: torch.Tensor) -> torch.Tensor:
    """A copy of a token-major cache [blocks, page, Hkv, D] laid out head-major, seen in the same shape."""
    blocks, page, heads, dim = cache.shape
    out = torch.empty(blocks, heads, page, dim, dtype=cache.dtype, device=cache.device).transpose(1, 2)
    out.copy_(cache)
    assert out.shape == cache.shape and not out.is_contiguous() and out.stride(1) == dim
    return out


def _caches(Hkv, D, dtype, device, num_blocks=6, page=8):
    token = [torch.randn(num_blocks, page, Hkv, D, device=device).to(dtype) for _ in range(2)]
    return token, [head_major(c) for c in token]


def _slots(T, num_blocks, page, device):
    slots = torch.randperm(num_blocks * page, device=device)[:T]
    if T > 1:
        slots[0] = -1  # a padding token: not stored
    return slots


def _rope_table(D, device):
    inv_freq = 1.0 / (10000 ** (torch.arange(0, D, 2, dtype=torch.float32, device=device) / D))
    return build_cos_sin_cache(inv_freq, 64)


def _same_stores(store, token, head):
    """store(k_cache, v_cache) into both layouts: equal caches afterwards."""
    store(*token)
    store(*head)
    assert all(torch.equal(t.float(), h.float()) for t, h in zip(token, head))


@pytest.mark.parametrize("cache_dtype", ["model", "fp8"])
def test_stores(cache_dtype, dtype, device):
    T, Hq, Hkv, D = 5, 4, 2, 64
    dt = FP8 if cache_dtype == "fp8" else dtype
    slots = _slots(T, 6, 8, device)
    qkv = torch.randn(T, Hq + 2 * Hkv, D, dtype=dtype, device=device)
    if cache_dtype == "fp8":  # values float8 holds exactly (the interpreter's rounding carries wrongly)
        qkv = qkv.float().to(FP8).to(dtype)
    positions = torch.randint(0, 64, (T,), device=device)
    cos_sin = _rope_table(D, device)

    token, head = _caches(Hkv, D, dt, device)
    _same_stores(lambda kc, vc: store_kv(qkv[:, Hq:Hq + Hkv], qkv[:, Hq + Hkv:], kc, vc, slots), token, head)
    if cache_dtype == "fp8":
        return  # the fused stores below round computed values: their float8 cases are GPU tests of their own

    def rotary(kc, vc):
        q, k, v = qkv.clone().split([Hq, Hkv, Hkv], dim=1)
        rotary_store_kv(q, k, v, positions, cos_sin, True, kc, vc, slots)
    token, head = _caches(Hkv, D, dt, device)
    _same_stores(rotary, token, head)

    weights = (torch.rand(2, D, device=device) + 0.5).to(dtype)

    def norm_rotary(kc, vc):
        q, k, v = qkv.clone().split([Hq, Hkv, Hkv], dim=1)
        qk_norm_rotary_store_kv(q, k, v, positions, cos_sin, weights[0], weights[1], 1e-6, True, kc, vc, slots)
    token, head = _caches(Hkv, D, dt, device)
    _same_stores(norm_rotary, token, head)

    K = 64
    x = torch.randn(T, K, dtype=dtype, device=device)
    w = (torch.randn((Hq + 2 * Hkv) * D, K, device=device) * K**-0.5).to(dtype)
    outs = []

    def projection(kc, vc):
        rope = RopeStore(positions, cos_sin, slots, kc, vc, Hq, Hkv, D)
        outs.append(qkv_rope_store(x, w, None, rope, config=(32, 64, 4, 2)))
    token, head = _caches(Hkv, D, dt, device)
    _same_stores(projection, token, head)
    assert torch.equal(outs[0], outs[1])


@pytest.mark.parametrize("cache_dtype", ["model", "fp8"])
@pytest.mark.parametrize("num_splits", [1, 3])
def test_decode_attention(num_splits, cache_dtype, dtype, device, paged_kv):
    context_lens = [1, 17, 45, 90]
    k_cache, v_cache, block_tables = paged_kv(context_lens, 2, 64, torch.float32, device)
    k_cache, v_cache = (c.to(FP8 if cache_dtype == "fp8" else dtype) for c in (k_cache, v_cache))
    q = torch.randn(len(context_lens), 8, 64, dtype=dtype, device=device)
    ctx = torch.tensor(context_lens, dtype=torch.int32, device=device)
    token = paged_decode_attention(q, k_cache, v_cache, block_tables, ctx, 0.125, num_splits=num_splits)
    head = paged_decode_attention(q, head_major(k_cache), head_major(v_cache), block_tables, ctx, 0.125,
                                  num_splits=num_splits)
    assert torch.equal(token, head)


def test_prefill_attention(dtype, device, paged_kv):
    seqs = [(5, 0), (1, 30), (20, 12)]  # (new tokens, cached prefix)
    context_lens = [n + p for n, p in seqs]
    k_cache, v_cache, block_tables = paged_kv(context_lens, 2, 64, dtype, device)
    q = torch.randn(sum(n for n, _ in seqs), 4, 64, dtype=dtype, device=device)
    cu = torch.tensor([0, 5, 6, 26], dtype=torch.int32, device=device)
    ctx = torch.tensor(context_lens, dtype=torch.int32, device=device)
    token = paged_prefill_attention(q, k_cache, v_cache, cu, ctx, block_tables, 0.125)
    head = paged_prefill_attention(q, head_major(k_cache), head_major(v_cache), cu, ctx, block_tables, 0.125)
    assert torch.equal(token, head)

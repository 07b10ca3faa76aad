"""The KV kernels with a float8 e4m3 cache (cache.dtype=fp8): stores saturate at +-448 (where torch's CUDA cast gives
NaN), and the attention kernels (per-head decode and prefill, MLA's latent decode) read the float8 pages widened to
q's dtype, against the references on the same cache."""

import pytest
import torch
import triton
import triton.language as tl

from spmd_kernels import (mla_decode, mla_decode_ref, paged_decode_attention, paged_decode_attention_ref,
                          paged_prefill_attention, paged_prefill_attention_ref, store_kv, store_kv_ref, store_latent,
                          store_latent_ref)
from spmd_kernels.decode_attention import columns_by_dimension, v_by_warp

FP8 = torch.float8_e4m3fn


def _values(shape, dtype, device):
    x = torch.randn(shape, device=device) * 300  # beyond 448 in places
    if device == "cpu":
        # Triton's interpreter rounds a value that carries into the next power of two wrongly (-127.9 -> -64,
        # not -128; the GPU's conversion is right): on the CPU give it values float8 holds exactly, plus the
        # out-of-range ones whose saturation is under test.
        x = torch.where(x.abs() > 448, x, x.to(FP8).float())
    return x.to(dtype)


def test_store_kv_into_fp8_saturates_like_torch(dtype, device):
    T, H, D = 7, 2, 64
    k, v = _values((T, H, D), dtype, device), _values((T, H, D), dtype, device)
    slots = torch.tensor([3, 0, -1, 17, 9, 30, 5], device=device)
    caches = [torch.zeros(4, 8, H, D, dtype=FP8, device=device) for _ in range(4)]
    store_kv(k, v, caches[0], caches[1], slots)
    store_kv_ref(k, v, caches[2], caches[3], slots)
    assert torch.equal(caches[0].float(), caches[2].float()) and torch.equal(caches[1].float(), caches[3].float())
    assert caches[0].float().abs().max() == 448



def test_store_latent_into_fp8_saturates_like_torch(dtype, device):
    T, E = 6, 40  # MLA: c_kv ++ k_pe per token, one shared entry
    entries = _values((T, 1, E), dtype, device)
    slots = torch.tensor([3, -1, 0, 17, 9, 30], device=device)
    caches = [torch.zeros(4, 8, 1, E, dtype=FP8, device=device) for _ in range(2)]
    store_latent(entries, caches[0], slots)
    store_latent_ref(entries, caches[1], slots)
    assert torch.equal(caches[0].float(), caches[1].float())
    assert caches[0].float().abs().max() == 448
    # k_pe read from its own tensor (the layer's path) saturates alike
    split = [torch.zeros(4, 8, 1, E, dtype=FP8, device=device) for _ in range(2)]
    store_latent(entries[..., :32].contiguous(), split[0], slots, rope=entries[..., 32:])
    store_latent_ref(entries[..., :32].contiguous(), split[1], slots, rope=entries[..., 32:])
    assert torch.equal(split[0].float(), caches[0].float()) and torch.equal(split[1].float(), caches[0].float())


@pytest.mark.parametrize("num_splits", [1, 3])
def test_mla_decode_reads_an_fp8_latent_cache(num_splits, dtype, device, assert_close, paged_kv):
    context_lens = [1, 17, 45]
    H, L, R = 4, 32, 16
    cache, _, block_tables = paged_kv(context_lens, 1, L + R, torch.float32, device)
    cache = cache.to(FP8)
    q_latent = torch.randn(len(context_lens), H, L, dtype=dtype, device=device)
    q_pe = torch.randn(len(context_lens), H, R, dtype=dtype, device=device)
    ctx = torch.tensor(context_lens, dtype=torch.int32, device=device)
    out = mla_decode(q_latent, q_pe, cache, block_tables, ctx, (L + R) ** -0.5, num_splits=num_splits)
    assert out.dtype == dtype
    assert_close(out, mla_decode_ref(q_latent, q_pe, cache, block_tables, ctx, (L + R) ** -0.5))


@pytest.mark.parametrize("num_splits", [1, 3])
def test_mla_decode_fp16_dots_over_an_fp8_latent_cache(num_splits, device, paged_kv, monkeypatch):
    """bf16 queries over a float8 latent cache with the dots in fp16 (mla_decode.FP8_DOTS_IN_F16; the queries scaled
    before they are narrowed): bf16 outputs as close to the fp32 reference as the bf16 dots give, on the CPU too
    (its fp16 dots are right in the interpreter), and queries beyond fp16's range stay finite (narrowed unscaled,
    they overflow)."""
    import importlib

    mla = importlib.import_module("spmd_kernels.mla_decode")
    monkeypatch.setattr(mla, "FP8_DOTS_IN_F16", True)
    context_lens = [1, 17, 45]
    H, L, R = 4, 32, 16
    cache, _, block_tables = paged_kv(context_lens, 1, L + R, torch.float32, device)
    cache = cache.to(FP8)
    ctx = torch.tensor(context_lens, dtype=torch.int32, device=device)
    scale = (L + R) ** -0.5
    for magnitude in (1.0, 2e6):  # 2e6: queries beyond fp16's 65504 unscaled, inside it scaled
        q_latent = (torch.randn(len(context_lens), H, L, device=device) * magnitude / L).to(torch.bfloat16)
        q_pe = (torch.randn(len(context_lens), H, R, device=device) * magnitude / L).to(torch.bfloat16)
        out = mla_decode(q_latent, q_pe, cache, block_tables, ctx, scale, num_splits=num_splits)
        ref = mla_decode_ref(q_latent.float(), q_pe.float(), cache, block_tables, ctx, scale)
        assert out.dtype == torch.bfloat16 and out.isfinite().all()
        torch.testing.assert_close(out.float(), ref, atol=2e-2, rtol=2e-2)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="the pin is inline PTX: CUDA only")
@pytest.mark.parametrize("num_splits", [1, 3])
def test_mla_decode_pinned_latent_keeps_its_values(num_splits, paged_kv, monkeypatch):
    """MLA decode over a float8 latent cache with c_kv pinned where widened (mla_decode.FP8_PIN_LATENT) and without
    (DeepSeek's sizes: kv_lora_rank 512, rope 64, 16 heads): the same values to bf16 rounding, and as close as each
    other to the fp32 reference. Not the same bits: on an H200 one to three of 24576 outputs differ by a bf16 unit,
    as the two compilations order the fp32 accumulation differently (the widening itself is exact)."""
    import importlib

    mla = importlib.import_module("spmd_kernels.mla_decode")
    context_lens = [1, 40, 300]
    cache, _, block_tables = paged_kv(context_lens, 1, 576, torch.float32, "cuda")
    cache = cache.to(FP8)
    q_latent = torch.randn(len(context_lens), 16, 512, device="cuda").to(torch.bfloat16)
    q_pe = torch.randn(len(context_lens), 16, 64, device="cuda").to(torch.bfloat16)
    ctx = torch.tensor(context_lens, dtype=torch.int32, device="cuda")
    outs = []
    for pin in (True, False):
        monkeypatch.setattr(mla, "FP8_PIN_LATENT", pin)
        outs.append(mla_decode(q_latent, q_pe, cache, block_tables, ctx, 192**-0.5, num_splits=num_splits).float())
    ref = mla_decode_ref(q_latent, q_pe, cache, block_tables, ctx, 192**-0.5).float()
    torch.testing.assert_close(outs[0], outs[1], atol=1e-3, rtol=1.6e-2)  # torch's bf16 tolerance
    errors = [(o - ref).abs().max().item() for o in outs]
    assert max(errors) <= 2 * min(errors) + 1e-3, errors


@pytest.mark.parametrize("Hq,Hkv", [(4, 2), (8, 2)])
@pytest.mark.parametrize("num_splits", [1, 3])
def test_decode_attention_reads_an_fp8_cache(Hq, Hkv, num_splits, dtype, device, assert_close, paged_kv):
    context_lens = [1, 17, 45]
    k_cache, v_cache, block_tables = paged_kv(context_lens, Hkv, 64, torch.float32, device)
    k_cache, v_cache = k_cache.to(FP8), v_cache.to(FP8)
    q = torch.randn(len(context_lens), Hq, 64, dtype=dtype, device=device)
    ctx = torch.tensor(context_lens, dtype=torch.int32, device=device)
    out = paged_decode_attention(q, k_cache, v_cache, block_tables, ctx, 0.125, num_splits=num_splits)
    assert out.dtype == dtype
    assert_close(out, paged_decode_attention_ref(q, k_cache, v_cache, block_tables, ctx, 0.125))


@pytest.mark.parametrize("Hq,Hkv", [(4, 2), (4, 4)])
def test_prefill_attention_reads_an_fp8_cache(Hq, Hkv, dtype, device, assert_close, paged_kv):
    seqs = [(5, 0), (1, 30), (20, 12)]  # (new tokens, cached prefix): a plain, a decode-like and a chunked row
    context_lens = [n + p for n, p in seqs]
    k_cache, v_cache, block_tables = paged_kv(context_lens, Hkv, 64, torch.float32, device)
    k_cache, v_cache = k_cache.to(FP8), v_cache.to(FP8)
    q = torch.randn(sum(n for n, _ in seqs), Hq, 64, dtype=dtype, device=device)
    cu = torch.tensor([0, 5, 6, 26], dtype=torch.int32, device=device)
    ctx = torch.tensor(context_lens, dtype=torch.int32, device=device)
    out = paged_prefill_attention(q, k_cache, v_cache, cu, ctx, block_tables, 0.125)
    assert_close(out, paged_prefill_attention_ref(q, k_cache, v_cache, cu, ctx, block_tables, 0.125))


@pytest.mark.parametrize("num_splits", [1, 3])
def test_decode_attention_bf16_queries_over_fp8_run_fp16_dots(num_splits, device, paged_kv):
    """bf16 queries over a float8 cache take the fp16-dot path (FP8_DOTS_IN_F16): within bf16's tolerance of the
    fp32 reference, and, being fp16 dots, checkable on the CPU too (the interpreter's bf16 tl.dot is what is wrong)."""
    context_lens = [1, 17, 45]
    k_cache, v_cache, block_tables = paged_kv(context_lens, 2, 64, torch.float32, device)
    k_cache, v_cache = k_cache.to(FP8), v_cache.to(FP8)
    q = torch.randn(len(context_lens), 8, 64, device=device).to(torch.bfloat16)
    ctx = torch.tensor(context_lens, dtype=torch.int32, device=device)
    out = paged_decode_attention(q, k_cache, v_cache, block_tables, ctx, 0.125, num_splits=num_splits)
    assert out.dtype == torch.bfloat16
    ref = paged_decode_attention_ref(q.float(), k_cache, v_cache, block_tables, ctx, 0.125)
    torch.testing.assert_close(out.float(), ref, atol=2e-2, rtol=2e-2)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="the assembly widening runs on CUDA (sm_89 and later) only")
@pytest.mark.parametrize("num_splits", [1, 2, 3])
def test_widening_in_assembly_changes_no_value(num_splits, paged_kv, monkeypatch):
    """e4m3_to_f16 (FP8_ASM_WIDEN), with V pinned where loaded (FP8_PIN_V) or not, and Triton's own conversion all
    widen float8 exactly: each tile gives the same output bits every way (one split, two and three take three
    different tiles)."""
    from spmd_kernels import decode_settings

    context_lens = [1, 17, 45, 300]
    k_cache, v_cache, block_tables = paged_kv(context_lens, 2, 128, torch.float32, "cuda")
    k_cache, v_cache = k_cache.to(FP8), v_cache.to(FP8)
    q = torch.randn(len(context_lens), 8, 128, device="cuda").to(torch.bfloat16)
    ctx = torch.tensor(context_lens, dtype=torch.int32, device="cuda")
    outs = {}
    for widen, pin_v in ((1, True), (1, False), (None, False)):
        monkeypatch.setattr(decode_settings, "FP8_ASM_WIDEN", widen)
        monkeypatch.setattr(decode_settings, "FP8_PIN_V", pin_v)
        outs[widen, pin_v] = paged_decode_attention(q, k_cache, v_cache, block_tables, ctx, 0.125,
                                                    num_splits=num_splits)
    assert torch.equal(outs[1, True], outs[None, False])
    assert torch.equal(outs[1, False], outs[None, False])


@pytest.mark.parametrize("num_splits", [1, 2, 3])
def test_v_columns_dealt_by_warp_change_no_value(num_splits, device, paged_kv, monkeypatch):
    """decode_attention.v_by_warp (FP8_V_BY_WARP): V's columns reordered for the P V dot and the output put back
    gives what the cache's own order gives, to fp32 rounding (the dots sum the same products), and as close to the
    fp32 reference. On the GPU one split, two and three take three tiles of 2, 1 and 4 warps."""
    from spmd_kernels import decode_attention, decode_settings

    D = 128 if device == "cuda" else 64  # the interpreter's launches have 4 warps: 8-column tiles for each of them
    context_lens = [1, 17, 45, 300]
    k_cache, v_cache, block_tables = paged_kv(context_lens, 2, D, torch.float32, device)
    k_cache, v_cache = k_cache.to(FP8), v_cache.to(FP8)
    q = torch.randn(len(context_lens), 8, D, device=device).to(torch.bfloat16)
    ctx = torch.tensor(context_lens, dtype=torch.int32, device=device)
    outs = []
    for on in (True, False):
        monkeypatch.setattr(decode_settings, "FP8_V_BY_WARP", on)
        assert (decode_attention._v_by_warp(k_cache, D, 4) == 4) is on
        outs.append(paged_decode_attention(q, k_cache, v_cache, block_tables, ctx, 0.125,
                                           num_splits=num_splits).float())
    ref = paged_decode_attention_ref(q.float(), k_cache, v_cache, block_tables, ctx, 0.125)
    torch.testing.assert_close(outs[0], outs[1], atol=1e-3, rtol=1.6e-2)  # torch's bf16 tolerance
    errors = [(o - ref).abs().max().item() for o in outs]
    assert max(errors) <= 2 * min(errors) + 1e-3, errors


@triton.jit
def _reorder_and_back(v_ptr, out_ptr, N: tl.constexpr, D: tl.constexpr, WARPS: tl.constexpr):
    rows, cols = tl.arange(0, N), tl.arange(0, D)
    dealt = v_by_warp(tl.load(v_ptr + rows[:, None] * D + cols[None, :]), N, D, WARPS)
    tl.store(out_ptr + rows[:, None] * D + cols[None, :], dealt)
    back = columns_by_dimension(dealt, N, D, WARPS)
    tl.store(out_ptr + N * D + rows[:, None] * D + cols[None, :], back)


def test_v_by_warp_is_a_column_permutation_put_back_by_columns_by_dimension(device):
    """The two reorderings alone: v_by_warp moves dimension (8 * w + g) * tiles + j to column 8 * (warps * j + w) + g
    (tile j of warp w, lane group g), and columns_by_dimension puts every column back."""
    for warps, D in ((1, 16), (2, 128), (4, 64)):
        v = torch.arange(16 * D, dtype=torch.float32, device=device).reshape(16, D)
        out = torch.empty(2, 16, D, device=device)
        _reorder_and_back[(1,)](v, out, 16, D, warps)
        dealt, back = out.cpu()
        tiles = D // (8 * warps)
        expected = [(8 * w + g) * tiles + j for j in range(tiles) for w in range(warps) for g in range(8)]
        assert dealt[0].tolist() == expected and dealt[5].tolist() == [5 * D + d for d in expected]
        assert torch.equal(back, v.cpu())

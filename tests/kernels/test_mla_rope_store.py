import pytest
import torch

from spmd_kernels import (apply_rotary, mla_rope_norm_store, mla_rope_norm_store_ref, rms_norm, store_latent)

HEADS, LATENT, ROPE, PAGE, BLOCKS = 3, 96, 32, 16, 5


def _inputs(T, dtype, device, heads=HEADS, latent_dim=LATENT):
    """q_pe, latent and k_pe as strided views of the projections (q [T, H, nope + rope], kv_a [T, L + R]), the
    cat(cos, sin) table with a YaRN-like scale, positions, a slot mapping with padding (-1) and a NaN cache."""
    q = torch.randn(T, heads, 16 + ROPE, dtype=dtype, device=device)
    kv = torch.randn(T, latent_dim + ROPE, dtype=dtype, device=device) * 3
    freqs = torch.outer(torch.arange(64.0), torch.rand(ROPE // 2) + 0.1)
    cos_sin = (torch.cat([freqs.cos(), freqs.sin()], -1) * 1.3).to(device)
    positions = torch.randint(0, 64, (T,), device=device)
    slots = torch.randperm(BLOCKS * PAGE, device=device)[:T]
    if T > 1:
        slots[1] = -1
    weight = (torch.rand(latent_dim, device=device) + 0.5).to(dtype)
    return q[..., 16:], kv[:, :latent_dim], kv[:, latent_dim:], cos_sin, positions, slots, weight


def _cache(dtype, device, latent_dim=LATENT):
    return torch.full((BLOCKS, PAGE, 1, latent_dim + ROPE), float("nan"), device=device).to(dtype)


@pytest.mark.parametrize("T", [0, 1, 7])
@pytest.mark.parametrize("is_neox", [False, True])
def test_matches_the_three_references(T, is_neox, dtype, device, assert_close):
    q_pe, latent, k_pe, cos_sin, positions, slots, w = _inputs(T, dtype, device)
    latent_before, k_pe_before = latent.clone(), k_pe.clone()
    cache, ref_cache = _cache(dtype, device), _cache(dtype, device)
    q_ref = mla_rope_norm_store_ref(q_pe, latent, k_pe, positions, cos_sin, is_neox, w, 1e-6, ref_cache, slots)
    assert mla_rope_norm_store(q_pe, latent, k_pe, positions, cos_sin, is_neox, w, 1e-6, cache, slots) is q_pe
    assert_close(q_pe, q_ref)
    assert_close(cache, ref_cache, equal_nan=True)  # padding's slot and unused slots stay NaN
    assert torch.equal(latent, latent_before) and torch.equal(k_pe, k_pe_before)


@pytest.mark.parametrize("cache_dtype", [None, torch.float8_e4m3fn], ids=["same", "fp8"])
@pytest.mark.parametrize("latent_dim", [LATENT, 512])
def test_bit_for_bit_the_three_kernels(cache_dtype, latent_dim, dtype, device):
    """The same bits in q_pe and the cache as rms_norm, apply_rotary (q_pe and k_pe in place) and store_latent one
    after another: DeepSeek-V2's latent (512, the norm in two warps) and an odd one; a float8 cache saturates."""
    q_pe, latent, k_pe, cos_sin, positions, slots, w = _inputs(9, dtype, device, latent_dim=latent_dim)
    latent = latent * 100  # some normed values past float8's +-448 before the weight
    cache = _cache(cache_dtype or dtype, device, latent_dim)
    unfused = cache.clone()
    q_unfused, k_unfused = apply_rotary(q_pe.clone(), k_pe.clone().unsqueeze(1), positions, cos_sin, False)
    store_latent(rms_norm(latent, w, 1e-6).unsqueeze(1), unfused, slots, rope=k_unfused)
    mla_rope_norm_store(q_pe, latent, k_pe, positions, cos_sin, False, w, 1e-6, cache, slots)
    assert torch.equal(q_pe, q_unfused)
    assert torch.equal(cache.view(torch.uint8), unfused.view(torch.uint8))


def test_refuses_a_rotary_short_of_the_rope_dim(device):
    q_pe, latent, k_pe, cos_sin, positions, slots, w = _inputs(2, torch.float32, device)
    with pytest.raises(AssertionError, match="whole rope dim"):
        mla_rope_norm_store(q_pe, latent, k_pe, positions, cos_sin[:, :ROPE // 2], False, w, 1e-6,
                            _cache(torch.float32, device), slots)

import pytest
import torch

from spmd_kernels import build_cos_sin_cache, rotary_store_kv, rotary_store_kv_ref


def _case(T, Hq, Hkv, D, rot_dim, dtype, device, cache_dtype=None):
    """q, k, v as strided views of a fused qkv output, a cos/sin table, caches of random contents and slots
    (some -1: padding tokens are skipped)."""
    qkv = torch.randn(T, Hq + 2 * Hkv, D, dtype=dtype, device=device)
    q, k, v = qkv[:, :Hq], qkv[:, Hq:Hq + Hkv], qkv[:, Hq + Hkv:]
    inv_freq = 1.0 / (10000 ** (torch.arange(0, rot_dim, 2, dtype=torch.float32, device=device) / rot_dim))
    cos_sin = build_cos_sin_cache(inv_freq, 64)
    positions = torch.randint(0, 64, (T,), device=device)
    num_blocks, block_size = 6, 8
    slots = torch.randperm(num_blocks * block_size, device=device)[:T]
    if T > 1:
        slots[0] = -1
    k_cache, v_cache = (torch.randn(num_blocks, block_size, Hkv, D, device=device).to(cache_dtype or dtype)
                        for _ in range(2))
    return q, k, v, positions, cos_sin, k_cache, v_cache, slots


@pytest.mark.parametrize("T", [0, 1, 5])
@pytest.mark.parametrize("Hq,Hkv,D,rot_dim", [(4, 2, 64, 64), (8, 1, 128, 128), (3, 3, 48, 32)])
@pytest.mark.parametrize("is_neox", [True, False], ids=["neox", "gptj"])
def test_rotary_store_kv_matches_rotary_then_store(T, Hq, Hkv, D, rot_dim, is_neox, dtype, device, assert_close):
    q, k, v, positions, cos_sin, k_cache, v_cache, slots = _case(T, Hq, Hkv, D, rot_dim, dtype, device)
    k_cache_ref, v_cache_ref = k_cache.clone(), v_cache.clone()
    q_ref, k_ref = rotary_store_kv_ref(q, k, v, positions, cos_sin, is_neox, k_cache_ref, v_cache_ref, slots)
    v_before = v.clone()
    q_out, k_out = rotary_store_kv(q, k, v, positions, cos_sin, is_neox, k_cache, v_cache, slots)
    assert q_out is q and k_out is k  # rotated in place, as apply_rotary does
    assert_close(q, q_ref)
    assert_close(k, k_ref)
    assert torch.equal(v, v_before)
    # The cache holds exactly what the kernel left in k (one rounding, no second one), and v as it was.
    expect_k, expect_v = k_cache_ref.clone(), v_cache_ref.clone()
    keep = slots >= 0
    expect_k.view(-1, Hkv, D)[slots[keep]] = k[keep]
    assert torch.equal(k_cache, expect_k) and torch.equal(v_cache, expect_v)
    assert_close(k_cache, k_cache_ref)


def test_rotary_store_kv_into_a_float8_cache_saturates(device):
    fp8 = torch.float8_e4m3fn
    q, k, v, positions, cos_sin, k_cache, v_cache, slots = _case(4, 4, 2, 64, 64, torch.float32, device, fp8)
    positions.zero_()  # cos 1, sin 0: k reaches the store as given
    for x in (k, v):
        # Beyond +-448 in places; elsewhere values float8 holds exactly, since Triton's interpreter rounds a value
        # that carries into the next power of two wrongly (see test_fp8_kv.py).
        wide = torch.randn(x.shape, device=device) * 300
        x.copy_(torch.where(wide.abs() > 448, wide, wide.to(fp8).float()))
    k_cache_ref, v_cache_ref = k_cache.clone(), v_cache.clone()
    rotary_store_kv_ref(q.clone(), k.clone(), v, positions, cos_sin, True, k_cache_ref, v_cache_ref, slots)
    rotary_store_kv(q, k, v, positions, cos_sin, True, k_cache, v_cache, slots)
    assert torch.equal(k_cache.float(), k_cache_ref.float()) and torch.equal(v_cache.float(), v_cache_ref.float())
    assert k_cache.float().abs().max() == 448.0 and v_cache.float().abs().max() == 448.0


@pytest.mark.parametrize("T", [0, 5])
def test_rotary_store_kv_into_another_q_buffer(T, dtype, device):
    """q_out (a prefill graph's static attention input, engine/prefill_graphs.py) takes exactly what the in-place
    launch leaves in q; q itself is left as it was; a partial rotary (whose pass-through dims q_out would lack) is
    refused."""
    q, k, v, positions, cos_sin, k_cache, v_cache, slots = _case(T, 4, 2, 64, 64, dtype, device)
    q_before, k_in_place, caches_ref = q.clone(), k.clone(), (k_cache.clone(), v_cache.clone())
    q_ref, k_ref = rotary_store_kv(q_before.clone(), k_in_place, v, positions, cos_sin, True, *caches_ref, slots)
    q_out = torch.zeros(T + 2, 4, 64, dtype=dtype, device=device)[:T]
    got_q, got_k = rotary_store_kv(q, k, v, positions, cos_sin, True, k_cache, v_cache, slots, q_out=q_out)
    assert got_q is q_out and torch.equal(q_out, q_ref) and torch.equal(got_k, k_ref)
    assert torch.equal(q, q_before)
    assert torch.equal(k_cache, caches_ref[0]) and torch.equal(v_cache, caches_ref[1])
    q, k, v, positions, cos_sin, k_cache, v_cache, slots = _case(T, 3, 3, 48, 32, dtype, device)
    with pytest.raises(ValueError, match="whole head"):
        rotary_store_kv(q, k, v, positions, cos_sin, True, k_cache, v_cache, slots, q_out=torch.empty_like(q))

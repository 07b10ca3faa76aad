import pytest
import torch

from spmd_kernels import apply_rotary, build_cos_sin_cache, qk_norm_rotary, qk_norm_rotary_ref, rms_norm


def _cache(rot_dim, device, max_pos=64):
    inv_freq = 1.0 / (1e6 ** (torch.arange(0, rot_dim, 2, dtype=torch.float32) / rot_dim))
    return build_cos_sin_cache(inv_freq.to(device), max_pos, mscale=1.05)


@pytest.mark.parametrize("T", [0, 1, 5, 17])
@pytest.mark.parametrize("Hq,Hk", [(4, 4), (6, 2), (16, 8)])  # 6: a head count that is no power of two
@pytest.mark.parametrize("D,rot_dim", [(64, 64), (128, 128), (96, 64)])  # 96/64: partial rotary, odd pass width
@pytest.mark.parametrize("is_neox", [True, False])
def test_qk_norm_rotary(T, Hq, Hk, D, rot_dim, is_neox, dtype, device, assert_close):
    cache = _cache(rot_dim, device)
    # q and k as strided views of a fused qkv output, as the engine passes them; v must stay untouched.
    qkv = torch.randn(T, Hq + 2 * Hk, D, dtype=dtype, device=device) * 3
    q, k = qkv[:, :Hq], qkv[:, Hq:Hq + Hk]
    v_before = qkv[:, Hq + Hk:].clone()
    qw = (torch.rand(D, device=device) + 0.5).to(dtype)
    kw = (torch.rand(D, device=device) + 0.5).to(dtype)
    positions = torch.randint(0, 64, (T,), device=device)
    q_ref, k_ref = qk_norm_rotary_ref(q, k, positions, cache, qw, kw, 1e-6, is_neox)
    q_out, k_out = qk_norm_rotary(q, k, positions, cache, qw, kw, 1e-6, is_neox)
    assert q_out.data_ptr() == q.data_ptr() and k_out.data_ptr() == k.data_ptr()  # in place
    assert_close(q, q_ref)
    assert_close(k, k_ref)
    assert torch.equal(qkv[:, Hq + Hk:], v_before)


def test_qk_norm_rotary_matches_the_two_kernels_it_replaces(dtype, device, assert_close):
    """What Qwen3 ran before (rms_norm per head, then apply_rotary), up to the order of the sum of squares."""
    T, Hq, Hk, D = 7, 8, 4, 128
    cache = _cache(D, device)
    qkv = torch.randn(T, Hq + 2 * Hk, D, dtype=dtype, device=device) * 3
    qw, kw = (torch.rand(2, D, device=device) + 0.5).to(dtype)
    positions = torch.randint(0, 64, (T,), device=device)
    q2, k2 = rms_norm(qkv[:, :Hq], qw, 1e-6), rms_norm(qkv[:, Hq:Hq + Hk], kw, 1e-6)
    apply_rotary(q2, k2, positions, cache, True)
    fused = qkv.clone()
    qk_norm_rotary(fused[:, :Hq], fused[:, Hq:Hq + Hk], positions, cache, qw, kw, 1e-6, True)
    assert_close(fused[:, :Hq], q2)
    assert_close(fused[:, Hq:Hq + Hk], k2)

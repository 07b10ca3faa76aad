import pytest
import torch

from spmd_kernels import apply_rotary, apply_rotary_ref, build_cos_sin_cache


def _inv_freq(rot_dim, base=10000.0):
    return 1.0 / (base ** (torch.arange(0, rot_dim, 2, dtype=torch.float32) / rot_dim))


@pytest.mark.parametrize("T", [0, 1, 3, 17])
@pytest.mark.parametrize("Hq,Hk", [(4, 4), (4, 2), (8, 2)])
@pytest.mark.parametrize("D,rot_dim", [(64, 64), (128, 128), (128, 64)])
@pytest.mark.parametrize("is_neox", [True, False])
def test_apply_rotary(T, Hq, Hk, D, rot_dim, is_neox, dtype, device, assert_close):
    max_pos = 64
    cache = build_cos_sin_cache(_inv_freq(rot_dim).to(device), max_pos, mscale=1.1)
    # q and k as strided views of a fused qkv output, as the engine passes them.
    qkv = torch.randn(T, Hq + 2 * Hk, D, dtype=dtype, device=device)
    q, k = qkv[:, :Hq], qkv[:, Hq : Hq + Hk]
    v_before = qkv[:, Hq + Hk :].clone()
    positions = torch.randint(0, max_pos, (T,), device=device)
    q_ref, k_ref = apply_rotary_ref(q, k, positions, cache, is_neox)
    q_out, k_out = apply_rotary(q, k, positions, cache, is_neox)
    assert q_out.data_ptr() == q.data_ptr() and k_out.data_ptr() == k.data_ptr()  # in place
    assert_close(q, q_ref)
    assert_close(k, k_ref)
    assert torch.equal(qkv[:, Hq + Hk :], v_before)
    if rot_dim < D:  # the pass-through dims are untouched
        assert torch.equal(q[..., rot_dim:], q_ref[..., rot_dim:])


def test_apply_rotary_q_only(dtype, device, assert_close):
    cache = build_cos_sin_cache(_inv_freq(32).to(device), 16)
    q = torch.randn(5, 3, 32, dtype=dtype, device=device)
    positions = torch.randint(0, 16, (5,), device=device)
    q_ref, _ = apply_rotary_ref(q, None, positions, cache, True)
    apply_rotary(q, None, positions, cache, True)
    assert_close(q, q_ref)


def _rotate_half(x):
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat([-x2, x1], dim=-1)


def test_ref_matches_hf_formulas(device):
    """neox == HF rotate_half form; GPT-J == the same rotation applied to (even, odd) pairs."""
    T, H, D = 6, 2, 16
    cache = build_cos_sin_cache(_inv_freq(D).to(device), 32)
    q = torch.randn(T, H, D, device=device)
    positions = torch.randint(0, 32, (T,), device=device)
    cos, sin = cache[positions].chunk(2, dim=-1)
    cos_full, sin_full = torch.cat([cos, cos], -1)[:, None], torch.cat([sin, sin], -1)[:, None]
    neox, _ = apply_rotary_ref(q, None, positions, cache, True)
    torch.testing.assert_close(neox, q * cos_full + _rotate_half(q) * sin_full)
    gptj, _ = apply_rotary_ref(q, None, positions, cache, False)
    perm = torch.cat([torch.arange(0, D, 2), torch.arange(1, D, 2)])  # interleaved -> halves
    torch.testing.assert_close(gptj[..., perm], q[..., perm] * cos_full + _rotate_half(q[..., perm]) * sin_full)


def test_build_cos_sin_cache(device):
    inv_freq = _inv_freq(8).to(device)
    cache = build_cos_sin_cache(inv_freq, 10, mscale=2.0)
    assert cache.shape == (10, 8) and cache.dtype == torch.float32
    torch.testing.assert_close(cache[7, 1], 2.0 * torch.cos(7 * inv_freq[1]))
    torch.testing.assert_close(cache[7, 4 + 1], 2.0 * torch.sin(7 * inv_freq[1]))

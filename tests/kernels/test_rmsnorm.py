import pytest
import torch

from spmd_kernels import rms_norm, rms_norm_ref


@pytest.mark.parametrize("T", [0, 1, 3, 17])
@pytest.mark.parametrize("H", [64, 100, 1024])
@pytest.mark.parametrize("with_residual", [False, True])
def test_rms_norm(T, H, with_residual, dtype, device, assert_close):
    x = torch.randn(T, H, dtype=dtype, device=device)
    w = (1.0 + 0.1 * torch.randn(H, device=device)).to(dtype)
    eps = 1e-6
    if not with_residual:
        y = rms_norm(x, w, eps)
        assert y.shape == x.shape and y.dtype == dtype
        assert_close(y, rms_norm_ref(x, w, eps))
    else:
        r = torch.randn(T, H, dtype=dtype, device=device)
        x0, r0 = x.clone(), r.clone()
        y, h = rms_norm(x, w, eps, residual=r)
        y_ref, h_ref = rms_norm_ref(x, w, eps, residual=r)
        assert_close(h, h_ref)
        assert_close(y, y_ref)
        assert torch.equal(x, x0) and torch.equal(r, r0)  # inputs untouched


def test_rms_norm_3d_and_strided(dtype, device, assert_close):
    x = torch.randn(2, 5, 96, dtype=dtype, device=device)
    w = torch.randn(96, dtype=dtype, device=device)
    assert_close(rms_norm(x, w, 1e-5), rms_norm_ref(x, w, 1e-5))
    xs = torch.randn(7, 200, dtype=dtype, device=device)[:, 10:106]  # row stride != H
    assert_close(rms_norm(xs, w, 1e-5), rms_norm_ref(xs, w, 1e-5))


def test_rms_norm_per_head_views_of_a_fused_projection(dtype, device, assert_close):
    # Qwen3's q/k norm: [T, heads, D] slices of the qkv output (row stride != heads * D), no copy.
    qkv = torch.randn(5, (6 + 2 * 2) * 32, dtype=dtype, device=device)
    q = qkv[:, : 6 * 32].view(5, 6, 32)
    k = qkv[:, 6 * 32: 8 * 32].view(5, 2, 32)
    w = torch.randn(32, dtype=dtype, device=device)
    for x in (q, k, q[:0]):
        out = rms_norm(x, w, 1e-6)
        assert out.shape == x.shape and out.is_contiguous()
        assert_close(out, rms_norm_ref(x, w, 1e-6))


def test_rms_norm_ref_matches_definition(device):
    x = torch.randn(4, 32, device=device)
    w = torch.randn(32, device=device)
    expected = x / torch.sqrt((x * x).mean(-1, keepdim=True) + 1e-6) * w
    torch.testing.assert_close(rms_norm_ref(x, w, 1e-6), expected)

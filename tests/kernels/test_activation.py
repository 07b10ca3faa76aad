import pytest
import torch
import torch.nn.functional as F

from spmd_kernels import silu_and_mul, silu_and_mul_ref


@pytest.mark.parametrize("T", [0, 1, 3, 17])
@pytest.mark.parametrize("inter", [1, 37, 128, 1500])
def test_silu_and_mul(T, inter, dtype, device, assert_close):
    x = torch.randn(T, 2 * inter, dtype=dtype, device=device) * 3
    out = silu_and_mul(x)
    assert out.shape == (T, inter) and out.dtype == dtype
    assert_close(out, silu_and_mul_ref(x))


def test_silu_and_mul_3d(dtype, device, assert_close):
    x = torch.randn(2, 3, 2 * 40, dtype=dtype, device=device)
    assert_close(silu_and_mul(x), silu_and_mul_ref(x))


def test_silu_and_mul_ref_matches_definition(device):
    x = torch.randn(5, 2 * 9, device=device)
    torch.testing.assert_close(silu_and_mul_ref(x), F.silu(x[:, :9]) * x[:, 9:])


@pytest.mark.parametrize("T", [0, 1, 5])
@pytest.mark.parametrize("inter,group", [(128, 128), (1500, 128), (96, 32), (2048, 128), (40, 64)])
def test_silu_and_mul_quantized_is_the_two_kernels_in_one(T, inter, group, dtype, device):
    """The fused launch equals silu_and_mul then quantize_activations bit for bit (values and scales), groups
    across the 1024-wide program boundary and a partial last group included; and the reference within float8's
    rounding (the two compute silu in different fp32 ways)."""
    from spmd_kernels.activation import silu_and_mul_quantized, silu_and_mul_quantized_ref
    from spmd_kernels.scaled_activations import quantize_activations

    x = torch.randn(T, 2 * inter, dtype=dtype, device=device) * 3
    q, scale = silu_and_mul_quantized(x, group)
    q2, scale2 = quantize_activations(silu_and_mul(x), group)
    assert q.dtype == torch.float8_e4m3fn and q.shape == (T, inter) and scale.shape == (T, -(-inter // group))
    assert torch.equal(q.float(), q2.float()) and torch.equal(scale, scale2)
    ref_q, ref_scale = silu_and_mul_quantized_ref(x, group)
    torch.testing.assert_close(scale, ref_scale, rtol=1e-2, atol=0)
    assert ((q.float() * scale.repeat_interleave(group, 1)[:, :inter]
             - ref_q.float() * ref_scale.repeat_interleave(group, 1)[:, :inter]).abs()
            <= 2**-3 * ref_q.float().abs() * ref_scale.repeat_interleave(group, 1)[:, :inter] + 1e-3).all()

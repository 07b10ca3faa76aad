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

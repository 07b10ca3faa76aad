import importlib

import pytest
import torch

from spmd_kernels import head_gemm, head_gemm_ref
from spmd_kernels.head_gemm import MAX_ROWS, head_gemm_config, head_gemm_supports

# MLA's absorbed products as DeepSeek-V2 lays them out: kv_b_proj's weight viewed [H, nope + v, R], W_UK its first
# nope rows per head ([H, nope, R], N contiguous), W_UV the rest transposed ([H, R, v], K contiguous).
HEADS, NOPE, V, RANK = 3, 64, 32, 128


def _kv_b(dtype, device, heads=HEADS, nope=NOPE, v=V, rank=RANK):
    return (torch.randn(heads, nope + v, rank, device=device) * rank**-0.5).to(dtype)


@pytest.mark.parametrize("T", [0, 1, 5, MAX_ROWS])
def test_q_absorption_by_w_uk(T, dtype, device, assert_close):
    """q_nope, a strided view of the fused q projection [T, H, nope + rope], by W_UK [H, nope, R]."""
    w = _kv_b(dtype, device)
    q = torch.randn(T, HEADS, NOPE + 16, dtype=dtype, device=device)
    q_nope, w_uk = q[..., :NOPE], w[:, :NOPE]
    y = head_gemm(q_nope, w_uk)
    assert y.shape == (T, HEADS, RANK) and y.dtype == dtype and y.is_contiguous()
    assert_close(y, head_gemm_ref(q_nope, w_uk))


@pytest.mark.parametrize("T", [0, 1, 5, MAX_ROWS])
def test_latent_output_by_w_uv(T, dtype, device, assert_close):
    """The attended latent [T, H, R] by W_UV^T [H, R, v] (its K, R, contiguous): several K steps."""
    w = _kv_b(dtype, device, rank=256)
    x = torch.randn(T, HEADS, 256, dtype=dtype, device=device)
    w_uv = w[:, NOPE:].transpose(1, 2)
    y = head_gemm(x, w_uv)
    assert y.shape == (T, HEADS, V)
    assert_close(y, head_gemm_ref(x, w_uv))


def test_rows_strided_across_heads_and_into_a_given_output(dtype, device, assert_close):
    """x with its heads outermost (a transposed view), N off the tile grid (masked last program), out given."""
    x = torch.randn(HEADS, 4, 96, dtype=dtype, device=device).transpose(0, 1)  # [T, H, K], rows strided
    w = (torch.randn(HEADS, 96, 40, device=device) * 0.1).to(dtype)
    out = torch.full((4, HEADS, 40), float("nan"), dtype=dtype, device=device)
    assert head_gemm(x, w, out=out) is out
    assert_close(out, head_gemm_ref(x, w))


@pytest.mark.parametrize("heads,n,k,expected", [(16, 512, 128, (32, 128)), (16, 128, 512, (16, 128)),
                                                (128, 512, 128, (64, 128)), (1, 40, 96, (16, 32))])
def test_config_divides_k_and_fills_the_sms(heads, n, k, expected, monkeypatch):
    """DeepSeek-V2-Lite's W_UK and W_UV (16 heads), V3's W_UK (128), and a K that 128 does not divide, on a GPU of
    132 SMs."""
    monkeypatch.setattr(importlib.import_module("spmd_kernels.head_gemm"), "_num_sms", lambda device: 132)
    block_n, block_k, _, _ = head_gemm_config(heads, n, k, 2, torch.device("cuda"))
    assert (block_n, block_k) == expected and k % block_k == 0


def test_refuses_what_it_does_not_take(device):
    x = torch.randn(MAX_ROWS + 1, HEADS, 64, device=device)
    w = torch.randn(HEADS, 64, 32, device=device)
    assert not head_gemm_supports(x, w)
    assert not head_gemm_supports(x[:4].half(), w)  # dtypes differ
    assert not head_gemm_supports(x[:4, :, :40], w[:, :40])  # K not a multiple of 16
    with pytest.raises(ValueError, match="use torch.bmm"):
        head_gemm(x, w)

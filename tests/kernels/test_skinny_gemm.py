import importlib

import pytest
import torch

from spmd_kernels import skinny_gemm, skinny_gemm_ref
from spmd_kernels.skinny_gemm import MAX_ROWS, skinny_gemm_config, skinny_gemm_supports, skinny_split_k
from spmd_kernels.split_counters import split_counters


def _operands(M, N, K, dtype, device):
    x = torch.randn(M, K, dtype=dtype, device=device)
    w = (torch.randn(N, K, device=device) * K**-0.5).to(dtype)
    return x, w


@pytest.mark.parametrize("M", [0, 1, 5, MAX_ROWS])
@pytest.mark.parametrize("N,K", [(24, 128), (100, 384), (256, 256), (40, 64), (30, 192)])
@pytest.mark.parametrize("with_bias", [False, True])
def test_skinny_gemm(M, N, K, with_bias, dtype, device, assert_close):
    x, w = _operands(M, N, K, dtype, device)
    b = torch.randn(N, dtype=dtype, device=device) if with_bias else None
    y = skinny_gemm(x, w, b)
    assert y.shape == (M, N) and y.dtype == dtype
    assert_close(y, skinny_gemm_ref(x, w, b))


@pytest.mark.parametrize("config", [(32, 128, 4, 3), (64, 128, 4, 5), (128, 128, 8, 2), (16, 256, 2, 1)])
def test_skinny_gemm_every_tile(config, dtype, device, assert_close):
    # N not a multiple of any BLOCK_N (masked last program), K spans several BLOCK_K steps.
    x, w = _operands(3, 200, 1024, dtype, device)
    assert_close(skinny_gemm(x, w, config=config), skinny_gemm_ref(x, w))


@pytest.mark.parametrize("M", [0, 1, 5, MAX_ROWS])
@pytest.mark.parametrize("splits", [2, 3, 6])
@pytest.mark.parametrize("with_bias", [False, True])
def test_skinny_gemm_with_k_split(M, splits, with_bias, dtype, device, assert_close):
    """K split over programs (small weights): each writes partial sums, the tile's last adds them in split order
    and adds the bias once; N off the tile grid; the arrival counters are left at zero for the next launch."""
    x, w = _operands(M, 100, 384, dtype, device)  # 6 k-steps of 64: 3, 2 or 1 a split
    b = torch.randn(100, dtype=dtype, device=device) if with_bias else None
    y = skinny_gemm(x, w, b, config=(32, 64, 4, 2), splits=splits)
    assert y.shape == (M, 100) and y.dtype == dtype
    assert_close(y, skinny_gemm_ref(x, w, b))
    if M:
        assert not split_counters(x.device).any()


def test_skinny_gemm_refuses_a_split_that_does_not_divide_k(device):
    x, w = _operands(2, 64, 384, torch.float32, device)
    with pytest.raises(AssertionError, match="multiple of splits 4"):
        skinny_gemm(x, w, config=(32, 64, 4, 2), splits=4)


@pytest.mark.parametrize("n,k,splits", [(1024, 2048, 4), (1024, 3072, 4), (4096, 1024, 1), (6144, 1024, 1),
                                        (128, 128, 1), (151936, 1024, 1)])
def test_skinny_split_k_fills_the_sms_and_divides_k(n, k, splits, monkeypatch):
    """Qwen3-0.6B's o, down, qkv and gate_up, a weight of one k-step pair, and an LM head whose tiles fill the SMs,
    on a GPU of 132 SMs; the CPU never splits."""
    skinny_module = importlib.import_module("spmd_kernels.skinny_gemm")  # the package re-exports the function
    monkeypatch.setattr(skinny_module, "_num_sms", lambda device: 132)
    assert skinny_split_k(n, k, torch.device("cuda")) == splits
    block_k = skinny_gemm_config(n, k)[1]
    assert k % (block_k * splits) == 0 and k // (block_k * splits) >= min(2, k // block_k)
    assert skinny_split_k(n, k, torch.device("cpu")) == 1


def test_skinny_gemm_leading_dims_and_strided_rows(dtype, device, assert_close):
    x, w = _operands(8, 72, 256, dtype, device)
    x3 = x.view(2, 4, 256)
    assert_close(skinny_gemm(x3, w), skinny_gemm_ref(x3, w))
    wide = torch.randn(4, 512, dtype=dtype, device=device)
    rows = wide[:, :256]  # row stride 512, not 256
    assert_close(skinny_gemm(rows, w), skinny_gemm_ref(rows, w))


def test_skinny_gemm_ref_is_linear(device):
    x, w = _operands(3, 10, 128, torch.float32, device)
    b = torch.randn(10, device=device)
    torch.testing.assert_close(skinny_gemm_ref(x, w, b), torch.nn.functional.linear(x, w, b))


def test_skinny_gemm_supports_and_rejects(device):
    x, w = _operands(MAX_ROWS + 1, 64, 128, torch.float16, device)
    assert not skinny_gemm_supports(x, w)
    with pytest.raises(ValueError, match="use F.linear"):
        skinny_gemm(x, w)
    assert not skinny_gemm_supports(*_operands(2, 64, 100, torch.float16, device))  # K not a multiple of 64
    assert not skinny_gemm_supports(x[:2].float(), w)  # dtypes differ
    assert skinny_gemm_supports(x[:MAX_ROWS], w)


@pytest.mark.parametrize("n,k", [(6144, 4096), (4096, 4096), (28672, 4096), (4096, 14336), (128256, 4096),
                                 (1024, 2048), (576, 2048), (24, 128), (100, 640), (10, 64), (6144, 192)])
@pytest.mark.parametrize("itemsize", [2, 4])
def test_skinny_gemm_config_divides_k_and_fits_shared_memory(n, k, itemsize):
    block_n, block_k, warps, stages = skinny_gemm_config(n, k, itemsize)
    assert k % block_k == 0 and block_n in (16, 32, 64, 128) and warps in (2, 4, 8) and stages >= 1
    # one weight tile and one padded x tile per pipeline stage, within Hopper's 227 KB of shared memory
    assert (block_n + 16) * block_k * itemsize * stages <= 227 * 1024


@pytest.mark.skipif(not torch.cuda.is_available(), reason="model-sized weights: GPU only")
@pytest.mark.parametrize("N,K", [(6144, 4096), (4096, 14336), (4096, 12288), (28672, 4096), (151936, 1024)])
@pytest.mark.parametrize("M", [1, 4, 16])
def test_skinny_gemm_model_shapes_bf16(M, N, K):
    # The engine's shapes with the engine's tiles, against an fp64 product: bf16 rounding of outputs near 1 only.
    x = torch.randn(M, K, device="cuda").to(torch.bfloat16)
    w = (torch.randn(N, K, device="cuda") * K**-0.5).to(torch.bfloat16)
    exact = (x.double() @ w.double().t()).float()
    got = skinny_gemm(x, w).float()
    torch.testing.assert_close(got, exact, atol=2e-2, rtol=2e-2)
    torch.testing.assert_close(torch.nn.functional.linear(x, w).float(), exact, atol=2e-2, rtol=2e-2)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="model-sized weights: GPU only")
@pytest.mark.parametrize("N,K", [(1024, 2048), (1024, 3072), (4096, 1024), (6144, 1024)])
@pytest.mark.parametrize("M", [1, 16])
def test_skinny_gemm_split_model_shapes_bf16(M, N, K):
    # Qwen3-0.6B's o, down, qkv and gate_up with the split skinny_split_k picks on this GPU, against fp64.
    x = torch.randn(M, K, device="cuda").to(torch.bfloat16)
    w = (torch.randn(N, K, device="cuda") * K**-0.5).to(torch.bfloat16)
    splits = skinny_split_k(N, K, x.device)
    exact = (x.double() @ w.double().t()).float()
    torch.testing.assert_close(skinny_gemm(x, w, splits=splits).float(), exact, atol=2e-2, rtol=2e-2)
    assert not split_counters(x.device).any()

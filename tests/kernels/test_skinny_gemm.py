import pytest
import torch

from spmd_kernels import (skinny_gemm_partials, skinny_gemm_partials_ref, silu_and_mul_ref, skinny_gemm,
                          skinny_gemm_ref)
from spmd_kernels.skinny_gemm import MAX_ROWS, down_partials_config, skinny_gemm_config, skinny_gemm_supports


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


def _partials_operands(M, N, K, gated, dtype, device):
    x = torch.randn(M, 2 * K if gated else K, dtype=dtype, device=device)
    return x, (torch.randn(N, K, device=device) * K**-0.5).to(dtype)


@pytest.mark.parametrize("M", [0, 1, 5, MAX_ROWS])
@pytest.mark.parametrize("N,K,splits", [(24, 256, 1), (100, 512, 2), (40, 512, 4), (64, 384, 3)])
@pytest.mark.parametrize("gated", [False, True])
def test_skinny_gemm_partials(M, N, K, splits, gated, dtype, device, assert_close):
    x, w = _partials_operands(M, N, K, gated, dtype, device)
    config = (32, 64, 4, 2)  # BLOCK_K 64: several loop steps in each split
    parts = skinny_gemm_partials(x, w, splits, config, gated)
    assert parts.shape == (splits, M, N) and parts.dtype == torch.float32
    assert_close(parts.to(dtype), skinny_gemm_partials_ref(x, w, splits, gated).to(dtype))
    # The split sums are the (down) projection of (silu_and_mul of) x, as the unfused layers compute it.
    assert_close(parts.sum(0).to(dtype), skinny_gemm_ref(silu_and_mul_ref(x) if gated else x, w))


def test_skinny_gemm_partials_leading_dims_and_default_tiles(dtype, device, assert_close):
    x, w = _partials_operands(6, 72, 1024, True, dtype, device)
    parts = skinny_gemm_partials(x.view(2, 3, 2048), w, 2, gated=True)
    assert parts.shape == (2, 6, 72)
    assert_close(parts.to(dtype), skinny_gemm_partials_ref(x, w, 2, gated=True).to(dtype))


def test_skinny_gemm_partials_rejects_what_it_cannot_split(device):
    x, w = _partials_operands(2, 64, 256, True, torch.float16, device)
    with pytest.raises(ValueError, match="use the projection"):
        skinny_gemm_partials(x, w, 3, (32, 64, 4, 2), gated=True)  # 256 = 4 tiles of 64: not 3 equal splits
    with pytest.raises(ValueError, match="use the projection"):
        skinny_gemm_partials(x[:, :256], w, 1, gated=True)  # not [gate | up]: the width is K, not 2K
    with pytest.raises(ValueError, match="use the projection"):
        skinny_gemm_partials(x, w, 1)  # ungated: the width must be K


@pytest.mark.parametrize("n,k,itemsize", [(4096, 14336, 2), (1024, 3072, 2), (5120, 25600, 2), (64, 128, 4),
                                          (2048, 6144, 2), (100, 192, 2)])
@pytest.mark.parametrize("num_sms", [1, 78, 132])
def test_down_partials_config_splits_k_evenly_within_one_wave(n, k, itemsize, num_sms):
    (block_n, block_k, warps, stages), splits = down_partials_config(n, k, itemsize, num_sms)
    assert k % (block_k * splits) == 0 and splits >= 1
    programs = -(-n // block_n) * splits
    assert splits == 1 or programs <= num_sms
    assert (block_n + 16) * block_k * itemsize * stages <= 227 * 1024


@pytest.mark.skipif(not torch.cuda.is_available(), reason="model-sized weights: GPU only")
@pytest.mark.parametrize("M", [1, 4, 16])
def test_skinny_gemm_partials_llama_down_bf16(M):
    # Llama-3-8B's down projection with the engine's tiles and splits, gated and not, against fp64 over the
    # rounded activation.
    n, k = 4096, 14336
    gate_up = torch.randn(M, 2 * k, device="cuda").to(torch.bfloat16)
    w = (torch.randn(n, k, device="cuda") * k**-0.5).to(torch.bfloat16)
    config, splits = down_partials_config(n, k, 2, torch.cuda.get_device_properties(0).multi_processor_count)
    act = silu_and_mul_ref(gate_up)
    exact = (act.double() @ w.double().t()).float()
    for x, gated in ((gate_up, True), (act, False)):
        got = skinny_gemm_partials(x, w, splits, config, gated).sum(0)
        torch.testing.assert_close(got, exact, atol=2e-3, rtol=2e-3)

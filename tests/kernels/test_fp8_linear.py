"""fp8_linear (block-scaled float8 weights) against its torch reference: both activation kinds (float8, or the
weights widened to x's dtype), both product orientations, K split over programs, odd sizes."""

import importlib

import pytest
import torch

from spmd_kernels.block_fp8 import dequantize_blocks, quantize_blocks
from spmd_kernels.fp8_linear import fp8_linear, fp8_linear_ref
from spmd_kernels.split_counters import split_counters

HAS_CUDA = torch.cuda.is_available()


def _weights(n, k, block, device):
    """Float8 weights whose blocks span very different ranges (a scale applied to the wrong block shows)."""
    w = torch.randn(n, k, device=device) * k**-0.5
    ranges = torch.logspace(-1, 0.5, 5, device=device)  # 0.1 .. 3.2
    w = w * ranges[(torch.arange(n, device=device) // block[0]) % 5][:, None]
    w = w * ranges.flip(0)[(torch.arange(k, device=device) // block[1]) % 5][None, :]
    return quantize_blocks(w, block)


def _tolerance(ref: torch.Tensor, activations: str) -> float:
    """x is rounded the same way by both (bit for bit): what differs is the order of fp32 sums (~1e-5 of the
    output's peak, the products' scales spanning 30x), where the result rounds to a 16-bit dtype one step of it,
    and with float8 activations on a GPU, the float8 tensor-core dot's own accumulation within a k-step, which keeps
    about 14 bits (DeepSeek-V3's report; H200: up to 4e-5 of the peak here). A wrong block's scale is off by 10%+."""
    peak = ref.float().abs().max().item()
    tol = 2 * torch.finfo(ref.dtype).eps if ref.dtype != torch.float32 else 1e-5
    if activations == "fp8" and ref.is_cuda:
        tol += 2**-12
    return peak * tol + 1e-6


# (rows, N, K, block): N and K off the block grid (a partial last block each way), BLOCK_N below the block's rows
# (two tiles a block row on the CPU's 32-wide tiles), rows on both sides of a tile.
CASES = [
    (0, 64, 64, (32, 32)),
    (1, 64, 64, (32, 32)),
    (5, 72, 80, (32, 32)),
    (16, 96, 64, (64, 32)),
    (33, 40, 96, (32, 32)),
    (70, 64, 48, (16, 16)),  # 16-column blocks: too narrow for a float8 dot, activations in the model's dtype
]


@pytest.mark.parametrize("swap", [True, False])
@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("activations", ["model", "fp8"])
@pytest.mark.parametrize("rows,n,k,block", CASES)
def test_fp8_linear(rows, n, k, block, activations, bias, swap, dtype, device, assert_close, monkeypatch):
    monkeypatch.setattr(importlib.import_module("spmd_kernels.fp8_linear"), "SWAP_AB", swap)
    w, scale = _weights(n, k, block, device)
    x = torch.randn(rows, k, device=device).to(dtype)
    b = torch.randn(n, device=device).to(dtype) if bias else None
    out = fp8_linear(x, w, scale, block, b, activations=activations)
    ref = fp8_linear_ref(x, w, scale, block, b, activations=activations)
    assert out.shape == (rows, n) and out.dtype == dtype
    if rows:
        assert_close(out.float(), ref.float(), atol=_tolerance(ref, activations), rtol=0)


@pytest.mark.parametrize("splits", [2, 3])
@pytest.mark.parametrize("rows,n,k,block", [(1, 64, 160, (32, 32)), (5, 72, 80, (32, 32)), (40, 40, 96, (32, 32)),
                                            (3, 64, 64, (32, 32))])
def test_fp8_linear_split_k(rows, n, k, block, splits, dtype, device, assert_close):
    """K split over several programs a tile (decode over few output tiles): partial sums added up by the last
    program to finish, in split order; uneven splits, and a split with no k-step left (3 splits of 2 steps) adding
    nothing; the arrival counters left at zero for the next launch."""
    w, scale = _weights(n, k, block, device)
    x = torch.randn(rows, k, device=device).to(dtype)
    b = torch.randn(n, device=device).to(dtype)
    for activations in ("fp8", "model"):
        out = fp8_linear(x, w, scale, block, b, activations=activations, splits=splits)
        ref = fp8_linear_ref(x, w, scale, block, b, activations=activations)
        assert_close(out.float(), ref.float(), atol=_tolerance(ref, activations), rtol=0)
    if x.is_cuda:  # (the CPU never splits by itself: its counters are made only for these calls)
        assert not split_counters(x.device).any()


def test_fp8_linear_takes_leading_dims_and_strided_rows(dtype, device, assert_close):
    block = (32, 32)
    w, scale = _weights(48, 64, block, device)
    x = torch.randn(2, 3, 128, device=device).to(dtype)[..., :64]  # rows 128 apart
    out = fp8_linear(x, w, scale, block, activations="fp8")
    assert out.shape == (2, 3, 48)
    assert_close(out, fp8_linear_ref(x, w, scale, block, activations="fp8"))


def test_fp8_activations_stay_within_float8_rounding_of_the_dequantized_model(device):
    block = (32, 32)
    w, scale = _weights(64, 96, block, device)
    x = torch.randn(9, 96, device=device)
    plain = x @ dequantize_blocks(w, scale, block).t()
    out = fp8_linear(x, w, scale, block, activations="fp8")
    # Each x value moves by at most 2^-4 of itself; the sums move far less than that bound.
    assert (out - plain).abs().max() <= 2**-4 * (x.abs() @ dequantize_blocks(w, scale, block).abs().t()).max()
    assert not torch.equal(out, plain)  # the activations were rounded


def test_fp8_linear_rejects_a_bad_setting(device):
    w, scale = _weights(32, 32, (32, 32), device)
    with pytest.raises(ValueError, match="activations='fp16'"):
        fp8_linear(torch.randn(1, 32, device=device), w, scale, (32, 32), activations="fp16")


@pytest.mark.skipif(not HAS_CUDA, reason="the CUDA tiles (decode and prefill) need a GPU")
@pytest.mark.parametrize("rows,n", [(1, 640), (16, 640), (17, 640), (32, 640), (64, 640), (65, 640), (300, 640),
                                    (1, 17024), (17, 17024), (64, 17024)])
def test_fp8_linear_cuda_tiles(rows, n, monkeypatch):
    """Every CUDA_CONFIGS and WIDE_CUDA_CONFIGS tile (17024 rows: 266 tiles of 64, wide on up to 133 SMs) on a
    release's 128 x 128 blocks, in bf16 (the interpreter cannot check bf16)."""
    monkeypatch.setattr(importlib.import_module("spmd_kernels.fp8_linear"), "WIDE_TILES", True)
    block = (128, 128)
    w, scale = _weights(n, 1152, block, "cuda")
    x = torch.randn(rows, 1152, device="cuda", dtype=torch.bfloat16)
    for activations in ("fp8", "model"):
        out = fp8_linear(x, w, scale, block, activations=activations)
        ref = fp8_linear_ref(x, w, scale, block, activations=activations)
        peak = ref.float().abs().max().item()
        torch.testing.assert_close(out.float(), ref.float(), atol=peak * 2**-7, rtol=0)


def test_fp8_linear_takes_activations_rounded_already(dtype, device):
    """x handed over as float8 with its scales (a producer rounded it, activation.silu_and_mul_quantized) gives
    what rounding it here gives, bit for bit."""
    from spmd_kernels.scaled_activations import quantize_activations

    block = (32, 32)
    w, scale = _weights(72, 96, block, device)
    x = torch.randn(5, 96, device=device).to(dtype)
    q, xs = quantize_activations(x, block[1])
    out = fp8_linear(q, w, scale, block, x_scale=xs, out_dtype=dtype)
    assert out.dtype == dtype and torch.equal(out, fp8_linear(x, w, scale, block, activations="fp8"))


def test_a_float8_mlp_hands_its_down_projection_rounded_inputs(device, monkeypatch):
    """LlamaMLP over float8 layers where they meet float8 activations (on CUDA; forced here, the interpreter runs
    the kernels): the SiLU kernel rounds h as it writes it, and the output is what the down projection rounding h
    itself gives, bit for bit."""
    from spmd_infer.layers.linear import LinearBase
    from spmd_infer.models.llama import LlamaMLP
    from spmd_infer.parallel.comm import Shard
    from spmd_kernels import silu_and_mul

    block = (32, 32)
    mlp = LlamaMLP(64, 96, Shard())
    for layer in (mlp.gate_up_proj, mlp.down_proj):
        layer.hold_in_float8(block)
        layer.init_random(torch.Generator().manual_seed(0))
    mlp.to(device)
    x = torch.randn(7, 64, device=device)
    gate_up = mlp.gate_up_proj(x)
    down = mlp.down_proj
    want = fp8_linear(silu_and_mul(gate_up), down.weight, down.weight_scale, block, activations="fp8")
    monkeypatch.setattr(LinearBase, "takes_rounded_inputs", lambda self, t: self.fp8_block is not None)
    llama = importlib.import_module("spmd_infer.models.llama")
    calls = []
    fused = llama.silu_and_mul_quantized
    monkeypatch.setattr(llama, "silu_and_mul_quantized", lambda *a: calls.append(a) or fused(*a))
    assert torch.equal(mlp(x), want) and len(calls) == 1


@pytest.mark.parametrize("kb", [8, 9])
def test_cublas_weight_scales_layout(kb):
    """The weights' block scales as cuBLAS's 128x128 recipe reads them: [round_up(K / 128, 4), N / 128] with
    strides (1, that round-up), the values unchanged (a view where K / 128 is a multiple of 4, a padded copy else)."""
    from spmd_kernels.fp8_linear import cublas_weight_scales

    ws = torch.rand(5, kb)
    out = cublas_weight_scales(ws)
    padded = -(-kb // 4) * 4
    assert out.shape == (padded, 5) and out.stride() == (1, padded)
    assert torch.equal(out[:kb], ws.t())
    assert (out.data_ptr() == ws.data_ptr()) == (padded == kb)


def test_cublas_takes_only_what_it_runs():
    """Only a CUDA device of compute capability 9.x with torch's block-wise recipes, 128 x 128 blocks, whole
    blocks both ways, enough rows and a 16-bit output go to cuBLAS."""
    fl = importlib.import_module("spmd_kernels.fp8_linear")
    cpu = torch.device("cpu")
    assert not fl.takes_cublas(4096, 4096, 4096, (128, 128), cpu, torch.bfloat16)
    if HAS_CUDA and fl.cublas_block_scaled(torch.device("cuda")):
        cuda = torch.device("cuda")
        assert fl.takes_cublas(fl.CUBLAS_MIN_ROWS, 4096, 4096, (128, 128), cuda, torch.bfloat16)
        for args in [(fl.CUBLAS_MIN_ROWS - 1, 4096, 4096, (128, 128), cuda, torch.bfloat16),
                     (4096, 4096, 4096, (64, 128), cuda, torch.bfloat16),
                     (4096, 4000, 4096, (128, 128), cuda, torch.bfloat16),
                     (4096, 4096, 4096, (128, 128), cuda, torch.float32)]:
            assert not fl.takes_cublas(*args)


@pytest.mark.skipif(not HAS_CUDA, reason="cuBLAS's block-scaled float8 GEMM needs a GPU")
@pytest.mark.parametrize("rows,k", [(128, 1024), (301, 1152), (1000, 4096), (1027, 1024)])
def test_fp8_linear_cublas_path(rows, k, monkeypatch):
    """Prefill-sized products through cuBLAS (takes_cublas) give the Triton kernel's values to fp32 summation
    order: K / 128 a multiple of 4 (the scales' view) or not (a padded copy), rows not a multiple of 4 (padded), a
    bias, x rounded already with token-major scales (the SiLU kernel's)."""
    from spmd_kernels.scaled_activations import quantize_activations

    fl = importlib.import_module("spmd_kernels.fp8_linear")
    if not fl.cublas_block_scaled(torch.device("cuda")):
        pytest.skip("this GPU or torch build lacks cuBLAS's block-scaled float8 GEMM (sm_90, CUDA 12.9+)")
    block = (128, 128)
    w, scale = _weights(768, k, block, "cuda")
    x = torch.randn(rows, k, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(768, device="cuda", dtype=torch.bfloat16)
    q, xs = quantize_activations(x, block[1])
    assert fl.takes_cublas(rows, 768, k, block, x.device, x.dtype)
    outs = [fp8_linear(x, w, scale, block, b, activations="fp8"),
            fp8_linear(q, w, scale, block, b, x_scale=xs, out_dtype=torch.bfloat16)]
    monkeypatch.setattr(fl, "CUBLAS_MIN_ROWS", 0)  # the Triton kernel
    triton_out = fp8_linear(x, w, scale, block, b, activations="fp8")
    ref = fp8_linear_ref(x, w, scale, block, b, activations="fp8")
    for out in outs:
        torch.testing.assert_close(out.float(), ref.float(), atol=_tolerance(ref, "fp8"), rtol=0)
        torch.testing.assert_close(out.float(), triton_out.float(), atol=_tolerance(ref, "fp8"), rtol=0)


def test_wide_weights_take_wide_decode_tiles(monkeypatch):
    """fp8_linear_config with SPMD_FP8_WIDE_TILES: 128 weight rows a program at decode where a weight has 2+ tiles
    of 64 rows an SM and its wide tiles fill their waves as well (Llama-3-8B's gate_up on 132 SMs: 85% of 2 waves,
    as 448 narrow tiles fill 4), CUDA_CONFIGS where they would not (Qwen3-8B's: 73% against 97%), for narrower
    weights, past 64 rows, or off."""
    fl = importlib.import_module("spmd_kernels.fp8_linear")
    h200 = type("Properties", (), {"multi_processor_count": 132})
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda device: h200)
    cuda = torch.device("cuda")
    monkeypatch.setattr(fl, "WIDE_TILES", True)
    assert fl.fp8_linear_config(16, cuda, 28672) == fl.WIDE_CUDA_CONFIGS[32]
    assert fl.fp8_linear_config(64, cuda, 28672) == fl.WIDE_CUDA_CONFIGS[64]
    assert fl.fp8_linear_config(65, cuda, 28672) == fl.CUDA_CONFIGS[512]
    assert fl.fp8_linear_config(16, cuda, 6144) == fl.CUDA_CONFIGS[16]
    assert fl.fp8_linear_config(32, cuda, 6144) == fl.CUDA_CONFIGS[64]
    assert fl.fp8_linear_config(16, cuda, 24576) == fl.CUDA_CONFIGS[16]
    monkeypatch.setattr(fl, "WIDE_TILES", False)
    assert fl.fp8_linear_config(16, cuda, 28672) == fl.CUDA_CONFIGS[16]

"""Linear layers over block-scaled float8 weights (DeepSeek-V3's and Qwen3's -FP8 releases): x @ (w * scale)^T with
x rounded to float8 a token's 128 features at a time, so the GEMM runs float8 tensor-core dots (W8A8, as vLLM /
SGLang serve those releases), or with x kept in its dtype and the weights widened to it (the dequantized model)."""

from __future__ import annotations

import functools
import os

import torch
import torch.nn.functional as F
import triton
import triton.language as tl

from .block_fp8 import dequantize_blocks
from .decode_attention import _num_sms
from .pdl import pdl_args, pdl_enter
from .scaled_activations import ACTIVATIONS, DEFAULT_ACTIVATIONS, quantize_activations, quantize_activations_ref
from .scaled_dot import _scaled_step, _zero_acc
from .split_counters import MAX_SPLIT_TILES, arrive_with_partial_sums, split_scratch, sum_partial_sums

# Float8 activations are rounded once before the GEMM, by quantize_activations or by the kernel that produced them
# (x_scale: activation.silu_and_mul_quantized). (Rounding them inside the GEMM, each program its copy of x's tile a
# k-step, saved that launch at decode but made the kernel issue-bound: H200, session 17, Llama-3-8B qkv at 16 rows
# 23 us against cuBLAS bf16's 16, and slower still at 1 row, whose zero rows took the IEEE division's slow path.)
# Decode-sized tiles (under 64 rows) compute each product transposed, weights x rows, so that sm_90 runs a float8
# wgmma from shared memory (see scaled_dot._scaled_step; fused_moe.SWAP_AB timed it there). Tests flip it.
SWAP_AB = True


@triton.jit(do_not_specialize=["M"])  # the token count changes every step
def _fp8_linear_kernel(x_ptr, xs_ptr, w_ptr, ws_ptr, bias_ptr, y_ptr, part_ptr, count_ptr, M, stride_xm, stride_xsm,
                       stride_wn, stride_sn, stride_ym, N: tl.constexpr, K: tl.constexpr, BLOCK_M: tl.constexpr,
                       BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, SCALE_N: tl.constexpr, ACT: tl.constexpr,
                       SWAP: tl.constexpr, HAS_BIAS: tl.constexpr, GROUP_M: tl.constexpr, SPLIT_K: tl.constexpr,
                       PDL: tl.constexpr):
    """y[m, n] = sum_k x[m, k] * w[n, k] * ws[n // SCALE_N, k // BLOCK_K] (+ bias[n]) for one [BLOCK_M, BLOCK_N] tile
    (or its share of K, SPLIT_K > 1). BLOCK_K is the weight block's width, so a k-step is one scale column and, with
    float8 activations, one scale group of x; BLOCK_N divides SCALE_N, so a tile has one weight scale a k-step.
    Tiles are ordered GROUP_M row tiles at a time (prefill: a group's weights are read from L2, not HBM, by the
    group's other row tiles). ACT: x in float8 with a float32 scale per row per k-step (xs_ptr); else x in the
    model's dtype, the weight tile widened to it.

    SPLIT_K > 1 (decode over weights of few output tiles, e.g. 4096 rows: 64 tiles for 132 SMs): each of a tile's
    SPLIT_K programs streams 1 / SPLIT_K of K and writes its fp32 partial sums to part_ptr [SPLIT_K, M, N]; the last
    to finish (an acq_rel counter a tile, count_ptr) adds them up in split order, so the result does not depend on
    which finished last, writes y and resets the counter for the next launch. One launch, no zero fill."""
    pid = tl.program_id(0)
    split = pid % SPLIT_K
    tile = pid // SPLIT_K
    num_m = tl.cdiv(M, BLOCK_M)
    num_n = tl.cdiv(N, BLOCK_N)
    per_group = GROUP_M * num_n
    first_m = (tile // per_group) * GROUP_M
    rows_here = tl.minimum(num_m - first_m, GROUP_M)
    pid_m = first_m + (tile % per_group) % rows_here
    pid_n = (tile % per_group) // rows_here

    k_steps: tl.constexpr = (K + BLOCK_K - 1) // BLOCK_K
    steps_per_split: tl.constexpr = (k_steps + SPLIT_K - 1) // SPLIT_K
    k_first = split * steps_per_split * BLOCK_K
    k_last = tl.minimum(k_first + steps_per_split * BLOCK_K, K)
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_k = tl.arange(0, BLOCK_K)
    mask_m = offs_m < M
    mask_n = offs_n < N
    rows64 = offs_m.to(tl.int64)
    x_ptrs = x_ptr + rows64[:, None] * stride_xm + k_first + offs_k[None, :]
    # w's rows seen as a [BLOCK_K, BLOCK_N] tile, contiguous along K; int64: N * K may pass 2^31.
    w_ptrs = w_ptr + offs_n[None, :].to(tl.int64) * stride_wn + k_first + offs_k[:, None]
    s_ptr = ws_ptr + (pid_n * BLOCK_N // SCALE_N) * stride_sn
    # The first k-step's weight tile and scale are fetched before waiting on the previous kernel, as skinny_gemm's
    # are (pdl.py): no predecessor writes weights, so the stream starts while it drains. Peeled, so that the loop
    # stays pipelined. A split past K (its range empty) loads zero tiles and clamped, finite scales.
    mask_k = k_first + offs_k < k_last
    w = tl.load(w_ptrs, mask=mask_k[:, None] & mask_n[None, :], other=0.0)
    step = tl.minimum(k_first // BLOCK_K, k_steps - 1)
    scale = tl.load(s_ptr + step)
    pdl_enter(PDL)
    acc = _k_step(_zero_acc(BLOCK_M, BLOCK_N, SWAP), x_ptrs, w, scale, xs_ptr + rows64 * stride_xsm + step, mask_m,
                  mask_k, ACT, SWAP)
    for k0 in range(k_first + BLOCK_K, k_last, BLOCK_K):
        x_ptrs += BLOCK_K
        w_ptrs += BLOCK_K
        mask_k = k0 + offs_k < K
        w = tl.load(w_ptrs, mask=mask_k[:, None] & mask_n[None, :], other=0.0)
        scale = tl.load(s_ptr + k0 // BLOCK_K)
        acc = _k_step(acc, x_ptrs, w, scale, xs_ptr + rows64 * stride_xsm + k0 // BLOCK_K, mask_m, mask_k, ACT, SWAP)
    if SWAP:
        acc = tl.trans(acc)
    mask = mask_m[:, None] & mask_n[None, :]
    if SPLIT_K > 1:
        tile_offs = rows64[:, None] * N + offs_n[None, :]
        if arrive_with_partial_sums(part_ptr + split * M * N + tile_offs, acc, mask, count_ptr + tile) != SPLIT_K - 1:
            return
        acc = sum_partial_sums(part_ptr, tile_offs, mask, M * N, count_ptr + tile, SPLIT_K, BLOCK_M, BLOCK_N)
    if HAS_BIAS:
        acc += tl.load(bias_ptr + offs_n, mask=mask_n, other=0.0).to(tl.float32)[None, :]
    tl.store(y_ptr + rows64[:, None] * stride_ym + offs_n[None, :], acc.to(y_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _k_step(acc, x_ptrs, w, scale, xs_ptrs, mask_m, mask_k, ACT: tl.constexpr, SWAP: tl.constexpr):
    """acc plus one k-step's product: x's [BLOCK_M, BLOCK_K] tile at x_ptrs (rows mask_m, columns mask_k) against
    the weight tile w, scaled by the weight block's scale, and with float8 activations (ACT) by the rows' scales for
    this k-step (xs_ptrs)."""
    a = tl.load(x_ptrs, mask=mask_m[:, None] & mask_k[None, :], other=0.0)
    if ACT:
        scale = scale * _oriented(tl.load(xs_ptrs, mask=mask_m, other=0.0), SWAP)
    return _scaled_step(acc, a, w, scale, SWAP)


@triton.jit
def _oriented(row_scales, SWAP: tl.constexpr):
    """A tile's per-row scales [BLOCK_M] as a column [BLOCK_M, 1] of the accumulator, or a row [1, BLOCK_M] with
    SWAP. (One return: Triton compiles both branches' return types as one.)"""
    if SWAP:
        scales = row_scales[None, :]
    else:
        scales = row_scales[:, None]
    return scales


# (BLOCK_M, BLOCK_N, num_warps, num_stages) on CUDA by rows (BLOCK_K is the weight block's width, 128 in every
# release), from tests/gpu/tune_fp8_linear.py on an H200: decode up to 16 rows 16 rows against 64 weight rows a
# program, transposed (SWAP_AB), six tiles in flight (session 17: 0.88x the time of 16 x 128 at 16 rows); 17-64 rows
# as written, 64 x 64 (session 19, over the 8B shapes: 0.83x the time of 16 x 64 at 24 and 32 rows; Llama-3-8B
# decode bs32 5.1 -> 4.8 ms, Qwen3-8B 5.4-5.5 -> 5.1); a few hundred 64 x 128 (0.72x of 128 x 128 at 256 rows);
# prefill 128 x 128. Against cuBLAS on the same weights in bf16: 1.2-1.8x faster at 1 row (gate_up at 91% of the
# float8 bytes' bound), 1.2-1.7x at 16, 0.8-1.7x at 64, 0.85x at 256 and 8192 rows (prefill: the fp32 promotion
# every 128-deep k-step, and Triton's float8 wgmma pipeline, keep it at ~700 TFLOP/s; on sm_90 cuBLAS takes those,
# CUBLAS_MIN_ROWS).
CUDA_CONFIGS = {16: (16, 64, 4, 6), 64: (64, 64, 4, 4), 512: (64, 128, 4, 4), None: (128, 128, 8, 3)}
# Decode over wide weights, whose 64-row tiles number WIDE_TILES_PER_SM an SM or more (gate_up: Llama-3-8B's 28672
# rows, 448 tiles on 132 SMs), takes 128 weight rows a program instead where those tiles fill their waves as well as
# the 64-row ones (_wave_share): enough programs remain to fill the SMs without splitting K, and each streams twice
# the bytes. H200, tune_fp8_linear.py (session 19, first weight tile fetched before the PDL wait): Llama-3-8B's
# gate_up (224 wide tiles, 85% of two waves; its 448 narrow ones 85% of four) at 1 / 16 / 64 rows 31.4 / 32.9 /
# 37.1 us against 37.3 / 40.7 / 43.3 with CUDA_CONFIGS (32 rows: 34.2, every 64-row tile swept over 35.8);
# Qwen3-8B's (192 wide tiles, 73% of two waves, against 97% of three) faster with 64 rows a program: 27.1 against
# 27.9 us at 1 row, 30.8 against 33.6 at 64. SPMD_FP8_WIDE_TILES=0 turns them off.
WIDE_CUDA_CONFIGS = {32: (32, 128, 4, 4), 64: (64, 128, 4, 4)}
WIDE_TILES_PER_SM = 2
WIDE_TILES = os.environ.get("SPMD_FP8_WIDE_TILES", "1") == "1"
GROUP_M = 8
# Split K over up to this many programs a tile while a launch has fewer than SPLIT_WAVES programs an SM, keeping
# MIN_SPLIT_STEPS k-steps (of 128) a program at least: decode over a 4096-row weight is 64 tiles of 64 rows.
MAX_SPLIT_K, SPLIT_WAVES, MIN_SPLIT_STEPS = 8, 2, 4


def fp8_linear_config(rows: int, device: torch.device, n: int = 0) -> tuple[int, int, int, int]:
    """(BLOCK_M, BLOCK_N, num_warps, num_stages) for `rows` tokens against a weight of `n` rows (BLOCK_N before
    clipping to the weight block): WIDE_CUDA_CONFIGS for a wide weight at decode (with WIDE_TILES) whose wide tiles
    fill their waves at least as well as the narrow ones, else CUDA_CONFIGS."""
    if device.type != "cuda":  # TRITON_INTERPRET: the smallest tiles tl.dot accepts
        return 16, 32, 4, 1
    sms = _num_sms(device)
    narrow, wide = triton.cdiv(n, 64), triton.cdiv(n, 128)
    if WIDE_TILES and narrow >= WIDE_TILES_PER_SM * sms and _wave_share(wide, sms) >= _wave_share(narrow, sms):
        cfg = next((cfg for limit, cfg in WIDE_CUDA_CONFIGS.items() if rows <= limit), None)
        if cfg is not None:
            return cfg
    return next(cfg for limit, cfg in CUDA_CONFIGS.items() if limit is None or rows <= limit)


def _wave_share(programs: int, sms: int) -> float:
    """How full a launch's waves are on average: programs over the SMs' slots in as many waves as they need."""
    return programs / (triton.cdiv(programs, sms) * sms)


def split_k(tiles: int, k_steps: int, device: torch.device) -> int:
    """How many programs share each tile's K: enough for SPLIT_WAVES programs an SM where the tiles are fewer,
    each keeping MIN_SPLIT_STEPS k-steps; 1 on the CPU (the interpreter runs programs one at a time)."""
    if device.type != "cuda" or tiles > MAX_SPLIT_TILES:
        return 1
    return max(1, min(MAX_SPLIT_K, SPLIT_WAVES * _num_sms(device) // tiles, k_steps // MIN_SPLIT_STEPS))


# Products of at least CUBLAS_MIN_ROWS rows (prefill, large decode batches) with float8 activations go to cuBLAS's
# block-scaled float8 GEMM (torch's scaled_mm with DeepSeek's recipe: 1x128 scales of x, 128x128 of the weights;
# cuBLASLt 12.9+, sm_90 only), which promotes each 128-deep k-step to fp32 as the Triton kernel does: the same values
# to fp32 rounding. H200, Llama-3-8B's projections (tests/gpu/probe_scaled_mm.py, session 18): ~1250 TFLOP/s at
# 1024-8192 rows, 1.6x bf16 cuBLAS and 1.8x the Triton kernel (~700: its fp32 promotion a k-step and Triton's float8
# wgmma pipeline); at 256 rows 15-57 us against 22-88; at 64 rows about even with the Triton kernel, which stays
# faster below (its transposed decode tiles and split K). SPMD_FP8_CUBLAS_MIN_ROWS moves the bound (0: never).
CUBLAS_MIN_ROWS = int(os.environ.get("SPMD_FP8_CUBLAS_MIN_ROWS", "128"))
CUBLAS_BLOCK = (128, 128)  # the one block the recipe takes


@functools.cache
def cublas_block_scaled(device: torch.device) -> bool:
    """Whether torch and the GPU run cuBLAS's block-scaled float8 GEMM: torch's scaled_mm with block-wise recipes,
    CUDA 12.9+, compute capability 9.x (torch rejects the recipe elsewhere)."""
    if device.type != "cuda" or not hasattr(F, "scaled_mm") or not torch.version.cuda:
        return False
    recipes = getattr(F, "ScalingType", None)
    if recipes is None or not all(hasattr(recipes, r) for r in ("BlockWise1x128", "BlockWise128x128")):
        return False
    cuda = tuple(int(v) for v in torch.version.cuda.split(".")[:2])
    return cuda >= (12, 9) and torch.cuda.get_device_capability(device)[0] == 9


def takes_cublas(m: int, n: int, k: int, block: tuple[int, int], device: torch.device, out_dtype: torch.dtype) -> bool:
    """Whether an m-row product with float8 activations goes to cuBLAS (CUBLAS_MIN_ROWS): whole 128 x 128 blocks,
    a 16-bit output, on a GPU that runs it."""
    return (0 < CUBLAS_MIN_ROWS <= m and tuple(block) == CUBLAS_BLOCK and n % 128 == 0 and k % 128 == 0
            and out_dtype in (torch.bfloat16, torch.float16) and cublas_block_scaled(device))


def cublas_weight_scales(weight_scale: torch.Tensor) -> torch.Tensor:
    """weight_scale [N / 128, K / 128] as cuBLAS reads the scales of w^T: [round_up(K / 128, 4), N / 128], K-major
    (a view where K / 128 is a multiple of 4 and the rows are dense, else a padded copy)."""
    kb = weight_scale.shape[1]
    padded = -(-kb // 4) * 4
    if padded != kb or weight_scale.stride(0) != kb:
        weight_scale = F.pad(weight_scale, (0, padded - kb))
    return weight_scale.t()


def _cublas_fp8_linear(x: torch.Tensor, x_scale: torch.Tensor | None, weight: torch.Tensor,
                       weight_scale: torch.Tensor, bias: torch.Tensor | None, out_dtype: torch.dtype) -> torch.Tensor:
    """fp8_linear through cuBLAS (takes_cublas): x [m, K] in the model's dtype, rounded here with its scales laid out
    as cuBLAS reads them, or float8 already with token-major x_scale (copied into that layout). cuBLAS wants the
    scales' rows 16-byte aligned, so m is padded to a multiple of 4 with zero rows whose outputs are dropped."""
    m, k = x.shape
    padded = -(-m // 4) * 4
    if x_scale is None:
        x, x_scale = quantize_activations(x, CUBLAS_BLOCK[1], group_major_scales=True, rows_multiple=4)
    elif padded != m or x_scale.stride(0) != 1:
        rounded, x = x, torch.zeros((padded, k), dtype=x.dtype, device=x.device)
        x[:m] = rounded
        scales, x_scale = x_scale, torch.ones((x_scale.shape[1], padded), device=x.device).t()
        x_scale[:m] = scales
    y = F.scaled_mm(x, weight.t(), x_scale, F.ScalingType.BlockWise1x128, cublas_weight_scales(weight_scale),
                    F.ScalingType.BlockWise128x128, output_dtype=out_dtype)[:m]
    return y if bias is None else y.add_(bias)


def takes_fp8_activations(block: tuple[int, int]) -> bool:
    """Whether float8 activations fit blocks of (rows, columns): a k-step is one block column, and a float8 dot
    needs 32 of them (narrower blocks meet activations in the model's dtype)."""
    return block[1] >= 32


def fp8_linear(x: torch.Tensor, weight: torch.Tensor, weight_scale: torch.Tensor, block: tuple[int, int],
               bias: torch.Tensor | None = None, activations: str | None = None,
               config: tuple[int, int, int, int] | None = None, splits: int | None = None,
               x_scale: torch.Tensor | None = None, out_dtype: torch.dtype | None = None) -> torch.Tensor:
    """x [..., K] @ (weight * scales)^T (+ bias) -> [..., N] in x.dtype, fp32 accumulation. weight [N, K] float8
    e4m3 whose (block[0] x block[1]) blocks are multiplied by weight_scale [ceil(N / block[0]), ceil(K / block[1])]
    (float32, DeepSeek-V3's layout); both sides of the block powers of two of at least 16; N and K any size.
    ``activations``: "fp8" rounds x to float8 with a scale per token per block[1] features (fp8_linear_ref says
    exactly how; blocks narrower than 32 columns take "model", takes_fp8_activations), "model" keeps x and widens
    the weights to it; None: DEFAULT_ACTIVATIONS. `config` and `splits` (programs a tile's K is split over)
    override fp8_linear_config and split_k (tuning runs); without them, products of CUBLAS_MIN_ROWS rows or more
    with float8 activations go to cuBLAS where takes_cublas says so. x already rounded (x float8 [..., K] with its
    scales ``x_scale`` [rows, ceil(K / block[1])], e.g. from activation.silu_and_mul_quantized): taken as it is, the
    output in ``out_dtype``. No host sync: CUDA-graph safe (after a first call outside a capture)."""
    n, k = weight.shape
    bn_block, bk = block
    assert weight.dtype == torch.float8_e4m3fn and x.shape[-1] == k and weight.stride(1) == 1
    assert bn_block >= 16 and bk >= 16 and bn_block & (bn_block - 1) == 0 and bk & (bk - 1) == 0
    assert weight_scale.shape == (triton.cdiv(n, bn_block), triton.cdiv(k, bk)) and weight_scale.stride(1) == 1
    rounded = x_scale is not None
    assert not rounded or (x.dtype == torch.float8_e4m3fn and out_dtype is not None and takes_fp8_activations(block))
    activations = "fp8" if rounded else DEFAULT_ACTIVATIONS if activations is None else activations
    if activations not in ACTIVATIONS:
        raise ValueError(f"fp8_linear activations={activations!r}: choose one of {', '.join(ACTIVATIONS)}")
    if not takes_fp8_activations(block):
        activations = "model"
    x2 = x.reshape(-1, k)
    if x2.stride(-1) != 1:
        x2 = x2.contiguous()
    m = x2.shape[0]
    out_dtype = out_dtype or x.dtype
    if (activations == "fp8" and config is None and splits is None
            and takes_cublas(m, n, k, block, x.device, out_dtype)):
        return _cublas_fp8_linear(x2, x_scale, weight, weight_scale, bias, out_dtype).view(*x.shape[:-1], n)
    y = torch.empty((m, n), dtype=out_dtype, device=x.device)
    if m == 0 or n == 0:
        return y.view(*x.shape[:-1], n)
    bm, bn, warps, stages = config or fp8_linear_config(m, x.device, n)
    bn = min(bn, bn_block)
    if y.element_size() >= 4:  # fp32 tiles: keep shared memory in bounds
        stages = min(stages, 2)
    act = activations == "fp8"
    xs = x2  # not read
    if rounded:
        xs = x_scale
        assert xs.shape == (m, triton.cdiv(k, bk)) and xs.stride(1) == 1
    elif act:
        x2, xs = quantize_activations(x2, bk)
    swap = SWAP_AB and act and bm < 64
    tiles = triton.cdiv(m, bm) * triton.cdiv(n, bn)
    splits = splits or split_k(tiles, triton.cdiv(k, bk), x.device)
    part, counters = split_scratch(splits, m, n, tiles, x.device, weight_scale)
    _fp8_linear_kernel[(tiles * splits,)](
        x2, xs, weight, weight_scale, bias if bias is not None else weight_scale, y, part, counters, m, x2.stride(0),
        xs.stride(0), weight.stride(0), weight_scale.stride(0), y.stride(0), N=n, K=k, BLOCK_M=bm, BLOCK_N=bn,
        BLOCK_K=bk, SCALE_N=bn_block, ACT=act, SWAP=swap, HAS_BIAS=bias is not None, GROUP_M=GROUP_M,
        SPLIT_K=splits, num_warps=warps, num_stages=stages, **pdl_args(x.device))
    return y.view(*x.shape[:-1], n)


def fp8_linear_ref(x: torch.Tensor, weight: torch.Tensor, weight_scale: torch.Tensor, block: tuple[int, int],
                   bias: torch.Tensor | None = None, activations: str = "model") -> torch.Tensor:
    """Plain-PyTorch reference for :func:`fp8_linear`: the weights dequantized by their block scales, x rounded to
    float8 as the kernel rounds it ("fp8" where takes_fp8_activations, quantize_activations_ref), the product in fp32,
    rounded once to x.dtype."""
    w = dequantize_blocks(weight, weight_scale, block)
    x2 = x.reshape(-1, x.shape[-1]).float()
    if activations == "fp8" and takes_fp8_activations(block):
        q, scale = quantize_activations_ref(x2, block[1])
        x2 = dequantize_blocks(q, scale, (1, block[1]))
    y = x2 @ w.t()
    if bias is not None:
        y = y + bias.float()
    return y.to(x.dtype).view(*x.shape[:-1], weight.shape[0])

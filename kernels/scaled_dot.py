"""Tensor-core dots over block-scaled float8 weight tiles, shared by the fused MoE and the dense float8 linear
kernels: a fresh fp32 partial product a k-step, scaled, then added (the scale changes every weight block)."""

from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def _zero_acc(BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, SWAP: tl.constexpr):
    """A tile's fp32 accumulator: [BLOCK_M, BLOCK_N], or transposed with SWAP."""
    if SWAP:
        acc = tl.zeros([BLOCK_N, BLOCK_M], dtype=tl.float32)
    else:
        acc = tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.float32)
    return acc


@triton.jit
def _scaled_step(acc, a, w, scale, SWAP: tl.constexpr):
    """acc + (a · w) * scale for a float8 weight tile lying in one scale block: the tile widened to the
    activations' dtype (exact: every e4m3 value is a bf16 / fp16 one; a no-op for float8 activations, whose dot is
    a float8 tensor-core one, twice bf16's rate on Hopper) and the scale (the block's, times the activation rows'
    when they are scaled) applied to the fp32 partial product, as DeepGEMM does, so no weight is rounded after
    scaling.
    SWAP: acc and scale transposed, acc + (w^T · a^T) * scale. With float8 activations and fewer than 64 rows a
    tile, the weight tile as the dot's M side (64+ features) lets sm_90 run it as a wgmma straight from shared
    memory (both operands K-major, as float8 wgmma needs), where Triton's mma for a 16- or 32-row M widens both
    operands to fp16 in registers first (ptx_census.py moe: 160 F2FP of the small tile's 393 instructions a trip)."""
    if SWAP:
        acc = acc + tl.dot(tl.trans(w).to(a.dtype), tl.trans(a), input_precision="ieee") * scale
    else:
        acc = acc + tl.dot(a, w.to(a.dtype), input_precision="ieee") * scale
    return acc

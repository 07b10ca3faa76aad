"""A tiny checkpoint re-saved as DeepSeek-V3's float8 release is (linear weights in float8 e4m3 with a float32
multiplier per block, `X.weight_scale_inv`), and its dequantized twin, the reference transformers runs."""

from __future__ import annotations

from pathlib import Path

import torch

from spmd_infer.bench.block_fp8_writer import write_block_fp8

FP8 = torch.float8_e4m3fn


def write_block_fp8_copy(src: Path, quantized: Path, dequantized: Path, block: tuple[int, int]) -> None:
    """The checkpoint in `src` as a block-float8 checkpoint in `quantized` and as the same values dequantized to the
    checkpoint's dtype in `dequantized` (spmd_infer.bench.block_fp8_writer)."""
    write_block_fp8(src, quantized, block, dequantized)

"""Block-scaled float8 weights (DeepSeek-V3's format): float8 e4m3 values times a float32 scale per block, in torch."""

from __future__ import annotations

import torch
import torch.nn.functional as F

E4M3_MAX = 448.0  # e4m3's largest finite magnitude


def expand_scales(scale: torch.Tensor, shape: tuple[int, int], block: tuple[int, int], row0: int = 0,
                  col0: int = 0) -> torch.Tensor:
    """Each element's float32 scale for a [..., rows, cols] = shape slice starting at (row0, col0) of a weight whose
    (block[0] x block[1]) blocks have scales `scale` [..., R, C] (scale[..., 0, 0]: the block holding (row0, col0))."""
    rows, cols = shape
    r = (torch.arange(rows, device=scale.device) + row0) // block[0] - row0 // block[0]
    c = (torch.arange(cols, device=scale.device) + col0) // block[1] - col0 // block[1]
    return scale.float()[..., r, :][..., c]


def dequantize_blocks(w: torch.Tensor, scale: torch.Tensor, block: tuple[int, int], row0: int = 0,
                      col0: int = 0) -> torch.Tensor:
    """float32 values of float8 weights [..., N, K] (a slice from (row0, col0) of the whole weight, as
    expand_scales), each times its block's scale."""
    return w.float() * expand_scales(scale.to(w.device), tuple(w.shape[-2:]), block, row0, col0)


def quantize_blocks(w: torch.Tensor, block: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """(weights in float8 e4m3, float32 scales [..., ceil(N / block[0]), ceil(K / block[1])]) for weights
    [..., N, K]: a block's scale is its largest magnitude over 448, as DeepSeek-V3's checkpoints are made, so every
    block uses the whole float8 range (all-zero blocks: scale 1)."""
    n, k = w.shape[-2:]
    rows, cols = -(-n // block[0]), -(-k // block[1])
    padded = F.pad(w.float(), (0, cols * block[1] - k, 0, rows * block[0] - n))
    amax = padded.unflatten(-1, (cols, block[1])).unflatten(-3, (rows, block[0])).abs().amax(dim=(-3, -1))
    # A tensor divisor: torch on CUDA divides by a Python scalar as a multiply by its reciprocal, which differs from
    # IEEE division (the kernels' div_rn) in the last bit for 448.
    scale = torch.where(amax > 0, amax / torch.full_like(amax, E4M3_MAX), torch.ones_like(amax))
    q = (w.float() / expand_scales(scale, (n, k), block)).clamp(-E4M3_MAX, E4M3_MAX).to(torch.float8_e4m3fn)
    return q, scale

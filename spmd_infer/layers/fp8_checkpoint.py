"""Float8 checkpoints with a scale per weight block (DeepSeek-V3's release): each rank's slice dequantized as read."""

from __future__ import annotations

from typing import Any, Optional

import torch

from spmd_kernels.block_fp8 import dequantize_blocks, expand_scales, quantize_blocks

from .weights import CheckpointTensor, WeightError

SCALE_SUFFIX = "_scale_inv"  # "X.weight" is stored as float8, "X.weight_scale_inv" holds its per-block multipliers


def block_fp8_scheme(hf_config: Any) -> Optional[tuple[int, int]]:
    """(rows, columns) of a weight block when config.json declares block-scaled float8 weights
    (quant_method fp8 with weight_block_size), else None for unquantized checkpoints. Any other quantization is a
    ValueError naming it: weights are loaded dequantized, and only this scheme is known here."""
    quant = getattr(hf_config, "quantization_config", None)
    if not quant:
        return None
    get = quant.get if isinstance(quant, dict) else lambda key, default=None: getattr(quant, key, default)
    method, fmt, block = get("quant_method"), get("fmt", "e4m3"), get("weight_block_size")
    if method == "fp8" and fmt == "e4m3" and block is not None and len(block) == 2 and min(block) > 0:
        return int(block[0]), int(block[1])
    raise ValueError(f"config.json declares quantized weights (quantization_config, quant_method={method!r}"
                     f"{', fmt=' + repr(fmt) if method == 'fp8' else ''}, weight_block_size={block!r}); spmd-infer "
                     f"loads bf16 / fp16 / fp32 checkpoints and float8 e4m3 ones with a scale per weight block "
                     f"(DeepSeek-V3's release): point model.path at the model's bf16 release, or dequantize this "
                     f"one first")


class BlockFp8Tensor(CheckpointTensor):
    """A float8 checkpoint weight [N, K] and its scales [ceil(N / rows), ceil(K / cols)]: read() and narrow() give
    float32 values on `device` (copied into the parameter in the model's dtype, so rounded once), reading from disk
    only the float8 slice asked for and the scales of the blocks it touches. Dequantized where the parameter lives:
    on a GPU the float8 slice crosses the bus at half a bf16 one's bytes and the arithmetic is the GPU's."""

    def __init__(self, name: str, weight: CheckpointTensor, scale: CheckpointTensor, block: tuple[int, int],
                 device: torch.device | str = "cpu"):
        self.name = name
        self.shape = weight.shape
        self.bytes_read = 0
        self._weight, self._scale, self._block, self._device = weight, scale, block, device
        expected = tuple(-(-n // b) for n, b in zip(self.shape, block)) if len(self.shape) == 2 else None
        if expected is None or scale.shape != expected:
            raise WeightError(f"tensor {name!r}: a float8 weight of shape {list(self.shape)} with blocks of "
                              f"{list(block)} needs scales of shape {list(expected or ['2-D weight'])}, the "
                              f"checkpoint's {name + SCALE_SUFFIX!r} has {list(scale.shape)}")

    @property
    def block(self) -> tuple[int, int]:
        return self._block

    def read(self) -> torch.Tensor:
        return self.narrow(0, 0, self.shape[0])

    def narrow(self, dim: int, start: int, length: int) -> torch.Tensor:
        weight, scale = self.narrow_stored(dim, start, length)
        return dequantize_blocks(weight, scale, self._block, start if dim == 0 else 0, start if dim == 1 else 0)

    def narrow_stored(self, dim: int, start: int, length: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The float8 slice as stored and the scales of the blocks it touches (the first: the block holding the
        slice's first element), on `device`: for weights kept in float8 (model.expert_dtype=fp8)."""
        weight = self._weight.narrow(dim, start, length)
        first, last = start // self._block[dim], (start + length - 1) // self._block[dim]
        scale = self._scale.narrow(dim, first, last - first + 1)
        self.bytes_read = self._weight.bytes_read + self._scale.bytes_read
        if weight.dtype != torch.float8_e4m3fn:
            raise WeightError(f"tensor {self.name!r} has scales ({self.name + SCALE_SUFFIX!r}) but is stored as "
                              f"{weight.dtype}, not float8 e4m3")
        return weight.to(self._device), scale.to(self._device).float()


def float8_slice(src: CheckpointTensor, dim: int, start: int, length: int, block: tuple[int, int],
                 device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(float8 slice, its scales in `block` blocks) of a checkpoint weight, for weights held in float8 (routed
    experts, dense linears). A float8 checkpoint's bytes are kept as stored when every block here lies inside one
    of its blocks (its scale repeated), so nothing is rounded again; anything else is quantized now (block amax /
    448)."""
    rows, cols = block
    if (isinstance(src, BlockFp8Tensor) and src.block[0] % rows == 0 and src.block[1] % cols == 0
            and start % block[dim] == 0):
        weight, scale = src.narrow_stored(dim, start, length)
        origin = (start, 0) if dim == 0 else (0, start)
        return weight, expand_scales(scale, tuple(weight.shape), src.block, *origin)[::rows, ::cols]
    return quantize_blocks(src.narrow(dim, start, length).to(device), block)

"""A tiny checkpoint re-saved as DeepSeek-V3's float8 release is (linear weights in float8 e4m3 with a float32
multiplier per block, `X.weight_scale_inv`), and its dequantized twin, the reference transformers runs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

FP8 = torch.float8_e4m3fn
KEPT = ("embed_tokens.weight", "lm_head.weight", "mlp.gate.weight")  # left unquantized, as in DeepSeek-V3's release


def quantize(weight: torch.Tensor, block: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """(float8 weight, scales [ceil(N / rows), ceil(K / cols)]) with weight ~ float8 * its block's scale."""
    n, k = weight.shape
    scales = torch.empty(-(-n // block[0]), -(-k // block[1]))
    for i in range(scales.shape[0]):
        for j in range(scales.shape[1]):
            tile = weight[i * block[0]:(i + 1) * block[0], j * block[1]:(j + 1) * block[1]]
            scales[i, j] = tile.abs().max().clamp(min=1e-12) / 448
    expanded = scales.repeat_interleave(block[0], 0)[:n].repeat_interleave(block[1], 1)[:, :k]
    return (weight / expanded).to(FP8), scales


def write_block_fp8_copy(src: Path, quantized: Path, dequantized: Path, block: tuple[int, int]) -> None:
    """Save `src` (one model.safetensors) as a block-float8 checkpoint in `quantized` (config.json declaring it)
    and as the same values dequantized to float32 in `dequantized`."""
    tensors = load_file(str(src / "model.safetensors"))
    stored, plain = {}, {}
    for name, t in tensors.items():
        if t.dim() == 2 and name.endswith(".weight") and not name.endswith(KEPT):
            q, scales = quantize(t.float(), block)
            stored[name], stored[name + "_scale_inv"] = q, scales
            expanded = scales.repeat_interleave(block[0], 0)[:t.shape[0]].repeat_interleave(block[1], 1)
            plain[name] = (q.float() * expanded[:, :t.shape[1]]).to(t.dtype)
        else:
            stored[name] = plain[name] = t
    for folder, weights in ((quantized, stored), (dequantized, plain)):
        shutil.copytree(src, folder, dirs_exist_ok=True)
        save_file(weights, str(folder / "model.safetensors"), metadata={"format": "pt"})
    config = json.loads((src / "config.json").read_text())
    config["quantization_config"] = {"quant_method": "fp8", "fmt": "e4m3", "activation_scheme": "dynamic",
                                     "weight_block_size": list(block)}
    (quantized / "config.json").write_text(json.dumps(config, indent=2))

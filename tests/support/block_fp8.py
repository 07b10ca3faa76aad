"""A tiny checkpoint re-saved as DeepSeek-V3's float8 release is (linear weights in float8 e4m3 with a float32
multiplier per block, `X.weight_scale_inv`), and its dequantized twin, the reference transformers runs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from spmd_kernels.block_fp8 import dequantize_blocks, quantize_blocks

FP8 = torch.float8_e4m3fn
KEPT = ("embed_tokens.weight", "lm_head.weight", "mlp.gate.weight")  # left unquantized, as in DeepSeek-V3's release


def write_block_fp8_copy(src: Path, quantized: Path, dequantized: Path, block: tuple[int, int]) -> None:
    """Save the checkpoint in `src` (one safetensors file or several with an index) as a block-float8 checkpoint in
    `quantized` (config.json declaring it; each scale in its weight's file) and as the same values dequantized to
    the checkpoint's dtype in `dequantized`."""
    for folder in (quantized, dequantized):
        shutil.copytree(src, folder, dirs_exist_ok=True)
    index_path = src / "model.safetensors.index.json"
    index = json.loads(index_path.read_text()) if index_path.exists() else None
    for file in sorted(src.glob("*.safetensors")):
        stored, plain = {}, {}
        for name, t in load_file(str(file)).items():
            if t.dim() == 2 and name.endswith(".weight") and not name.endswith(KEPT):
                q, scales = quantize_blocks(t, block)
                stored[name], stored[name + "_scale_inv"] = q, scales
                plain[name] = dequantize_blocks(q, scales, block).to(t.dtype)
                if index:
                    index["weight_map"][name + "_scale_inv"] = file.name
            else:
                stored[name] = plain[name] = t
        save_file(stored, str(quantized / file.name), metadata={"format": "pt"})
        save_file(plain, str(dequantized / file.name), metadata={"format": "pt"})
    if index:
        (quantized / index_path.name).write_text(json.dumps(index, indent=2))
    config = json.loads((src / "config.json").read_text())
    config["quantization_config"] = {"quant_method": "fp8", "fmt": "e4m3", "activation_scheme": "dynamic",
                                     "weight_block_size": list(block)}
    (quantized / "config.json").write_text(json.dumps(config, indent=2))

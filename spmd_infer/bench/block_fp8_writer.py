"""Block-float8 checkpoints in the format of DeepSeek-V3's and Qwen3's -FP8 releases, written from a bf16 one: the
benchmark's float8 random-weight checkpoints (bench.checkpoint_format=fp8) and the tests' float8 models."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Optional

import torch
from safetensors.torch import load_file, save_file

from spmd_kernels.block_fp8 import dequantize_blocks, quantize_blocks

# Left in the checkpoint's dtype, as those releases leave them: embeddings, the LM head, MoE routers (and every
# 1-D tensor: norms, biases).
KEPT = ("embed_tokens.weight", "lm_head.weight", "mlp.gate.weight")


def quantization_config(block: tuple[int, int]) -> dict:
    """config.json's quantization_config for weights in float8 e4m3 with a scale per `block` (rows, columns)."""
    return {"quant_method": "fp8", "fmt": "e4m3", "activation_scheme": "dynamic", "weight_block_size": list(block)}


def write_block_fp8(src: Path, dst: Path, block: tuple[int, int], dequantized: Optional[Path] = None,
                    device: torch.device = torch.device("cpu")) -> None:
    """Save the checkpoint in `src` (one safetensors file or several with an index) as a block-float8 one in `dst`
    (which may be `src`: rewritten in place, a file at a time): every 2-D linear weight but KEPT in float8 e4m3 with
    a float32 multiplier per block (`<name>_scale_inv`, in the weight's file; block amax / 448), config.json
    declaring it. With `dequantized`, the same values dequantized to the checkpoint's dtype are written there too:
    the model a float8 one is compared against. Tensors are quantized on `device` (a GPU: seconds for billions)."""
    for folder in (dst, dequantized):
        if folder is not None and folder != src:
            shutil.copytree(src, folder, dirs_exist_ok=True)
    index_path = src / "model.safetensors.index.json"
    index = json.loads(index_path.read_text()) if index_path.exists() else None
    for file in sorted(src.glob("*.safetensors")):
        stored, plain = {}, {}
        for name, t in load_file(str(file), device=str(device)).items():
            if t.dim() == 2 and name.endswith(".weight") and not name.endswith(KEPT):
                q, scales = quantize_blocks(t, block)
                stored[name], stored[name + "_scale_inv"] = q, scales
                if dequantized is not None:
                    plain[name] = dequantize_blocks(q, scales, block).to(t.dtype)
                if index:
                    index["weight_map"][name + "_scale_inv"] = file.name
            else:
                stored[name] = plain[name] = t
        save_file(stored, str(dst / file.name), metadata={"format": "pt"})
        if dequantized is not None:
            save_file(plain, str(dequantized / file.name), metadata={"format": "pt"})
    if index:
        (dst / index_path.name).write_text(json.dumps(index, indent=2))
    config = json.loads((src / "config.json").read_text())
    config["quantization_config"] = quantization_config(block)
    (dst / "config.json").write_text(json.dumps(config, indent=2))

"""Float8 checkpoints with a scale per weight block (DeepSeek-V3's release), dequantized as each slice is read: the
slices equal the whole weight dequantized, at any shard boundary; what the checkpoint gets wrong is named. The
engine's outputs on such a checkpoint are checked against transformers in tests/test_deepseek.py's launches."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from spmd_infer.layers.fp8_checkpoint import BlockFp8Tensor, block_fp8_scheme
from spmd_infer.layers.weights import CheckpointTensor, WeightError
from spmd_kernels.block_fp8 import dequantize_blocks, expand_scales, quantize_blocks
from support.block_fp8 import FP8, write_block_fp8_copy
from support.tiny_models import build_model

BLOCK = (24, 40)  # neither divides the weights' sizes nor the shard boundaries below


def _weight(n=70, k=100, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, k, generator=g) * torch.linspace(0.01, 30, k)  # blocks of very different ranges


def test_quantized_blocks_dequantize_within_float8_rounding():
    w = _weight()
    q, scales = quantize_blocks(w, BLOCK)
    assert q.dtype == FP8 and scales.shape == (3, 3)
    full = dequantize_blocks(q, scales, BLOCK)
    # e4m3 rounds to within 2^-4 of a value, or to 2^-10 of its block's scale below its normal range (2^-6).
    step = expand_scales(scales, w.shape, BLOCK)
    assert ((full - w).abs() <= w.abs() / 16 + step * 2**-10 * 1.001).all()


@pytest.mark.parametrize("dim,start,length", [(0, 0, 70), (0, 17, 30), (0, 48, 22), (1, 0, 100), (1, 33, 41),
                                              (1, 80, 20), (0, 23, 1), (1, 39, 2)])
def test_a_slice_is_the_whole_dequantized_weight_sliced(tmp_path, dim, start, length):
    w = _weight()
    q, scales = quantize_blocks(w, BLOCK)
    save_file({"w": q, "w_scale_inv": scales}, str(tmp_path / "m.safetensors"))
    with safe_open(str(tmp_path / "m.safetensors"), framework="pt") as f:
        src = BlockFp8Tensor("w", CheckpointTensor("w", f.get_slice("w")),
                             CheckpointTensor("w_scale_inv", f.get_slice("w_scale_inv")), BLOCK)
        part = src.narrow(dim, start, length)
        first, last = start // BLOCK[dim], (start + length - 1) // BLOCK[dim]
        # Only the float8 slice and the scales of the blocks it touches are read.
        assert src.bytes_read == length * w.shape[1 - dim] + (last - first + 1) * scales.shape[1 - dim] * 4
    assert torch.equal(part, dequantize_blocks(q, scales, BLOCK).narrow(dim, start, length))
    assert part.dtype == torch.float32


def test_wrong_scales_and_unscaled_float8_are_named():
    q, scales = quantize_blocks(_weight(), BLOCK)
    with pytest.raises(WeightError, match=r"'w'.* needs scales of shape \[3, 3\].* has \[3, 2\]"):
        BlockFp8Tensor("w", CheckpointTensor("w", q), CheckpointTensor("s", scales[:, :2]), BLOCK)
    not_fp8 = BlockFp8Tensor("w", CheckpointTensor("w", q.float()), CheckpointTensor("s", scales), BLOCK)
    with pytest.raises(WeightError, match="has scales .* but is stored as torch.float32"):
        not_fp8.read()


def test_only_block_scaled_float8_is_taken():
    config = lambda **q: SimpleNamespace(quantization_config=q or None)  # noqa: E731
    assert block_fp8_scheme(config()) is None
    assert block_fp8_scheme(config(quant_method="fp8", fmt="e4m3", weight_block_size=[128, 128])) == (128, 128)
    for bad in (dict(quant_method="fp8", fmt="e4m3"), dict(quant_method="fp8", fmt="e5m2", weight_block_size=[1, 1]),
                dict(quant_method="awq", bits=4)):
        with pytest.raises(ValueError, match="point model.path at the model's bf16 release"):
            block_fp8_scheme(config(**bad))


@pytest.mark.parametrize("name", ["qwen3moe", "llama3"])
def test_other_architectures_load_block_fp8_too(tmp_path, name):
    """Qwen3's -FP8 releases use the same format (MoE experts, tied embeddings left unquantized)."""
    from transformers import AutoConfig

    from spmd_infer.loader import load_weights
    from spmd_infer.models.registry import model_class
    from spmd_infer.parallel.sharding import LayerSharding

    write_block_fp8_copy(build_model(name, tmp_path / "src"), tmp_path / "fp8", tmp_path / "plain", BLOCK)
    params = {}
    for kind in ("fp8", "plain"):
        config = AutoConfig.from_pretrained(tmp_path / kind)
        model = model_class(config)(config, LayerSharding.single())
        load_weights(model, tmp_path / kind)
        params[kind] = dict(model.named_parameters())
    for n, p in params["fp8"].items():
        assert torch.equal(p, params["plain"][n]), n


def _move(folder, name, to_file, tensor=None):
    """Move checkpoint tensor `name` of a sharded checkpoint into `to_file` (or drop it: to_file None), or add
    `tensor` under `name` there; the index follows."""
    index_path = folder / "model.safetensors.index.json"
    index = json.loads(index_path.read_text())
    if tensor is None:
        src = folder / index["weight_map"].pop(name)
        rest = load_file(str(src))
        tensor = rest.pop(name)
        save_file(rest, str(src))
    if to_file is not None:
        dst = folder / to_file
        save_file({**(load_file(str(dst)) if dst.exists() else {}), name: tensor}, str(dst))
        index["weight_map"][name] = to_file
    index_path.write_text(json.dumps(index))


def test_loading_a_block_fp8_checkpoint_gives_its_dequantized_values(tmp_path):
    """The whole model through the loader (one rank, a checkpoint sharded over files): every parameter equals the
    dequantized twin's, with a weight's scales in its own file or another; a scale whose weight is missing, or a
    float8 weight whose scales are, is an error naming it."""
    from transformers import AutoConfig

    from spmd_infer.loader import load_weights
    from spmd_infer.models.registry import model_class
    from spmd_infer.parallel.sharding import LayerSharding

    src = build_model("dsv3", tmp_path / "src", shards=3)
    write_block_fp8_copy(src, tmp_path / "fp8", tmp_path / "plain", BLOCK)
    fp8 = tmp_path / "fp8"
    assert json.loads((fp8 / "config.json").read_text())["quantization_config"]["weight_block_size"] == list(BLOCK)
    config = AutoConfig.from_pretrained(fp8)

    def load(folder):
        model = model_class(config)(config, LayerSharding.single())
        load_weights(model, folder)
        return dict(model.named_parameters())

    plain = load(tmp_path / "plain")
    scale = "model.layers.0.self_attn.o_proj.weight_scale_inv"
    for moved in (False, True):
        if moved:
            _move(fp8, scale, "scales.safetensors")  # a scale in another file than its weight
        for name, p in load(fp8).items():
            assert torch.equal(p, plain[name]), name

    _move(fp8, "model.layers.0.self_attn.o_proj.bias_scale_inv", "scales.safetensors", torch.ones(1))
    with pytest.raises(WeightError, match="no place in the model: .*o_proj.bias_scale_inv"):
        load(fp8)
    _move(fp8, "model.layers.0.self_attn.o_proj.bias_scale_inv", None)
    _move(fp8, scale, None)
    with pytest.raises(WeightError, match="o_proj.weight' is stored as float8 without its scales"):
        load(fp8)

"""Routed experts kept in float8 with a scale per block (model.expert_dtype=fp8): a float8 checkpoint's bytes kept
as stored (at any shard, its blocks split into whole ones), a bf16 one quantized as it loads, the block chosen per
shard, the setting checked. The engine on such experts is checked against transformers in tests/test_deepseek.py."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoConfig

from spmd_infer.engine.model_runner import _random_init
from spmd_infer.job_plan import resolve_fp8_expert_block
from spmd_infer.layers.moe import FusedMoE, RoutingConfig, fp8_resident_block
from spmd_infer.loader import load_weights
from spmd_infer.models.registry import model_class
from spmd_infer.parallel.comm import Shard
from spmd_infer.parallel.dims import ConfigError
from spmd_infer.parallel.sharding import LayerSharding
from spmd_kernels.block_fp8 import dequantize_blocks, quantize_blocks
from support.block_fp8 import write_block_fp8_copy
from support.tiny_models import build_model

CKPT_BLOCK = (32, 32)


def _moe_layers(model) -> list[FusedMoE]:
    return [m for m in model.modules() if isinstance(m, FusedMoE)]


def _load(folder, sharding):
    config = AutoConfig.from_pretrained(folder)
    model = model_class(config)(config, sharding)
    load_weights(model, folder)
    return model


def _dequantized(moe: FusedMoE) -> tuple[torch.Tensor, torch.Tensor]:
    return (dequantize_blocks(moe.w13, moe.w13_scale, moe.fp8_block),
            dequantize_blocks(moe.w2, moe.w2_scale, moe.fp8_block))


@pytest.mark.parametrize("name", ["dsv3", "qwen3moe", "mixtral"])
@pytest.mark.parametrize("mode,size", [("ep", 2), ("tp", 2), ("tp", 1)])
def test_a_float8_checkpoint_keeps_its_bytes(tmp_path, name, mode, size):
    """Every rank's experts hold the checkpoint's float8 bytes and scales exactly: dequantized, they equal the
    bf16-path model's experts loaded from the dequantized twin (tp=2 halves the 32-row blocks into 16-row ones)."""
    write_block_fp8_copy(build_model(name, tmp_path / "src"), tmp_path / "fp8", tmp_path / "plain", CKPT_BLOCK)
    for rank in range(size):
        shard = Shard(rank, size)
        plain = _load(tmp_path / "plain", LayerSharding(attn=Shard(), mlp=shard, dp=Shard(), moe=mode))
        fp8 = _load(tmp_path / "fp8", LayerSharding(attn=Shard(), mlp=shard, dp=Shard(), moe=mode,
                                                    fp8_expert_block=CKPT_BLOCK))
        layers = _moe_layers(fp8)
        assert layers and all(m.w13.dtype == torch.float8_e4m3fn for m in layers)
        assert layers[0].fp8_block == ((16, 16) if mode == "tp" and size == 2 else CKPT_BLOCK)
        for m, ref in zip(layers, _moe_layers(plain)):
            w13, w2 = _dequantized(m)
            assert torch.equal(w13, ref.w13) and torch.equal(w2, ref.w2)


def test_a_bf16_checkpoint_is_quantized_as_it_loads(tmp_path):
    src = build_model("qwen3moe", tmp_path / "src")
    plain = _load(src, LayerSharding.single())
    fp8 = _load(src, LayerSharding(attn=Shard(), mlp=Shard(), dp=Shard(), fp8_expert_block=(128, 128)))
    for m, ref in zip(_moe_layers(fp8), _moe_layers(plain)):
        assert m.fp8_block == (32, 128)  # rows: the gate / up boundary at 32
        for got, want in zip(_dequantized(m), (ref.w13, ref.w2)):
            q, scale = quantize_blocks(want, m.fp8_block)
            assert torch.equal(got, dequantize_blocks(q, scale, m.fp8_block))
            assert ((got - want).abs() <= want.abs() / 16 + scale.max() * 2**-9).all()  # float8 rounding


def test_float8_experts_compute_the_dequantized_experts(tmp_path):
    """The layer's output (torch path on CPU) is the bf16 path's on the dequantized values."""
    routing = RoutingConfig(top_k=2, renormalize=True)
    torch.manual_seed(0)
    fp8 = FusedMoE(8, 64, 64, routing, Shard(), "ep", fp8_block=(32, 32))
    plain = FusedMoE(8, 64, 64, routing, Shard(), "ep")
    _random_init(fp8)
    assert (fp8.w13_scale > 0).all() and (fp8.w2_scale > 0).all()
    plain.gate.data.copy_(fp8.gate)
    plain.w13.data, plain.w2.data = _dequantized(fp8)
    x = torch.randn(5, 64)
    torch.testing.assert_close(fp8(x), plain(x), rtol=1e-5, atol=1e-6)


def test_the_block_fits_the_shard():
    assert fp8_resident_block((128, 128), 1408, "ep") == (128, 128)  # DeepSeek-V2-Lite, whole experts
    assert fp8_resident_block((128, 128), 704, "tp") == (64, 64)  # the same over 2 ranks by width
    assert fp8_resident_block((128, 128), 256, "tp") == (128, 128)  # DeepSeek-V3 over 8 ranks by width
    assert fp8_resident_block((24, 40), 48, "ep") == (16, 128)  # a checkpoint block of no such shape: 128 x 128
    with pytest.raises(ConfigError, match="multiple of 16.*here it is 8"):
        fp8_resident_block((128, 128), 8, "tp")


def test_the_setting_is_checked():
    dense, moe = AutoConfig.for_model("llama"), AutoConfig.for_model("qwen3_moe")
    cpu = torch.device("cpu")
    assert resolve_fp8_expert_block("auto", moe, cpu) is None
    assert resolve_fp8_expert_block("fp8", moe, cpu) == (128, 128)
    moe.quantization_config = {"quant_method": "fp8", "fmt": "e4m3", "weight_block_size": [64, 128]}
    assert resolve_fp8_expert_block("fp8", moe, cpu) == (64, 128)  # the checkpoint's own blocks
    with pytest.raises(ConfigError, match="must be auto or fp8"):
        resolve_fp8_expert_block("int4", moe, cpu)
    with pytest.raises(ConfigError, match="has none; use model.expert_dtype=auto"):
        resolve_fp8_expert_block("fp8", dense, cpu)

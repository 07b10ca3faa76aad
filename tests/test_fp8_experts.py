"""Routed experts kept in float8 with a scale per block (model.expert_dtype=fp8): a float8 checkpoint's bytes kept
as stored (at any shard, its blocks split into whole ones), a bf16 one quantized as it loads, the block chosen per
shard, the setting checked. The engine on such experts is checked against transformers in tests/test_deepseek.py."""

from __future__ import annotations

import importlib

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
    assert resolve_fp8_expert_block("model", moe, cpu) is None
    assert resolve_fp8_expert_block("fp8", moe, cpu) == (128, 128)
    moe.quantization_config = {"quant_method": "fp8", "fmt": "e4m3", "weight_block_size": [64, 128]}
    assert resolve_fp8_expert_block("fp8", moe, cpu) == (64, 128)  # the checkpoint's own blocks
    assert resolve_fp8_expert_block("auto", moe, cpu) is None  # no float8 kernels on the CPU
    with pytest.raises(ConfigError, match="must be one of auto, fp8, model"):
        resolve_fp8_expert_block("int4", moe, cpu)
    with pytest.raises(ConfigError, match="has none; use model.expert_dtype=auto"):
        resolve_fp8_expert_block("fp8", dense, cpu)


def test_auto_keeps_a_float8_checkpoints_experts_float8_where_float8_runs(monkeypatch):
    """auto: a block-float8 MoE checkpoint's experts stay float8 on a GPU of compute capability 8.9+ when every
    rank's share is whole blocks of 16+ rows; an older GPU, a bf16 checkpoint, a dense model or a split too fine for
    float8 blocks dequantizes them instead of failing (model.expert_dtype=fp8 would fail there)."""
    capability = [(9, 0)]
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability[0])
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "an old GPU")
    gpu = torch.device("cuda", 0)  # the resolution asks only the capability, patched: no GPU is touched
    fp8 = {"quant_method": "fp8", "fmt": "e4m3", "weight_block_size": [128, 128]}
    moe = AutoConfig.for_model("deepseek_v2", n_routed_experts=64, moe_intermediate_size=1408)
    assert resolve_fp8_expert_block("auto", moe, gpu) is None  # a bf16 checkpoint
    moe.quantization_config = fp8
    assert resolve_fp8_expert_block("auto", moe, gpu) == (128, 128)
    assert resolve_fp8_expert_block("auto", moe, gpu, mlp_ranks=2, moe="tp") == (128, 128)  # 704 a rank: 64-row blocks
    assert resolve_fp8_expert_block("auto", moe, gpu, mlp_ranks=32, moe="ep") == (128, 128)  # whole experts
    assert resolve_fp8_expert_block("auto", moe, gpu, mlp_ranks=32, moe="tp") is None  # 44 a rank: no 16-row block
    assert resolve_fp8_expert_block("model", moe, gpu) is None
    dense = AutoConfig.for_model("llama")
    dense.quantization_config = fp8
    assert resolve_fp8_expert_block("auto", dense, gpu) is None
    capability[0] = (8, 0)  # an A100: no float8 e4m3 in Triton
    assert resolve_fp8_expert_block("auto", moe, gpu) is None
    with pytest.raises(ConfigError, match="an old GPU .compute capability 8.0. has no float8"):
        resolve_fp8_expert_block("fp8", moe, gpu)


def test_resume_fingerprint_records_float8_experts_as_resolved(tmp_path, monkeypatch):
    """A job resumed where auto resolves differently (another GPU) would mix float8-expert outputs with bf16-expert
    ones: the manifest records float8 experts whatever named them, and the activations that meet them (float8 on
    CUDA by default), and nothing for experts in the model's dtype (so manifests written before the setting existed
    still match)."""
    from types import SimpleNamespace

    from omegaconf import OmegaConf

    from spmd_infer.resume import fingerprint

    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "in.jsonl").write_text("{}\n")
    cfg = OmegaConf.create({"model": {"tokenizer": None}, "sampling": {"temperature": 0.0}})
    from spmd_infer.parallel.dims import ParallelDims

    plan = SimpleNamespace(model_dir=tmp_path, dtype=torch.bfloat16, max_model_len=8, input=tmp_path / "in.jsonl",
                           fp8_expert_block=None, fp8_linear_block=None, device=torch.device("cuda", 0),
                           dims=ParallelDims(1, 1, 1),
                           hf_config=AutoConfig.for_model("qwen3_moe", moe_intermediate_size=768))
    assert "model.expert_dtype" not in fingerprint(cfg, plan, "jsonl")
    plan.fp8_expert_block = (128, 128)
    assert fingerprint(cfg, plan, "jsonl")["model.expert_dtype"] == "fp8"  # float8 activations (the default)
    monkeypatch.setattr(importlib.import_module("spmd_kernels.fused_moe"), "DEFAULT_ACTIVATIONS", "model")
    assert fingerprint(cfg, plan, "jsonl")["model.expert_dtype"] == "fp8, activations in model.dtype"
    plan.device = torch.device("cpu")  # the CPU path computes the dequantized model whatever the switch says
    monkeypatch.undo()
    assert fingerprint(cfg, plan, "jsonl")["model.expert_dtype"] == "fp8, activations in model.dtype"
    # Held blocks of 64 rows by 128 columns (an expert width of 1344 = 64 x 21) cannot take float8 activations.
    plan.device, plan.hf_config = torch.device("cuda", 0), AutoConfig.for_model("qwen3_moe", moe_intermediate_size=1344)
    assert fingerprint(cfg, plan, "jsonl")["model.expert_dtype"] == "fp8, activations in model.dtype"

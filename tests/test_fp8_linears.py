"""Dense linear layers held in float8 with a scale per block (model.linear_dtype): a float8 checkpoint's bytes kept
at every shard that splits into whole blocks (the rest in the model's dtype), a bf16 one quantized as it loads,
the CPU forward equal to the dequantized model's, the setting resolved and recorded. The engine on such layers is
checked against transformers in tests/test_layouts.py and tests/test_deepseek.py."""

from __future__ import annotations

import importlib
from types import SimpleNamespace

import pytest
import torch
from omegaconf import OmegaConf
from transformers import AutoConfig

from spmd_infer.engine.model_runner import _random_init
from spmd_infer.job_plan import resolve_fp8_linear_block
from spmd_infer.layers.linear import LinearBase, fp8_linear_counts
from spmd_infer.loader import load_weights
from spmd_infer.models.registry import model_class
from spmd_infer.parallel.comm import Shard
from spmd_infer.parallel.dims import ConfigError, ParallelDims
from spmd_infer.parallel.sharding import LayerSharding
from spmd_kernels.block_fp8 import dequantize_blocks, quantize_blocks
from support.block_fp8 import write_block_fp8_copy
from support.tiny_models import build_model

BLOCK = (16, 16)


def _load(folder, sharding):
    config = AutoConfig.from_pretrained(folder)
    model = model_class(config)(config, sharding)
    load_weights(model, folder)
    return model


def _linears(model) -> dict[str, LinearBase]:
    return {n: m for n, m in model.named_modules() if isinstance(m, LinearBase)}


def _values(layer: LinearBase) -> torch.Tensor:
    return layer.weight if layer.fp8_block is None else dequantize_blocks(layer.weight, layer.weight_scale,
                                                                          layer.fp8_block)


@pytest.mark.parametrize("name", ["llama", "qwen3", "dsv2lora", "qwen3moe"])
@pytest.mark.parametrize("size", [1, 2, 4])
def test_a_float8_checkpoint_keeps_its_bytes(tmp_path, name, size):
    """Every rank's float8 layers dequantize to the dequantized twin's weights exactly; a layer whose shard is not
    whole blocks (the tiny MLP's 96 rows over 4 ranks: 24) and MLA's kv_b_proj stay in the model's dtype."""
    write_block_fp8_copy(build_model(name, tmp_path / "src"), tmp_path / "fp8", tmp_path / "plain", BLOCK)
    for rank in range(size):
        shard = Shard(rank, size)
        plain = _linears(_load(tmp_path / "plain", LayerSharding(attn=shard, mlp=shard, dp=Shard())))
        model = _load(tmp_path / "fp8", LayerSharding(attn=shard, mlp=shard, dp=Shard(), fp8_linear_block=BLOCK))
        fp8 = _linears(model)
        held = {n for n, m in fp8.items() if m.fp8_block is not None}
        assert fp8_linear_counts(model) == (len(held), len(fp8))
        assert held and all(fp8[n].weight.dtype == torch.float8_e4m3fn for n in held)
        assert not any(n.endswith("kv_b_proj") for n in held)
        if size == 4:
            assert not any(n.endswith(("mlp.gate_up_proj", "mlp.down_proj")) for n in held if ".0." in n)
        else:
            assert len(held) == len(fp8) - sum(n.endswith("kv_b_proj") for n in fp8)
        for n, layer in fp8.items():
            assert torch.equal(_values(layer), plain[n].weight), n


def test_a_bf16_checkpoint_is_quantized_as_it_loads(tmp_path):
    src = build_model("qwen3", tmp_path / "src")
    plain = _linears(_load(src, LayerSharding.single()))
    fp8 = _linears(_load(src, LayerSharding.single(fp8_linear_block=BLOCK)))
    for n, layer in fp8.items():
        assert layer.fp8_block == BLOCK, n
        if n.endswith("qkv_proj"):  # q, k and v quantized one at a time: their blocks are those of the whole
            continue
        q, scale = quantize_blocks(plain[n].weight, BLOCK)
        assert torch.equal(layer.weight.float(), q.float()) and torch.equal(layer.weight_scale, scale), n


def test_float8_layers_compute_the_dequantized_model_on_the_cpu(tmp_path):
    write_block_fp8_copy(build_model("llama", tmp_path / "src"), tmp_path / "fp8", tmp_path / "plain", BLOCK)
    plain = _linears(_load(tmp_path / "plain", LayerSharding.single()))
    fp8 = _linears(_load(tmp_path / "fp8", LayerSharding.single(fp8_linear_block=BLOCK)))
    x = torch.randn(5, 64)
    for n in ("model.layers.0.self_attn.qkv_proj", "model.layers.1.mlp.gate_up_proj"):
        torch.testing.assert_close(fp8[n](x), plain[n](x), rtol=1e-6, atol=1e-6)


def test_random_float8_layers():
    config = AutoConfig.for_model("llama", vocab_size=64, hidden_size=64, intermediate_size=128,
                                  num_hidden_layers=1, num_attention_heads=4, num_key_value_heads=2,
                                  architectures=["LlamaForCausalLM"])
    model = model_class(config)(config, LayerSharding.single(fp8_linear_block=BLOCK))
    _random_init(model)
    for layer in _linears(model).values():
        assert layer.weight.dtype == torch.float8_e4m3fn and (layer.weight_scale > 0).all()
        std = _values(layer).std().item()
        assert 0.8 < std * layer.weight.shape[1] ** 0.5 < 1.2  # std 1 / sqrt(fan_in), as bf16 weights get


def test_the_setting_is_resolved(monkeypatch):
    plain = AutoConfig.for_model("llama")
    released = AutoConfig.for_model("llama")
    released.quantization_config = {"quant_method": "fp8", "fmt": "e4m3", "weight_block_size": [128, 128]}
    odd = AutoConfig.for_model("llama")
    odd.quantization_config = {"quant_method": "fp8", "fmt": "e4m3", "weight_block_size": [24, 40]}
    cpu, gpu = torch.device("cpu"), torch.device("cuda", 0)
    with pytest.raises(ConfigError, match="model.linear_dtype='bf16' must be one of auto, fp8, model"):
        resolve_fp8_linear_block("bf16", plain, cpu)
    assert resolve_fp8_linear_block("model", released, cpu) is None
    assert resolve_fp8_linear_block("auto", released, cpu) is None  # the CPU computes the dequantized model
    assert resolve_fp8_linear_block("fp8", plain, cpu) == (128, 128)  # a bf16 checkpoint quantized as it loads
    capability = [(9, 0)]
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability[0])
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "an old GPU")
    assert resolve_fp8_linear_block("auto", released, gpu) == (128, 128)
    assert resolve_fp8_linear_block("auto", plain, gpu) is None
    assert resolve_fp8_linear_block("auto", odd, gpu) is None  # blocks the kernel cannot take: dequantized
    with pytest.raises(ConfigError, match="blocks are 24 x 40"):
        resolve_fp8_linear_block("fp8", odd, gpu)
    capability[0] = (8, 0)
    assert resolve_fp8_linear_block("auto", released, gpu) is None
    with pytest.raises(ConfigError, match="an old GPU .compute capability 8.0. has no float8"):
        resolve_fp8_linear_block("fp8", released, gpu)


def test_resume_fingerprint_records_float8_linear_layers(tmp_path, monkeypatch):
    from spmd_infer.resume import fingerprint

    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "in.jsonl").write_text("{}\n")
    cfg = OmegaConf.create({"model": {"tokenizer": None}, "sampling": {"temperature": 0.0}})
    plan = SimpleNamespace(model_dir=tmp_path, dtype=torch.bfloat16, max_model_len=8, input=tmp_path / "in.jsonl",
                           fp8_expert_block=None, fp8_linear_block=None, device=torch.device("cuda", 0),
                           dims=ParallelDims(1, 1, 1), hf_config=AutoConfig.for_model("llama"))
    assert "model.linear_dtype" not in fingerprint(cfg, plan, "jsonl")  # manifests from before still match
    plan.fp8_linear_block = (128, 128)
    assert fingerprint(cfg, plan, "jsonl")["model.linear_dtype"] == "fp8"
    monkeypatch.setattr(importlib.import_module("spmd_kernels.fp8_linear"), "DEFAULT_ACTIVATIONS", "model")
    assert fingerprint(cfg, plan, "jsonl")["model.linear_dtype"] == "fp8, activations in model.dtype"
    monkeypatch.undo()
    plan.fp8_linear_block = (16, 16)  # too narrow for a float8 dot: the weights are widened
    assert fingerprint(cfg, plan, "jsonl")["model.linear_dtype"] == "fp8, activations in model.dtype"
    plan.fp8_linear_block, plan.device = (128, 128), torch.device("cpu")
    assert fingerprint(cfg, plan, "jsonl")["model.linear_dtype"] == "fp8, activations in model.dtype"


@pytest.mark.parametrize("float8", [False, True])
def test_a_mis_shaped_replicated_weight_is_named(float8):
    """A replicated weight is compared whole with the checkpoint's, in float8 as in the model's dtype: a longer or
    shorter checkpoint tensor is an error naming it, never a silent prefix."""
    from spmd_infer.layers.linear import ReplicatedLinear
    from spmd_infer.layers.weights import CheckpointTensor, WeightError

    layer = ReplicatedLinear(32, 40)
    if float8:
        layer.hold_in_float8((16, 16))
    for rows in (48, 32):
        src = CheckpointTensor("model.layers.0.self_attn.kv_a_proj_with_mqa.weight", torch.randn(rows, 32))
        with pytest.raises(WeightError, match=rf"kv_a_proj_with_mqa.weight.*\[{rows}, 32\].*\[40, 32\]"):
            layer.weight_loader(layer.weight, src)
    layer.weight_loader(layer.weight, CheckpointTensor("w", torch.randn(40, 32)))  # the right shape loads


def test_auto_keeps_a_layer_the_release_left_unquantized(tmp_path, monkeypatch):
    """A float8 release may leave chosen linear layers in bf16: under model.linear_dtype=auto they stay in the
    model's dtype with the checkpoint's values (ModelRunner calls keep_unquantized_linears before loading); only
    model.linear_dtype=fp8 quantizes them."""
    from spmd_infer.bench import block_fp8_writer
    from spmd_infer.layers.linear import keep_unquantized_linears
    from spmd_infer.loader import unquantized_weights

    kept_names = block_fp8_writer.KEPT + ("self_attn.o_proj.weight", "up_proj.weight")
    monkeypatch.setattr(block_fp8_writer, "KEPT", kept_names)
    write_block_fp8_copy(build_model("llama", tmp_path / "src"), tmp_path / "fp8", tmp_path / "plain", BLOCK)
    unquantized = unquantized_weights(tmp_path / "fp8")
    assert "model.layers.0.self_attn.o_proj.weight" in unquantized and "lm_head.weight" in unquantized
    assert "model.layers.0.self_attn.q_proj.weight" not in unquantized
    config = AutoConfig.from_pretrained(tmp_path / "fp8")
    model = model_class(config)(config, LayerSharding.single(fp8_linear_block=BLOCK))
    linears = len(_linears(model))
    kept = 2 * config.num_hidden_layers  # o_proj and gate_up_proj (its up part left unquantized) in every layer
    assert keep_unquantized_linears(model, unquantized, torch.float32) == kept
    assert fp8_linear_counts(model) == (linears - kept, linears)
    load_weights(model, tmp_path / "fp8")
    plain = _linears(_load(tmp_path / "plain", LayerSharding.single()))
    for n, layer in _linears(model).items():
        unchanged = n.endswith(("o_proj", "gate_up_proj"))
        assert (layer.fp8_block is None) == unchanged and (layer.weight.dtype == torch.float32) == unchanged, n
        assert torch.equal(_values(layer), plain[n].weight), n


def test_the_startup_log_says_which_gemm_takes_prefill(monkeypatch):
    """fp8_prefill_route: the CPU's dequantized products; on CUDA, cuBLAS's block-scaled GEMM where takes_cublas
    accepts the layers' blocks, else the Triton kernel with what cuBLAS's recipe would need."""
    from spmd_infer.engine.model_runner import fp8_prefill_route
    from spmd_infer.layers.linear import fp8_linear_module

    assert "CPU" in fp8_prefill_route((128, 128), torch.device("cpu"))
    cuda = torch.device("cuda")
    monkeypatch.setattr(fp8_linear_module, "cublas_block_scaled", lambda device: True)
    assert "128+ rows through cuBLAS" in fp8_prefill_route((128, 128), cuda)
    assert "all through the Triton kernel" in fp8_prefill_route((64, 64), cuda)
    monkeypatch.setattr(fp8_linear_module, "CUBLAS_MIN_ROWS", 0)
    assert "all through the Triton kernel" in fp8_prefill_route((128, 128), cuda)


@pytest.mark.parametrize("float8", [False, True])
def test_a_merged_linear_holds_split_and_replicated_parts(float8):
    """MergedLinear (DeepSeek's q_proj beside kv_a_proj_with_mqa): each rank holds its slice of a split part and the
    whole of a replicated one, in order; a bias covers both, zero for the part without one; one product gives what
    the separate layers would."""
    from spmd_infer.layers.linear import MergedLinear
    from spmd_infer.layers.weights import CheckpointTensor

    q, kv, kv_bias = torch.randn(64, 32), torch.randn(40, 32), torch.randn(40)
    x = torch.randn(3, 32)
    for rank in range(2):
        layer = MergedLinear(32, [("q_proj", 64, True, False), ("kv_a_proj_with_mqa", 40, False, True)], Shard(rank, 2))
        assert layer.output_parts() == [32, 40] and layer.weight.expected_loads == 2 and layer.bias.expected_loads == 1
        # The replicated part may end mid-block: it is the last and whole on every rank.
        assert layer.takes_float8(BLOCK)
        if float8:
            layer.hold_in_float8(BLOCK)
        layer.weight_loader(layer.weight, CheckpointTensor("q", q), 0)
        layer.weight_loader(layer.weight, CheckpointTensor("kv", kv), 1)
        layer.weight_loader(layer.bias, CheckpointTensor("kv.bias", kv_bias), 1)
        rows = q[rank * 32:(rank + 1) * 32]
        if float8:  # quantized part by part: the blocks of each part's rows
            rows = dequantize_blocks(*quantize_blocks(rows, BLOCK), BLOCK)
            whole = dequantize_blocks(*quantize_blocks(kv, BLOCK), BLOCK)
        else:
            whole = kv
        torch.testing.assert_close(_values(layer), torch.cat([rows, whole]), rtol=0, atol=0)
        torch.testing.assert_close(layer(x), torch.cat([x @ rows.T, x @ whole.T + kv_bias], dim=-1))
    # A split part may not end mid-block, even as the last (its next rank's slice would start inside a block), and
    # nor may any part but the last.
    assert not MergedLinear(32, [("kv", 32, False, False), ("q", 40, True, False)], Shard(0, 2)).takes_float8(BLOCK)
    assert MergedLinear(32, [("kv", 32, False, False), ("q", 64, True, False)], Shard(0, 2)).takes_float8(BLOCK)
    assert not MergedLinear(32, [("kv", 40, False, False), ("q", 64, True, False)], Shard(0, 2)).takes_float8(BLOCK)
    with pytest.raises(ValueError, match="q_proj output features=30"):
        MergedLinear(32, [("q_proj", 30, True, False)], Shard(0, 4))

"""Before any weight is allocated on a GPU, a rank whose share of the model cannot fit says how to spread it: the
share is counted on a model built on the meta device, byte for byte what the real one holds."""

from __future__ import annotations

import pytest
import torch

from spmd_infer.engine.model_runner import build_model, check_weights_fit, rank_weight_bytes
from spmd_infer.parallel.comm import Shard
from spmd_infer.parallel.dims import ConfigError, ParallelDims
from spmd_infer.parallel.sharding import LayerSharding
from support.tiny_models import _configs

SHARDINGS = {
    "single": LayerSharding.single(),
    "tp2": LayerSharding(attn=Shard(1, 2), mlp=Shard(1, 2), dp=Shard()),
    "dpattn4-ep": LayerSharding(attn=Shard(0, 2), mlp=Shard(3, 4), dp=Shard(1, 2), dp_attention=True, moe="ep"),
    "tp2-fp8-experts": LayerSharding(attn=Shard(1, 2), mlp=Shard(1, 2), dp=Shard(), moe="tp",
                                     fp8_expert_block=(128, 128)),
}


def _config(name):
    config = _configs()[name]
    config.architectures = [type(config).__name__.replace("Config", "ForCausalLM")]
    return config


@pytest.mark.parametrize("name", ["llama", "qwen3", "qwen3moe", "mixtral", "dsv2", "dsv3"])
@pytest.mark.parametrize("sharding", list(SHARDINGS))
def test_the_meta_count_is_what_the_model_holds(name, sharding):
    config = _config(name)
    model = build_model(config, SHARDINGS[sharding], torch.float32, "cpu")
    held = sum(t.numel() * t.element_size() for t in [*model.parameters(), *model.buffers()])
    assert rank_weight_bytes(config, SHARDINGS[sharding], torch.float32) == held
    assert rank_weight_bytes(config, SHARDINGS[sharding], torch.bfloat16) < held


@pytest.mark.parametrize("name", ["llama", "qwen3", "dsv2"])
def test_every_layer_shares_one_rotary_table(name):
    """One cos/sin table a model, not one a layer (at 40k-160k positions a layer's is 20-64 MiB), and a table that
    two models built alike share; a model's own settings make its own."""
    config = _config(name)
    model = build_model(config, LayerSharding.single(), torch.float32, "cpu")
    rotaries = {id(layer.self_attn.rotary_emb) for layer in model.model.layers}
    assert len(rotaries) == 1 and len(list(model.buffers())) == 1
    again = build_model(config, LayerSharding.single(), torch.float32, "cpu")
    assert again.model.layers[0].self_attn.rotary_emb is model.model.layers[0].self_attn.rotary_emb
    config.max_position_embeddings //= 2
    other = build_model(config, LayerSharding.single(), torch.float32, "cpu")
    assert other.model.layers[0].self_attn.rotary_emb.cos_sin.shape[0] == config.max_position_embeddings


def test_a_share_too_large_says_how_to_spread_it():
    config = _config("dsv3")
    dims = ParallelDims(dp=1, tp=2, world_size=2)
    check_weights_fit(10 * 2**30, 11 * 2**30, 80 * 2**30, config, dims, "ep", torch.bfloat16, "cuda:0")
    with pytest.raises(ConfigError, match=r"needs 12\.0 GiB of GPU memory in bfloat16 \(parallel\.dp=1, "
                                          r"parallel\.tp=2, "
                                          r"parallel\.dp_attention=false, parallel\.moe=ep\), more than the 11\.0 GiB "
                                          r"free of 80\.0 GiB on cuda:0: .*raise parallel\.tp, or parallel\.dp with "
                                          r"parallel\.dp_attention=true"):
        check_weights_fit(12 * 2**30, 11 * 2**30, 80 * 2**30, config, dims, "ep", torch.bfloat16, "cuda:0")
    config.quantization_config = {"quant_method": "fp8", "fmt": "e4m3", "weight_block_size": [128, 128]}
    dims = ParallelDims(dp=2, tp=2, world_size=4, dp_attention=True)
    with pytest.raises(ConfigError, match=r"raise parallel\.dp or parallel\.tp\); this checkpoint's float8 weights "
                                          r"are dequantized to bfloat16 as they load, twice their size on disk; or "
                                          r"keep the routed experts in float8 \(model\.expert_dtype=fp8"):
        check_weights_fit(12 * 2**30, 11 * 2**30, 80 * 2**30, config, dims, "ep", torch.bfloat16, "cuda:0")
    with pytest.raises(ConfigError, match=r"dequantized to bfloat16 as they load, twice their size on disk; or keep "
                                          r"the linear layers in float8 \(model\.linear_dtype=fp8"):
        check_weights_fit(12 * 2**30, 11 * 2**30, 80 * 2**30, config, dims, "ep", torch.bfloat16, "cuda:0", True)
    with pytest.raises(ConfigError) as kept_float8:  # experts and linear layers already in float8: no hint
        check_weights_fit(12 * 2**30, 11 * 2**30, 80 * 2**30, config, dims, "ep", torch.bfloat16, "cuda:0", True,
                          True)
    assert "float8" not in str(kept_float8.value)
    with pytest.raises(ConfigError) as dense:  # no experts: no hint about them
        check_weights_fit(12 * 2**30, 11 * 2**30, 80 * 2**30, _config("llama"), dims, "ep", torch.bfloat16, "cuda:0")
    assert "expert_dtype" not in str(dense.value)

"""SPMD_MOE_SUM_IN_NORM: a MoE layer whose output goes straight into the next RMSNorm leaves its per-slot products
to that norm's kernel (kernels/moe_sum_norm.py). Every MoE block kind, whole on one rank, through the norm the
decoder layer feeds it to, gives what the layer's summed output gives there (on a GPU: fused_moe's sum kernel, then
the norm's, bit for bit but for Qwen2-MoE's gate dot; on the CPU: the Triton kernels under the interpreter against
the layer's own torch path); and a layer that must reduce over ranks never leaves it."""

import pytest
import torch

from spmd_infer.layers import moe
from spmd_infer.models.registry import model_class
from spmd_infer.parallel.comm import Shard
from spmd_infer.parallel.sharding import LayerSharding
from support.tiny_models import _configs

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
MODELS = [("qwen3moe", "Qwen3MoeForCausalLM", {}), ("mixtral", "MixtralForCausalLM", {}),
          ("qwen2moe", "Qwen2MoeForCausalLM", {}), ("dsv2", "DeepseekV2ForCausalLM", {"n_shared_experts": 2}),
          ("dsv3", "DeepseekV3ForCausalLM", {"n_shared_experts": 2})]


def _model(name, arch, overrides, sharding=None):
    config = _configs()[name]
    config.architectures = [arch]
    for key, value in overrides.items():
        setattr(config, key, value)
    whole = Shard()
    with torch.device(DEVICE):
        model = model_class(config)(config, sharding or LayerSharding(attn=whole, mlp=whole, dp=whole))
    torch.manual_seed(0)
    for p in model.parameters():
        p.data.normal_(0.0, 0.2)
    return model


@pytest.mark.parametrize("shared_fused", [False, True], ids=["shared-alone", "shared-as-experts"])
@pytest.mark.parametrize("name, arch, overrides", MODELS, ids=[m[0] for m in MODELS])
def test_the_next_norm_sums_the_slots_as_the_layer_would(name, arch, overrides, shared_fused, monkeypatch):
    model = _model(name, arch, overrides)
    layers = model.model.layers
    i = next(i for i, layer in enumerate(layers) if hasattr(layer.mlp, "experts"))  # the first MoE layer
    block, norm = layers[i].mlp, (layers[i + 1].input_layernorm if i + 1 < len(layers) else model.model.norm)
    x = torch.randn(6, model.config.hidden_size, device=DEVICE)
    residual = torch.randn(6, model.config.hidden_size, device=DEVICE)
    valid = torch.ones(6, dtype=torch.bool, device=DEVICE)
    valid[4] = False  # a CUDA-graph padding row
    monkeypatch.setattr(moe, "SHARED_FUSED_ON_CPU", shared_fused)
    monkeypatch.setattr(moe, "SHARED_FUSED_TOKENS", 64 if shared_fused else 0)
    with torch.no_grad():
        monkeypatch.setattr(moe, "SUM_IN_NORM", True)
        monkeypatch.setattr(moe, "SUM_IN_NORM_ON_CPU", True)
        left = block(x, valid=valid)
        assert isinstance(left, moe.SlotSums)
        got, got_residual = norm(left, residual)
        summed = left.reduced()
        monkeypatch.setattr(moe, "SUM_IN_NORM", False)
        want, want_residual = norm(block(x, valid=valid), residual)
    # On a GPU the same kernels' arithmetic either way, but for Qwen2-MoE's gate dot (moe_sum_norm.py).
    tol = 0 if DEVICE == "cuda" and name != "qwen2moe" else 1e-5
    torch.testing.assert_close(got_residual, want_residual, rtol=tol, atol=tol)
    torch.testing.assert_close(got, want, rtol=tol, atol=tol)
    torch.testing.assert_close(summed + residual, want_residual, rtol=1e-5, atol=1e-5)


def test_a_layer_split_over_ranks_sums_as_before(monkeypatch):
    """With its experts split over ranks the output's sum over them comes first: the layer never leaves its slots
    (a shard of two here, whose reduction this single process never reaches: the decision alone is checked)."""
    monkeypatch.setattr(moe, "SUM_IN_NORM", True)
    monkeypatch.setattr(moe, "SUM_IN_NORM_ON_CPU", True)
    x = torch.zeros(2, 8)  # (on the CPU)
    assert moe.sums_left_to_norm(x, Shard(), True)
    assert not moe.sums_left_to_norm(x, Shard(rank=0, size=2), True)
    assert not moe.sums_left_to_norm(x, Shard(), False)  # its output is not (only) the next norm's input
    monkeypatch.setattr(moe, "SUM_IN_NORM_ON_CPU", False)
    assert not moe.sums_left_to_norm(x, Shard(), True)  # the CPU's own path unless a test asks

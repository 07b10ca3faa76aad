"""Qwen2-MoE's own parts: its gated shared expert's width checked against the layout; the layouts' equality with
transformers is tests/test_layouts.py's (qwen2moe-mixed, qwen2moe-dpattn)."""

import pytest
import torch

from spmd_infer.layers.moe import SharedExpertsMoE
from spmd_infer.models.registry import check_mlp_layout, model_class
from spmd_infer.parallel.comm import Shard
from spmd_infer.parallel.dims import ConfigError
from spmd_infer.parallel.sharding import LayerSharding
from support.tiny_models import _configs


def test_the_shared_expert_width_must_split_over_the_mlp_ranks():
    config = _configs()["qwen2moe"]
    check_mlp_layout(config, 4, "ep")  # 8 experts, a 48-wide shared expert, a 96-wide dense MLP: 4 ways each
    config.shared_expert_intermediate_size = 50
    with pytest.raises(ConfigError, match=r"shared_expert_intermediate_size \(50\); .*largest that fits: 2"):
        check_mlp_layout(config, 4, "ep")


def test_the_shared_expert_is_gated_per_token_and_summed_with_the_routed_ones():
    """Against the block written out in torch: routed + sigmoid(x . gate) * shared, on a whole (unsplit) layer."""
    config = _configs()["qwen2moe"]
    config.architectures = ["Qwen2MoeForCausalLM"]
    whole = Shard()
    model = model_class(config)(config, LayerSharding(attn=whole, mlp=whole, dp=whole))
    block = model.model.layers[1].mlp
    assert isinstance(block, SharedExpertsMoE) and not isinstance(model.model.layers[0].mlp, SharedExpertsMoE)
    torch.manual_seed(0)
    for p in block.parameters():
        p.data.normal_(0.0, 0.2)
    x = torch.randn(5, config.hidden_size)
    with torch.no_grad():
        routed = block.experts(x)
        gate = torch.sigmoid(x @ block.shared_gate.weight.t())
        want = routed + gate * block.shared_experts(x)
        assert gate.shape == (5, 1) and torch.allclose(block(x), want, atol=1e-6)
        # What the GPU path hands fused_moe's last kernel (SPMD_MOE_SHARED_IN_SUM): the same sum.
        handed = block.experts(x, add=block.shared_experts(x), add_gate=block.shared_gate.weight[0])
        assert torch.allclose(handed, want, atol=1e-6)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="fused_moe's last kernel on the GPU")
@pytest.mark.parametrize("name, arch", [("qwen2moe", "Qwen2MoeForCausalLM"), ("dsv2", "DeepseekV2ForCausalLM"),
                                        ("dsv3", "DeepseekV3ForCausalLM")])
def test_the_shared_output_joins_the_routed_sum_in_the_kernel_as_the_layer_added_it(name, arch, monkeypatch):
    """On the GPU the shared experts' output (Qwen2-MoE's gated) is added inside fused_moe's sum kernel
    (SPMD_MOE_SHARED_IN_SUM): the block's output equals the PyTorch add after it (float32: the routed sum is the
    same kernels' either way, so only the add's rounding differs)."""
    from spmd_infer.layers import moe

    config = _configs()[name]
    config.architectures = [arch]
    whole = Shard()
    with torch.device("cuda"):
        model = model_class(config)(config, LayerSharding(attn=whole, mlp=whole, dp=whole))
    block = next(layer.mlp for layer in model.model.layers if isinstance(layer.mlp, SharedExpertsMoE))
    torch.manual_seed(0)
    for p in block.parameters():
        p.data.normal_(0.0, 0.2)
    x = torch.randn(7, config.hidden_size, device="cuda")
    with torch.no_grad():
        monkeypatch.setattr(moe, "SHARED_IN_SUM", False)
        added = block(x)
        monkeypatch.setattr(moe, "SHARED_IN_SUM", True)
        fused = block(x)
    torch.testing.assert_close(fused, added, rtol=1e-4, atol=1e-4 * added.abs().max().item())

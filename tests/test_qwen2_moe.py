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

    block = _shared_block(name, arch, "cuda")
    x = torch.randn(7, block.experts.gate.shape[1], device="cuda")
    monkeypatch.setattr(moe, "SHARED_FUSED_TOKENS", 0)  # the shared MLP on its own, not inside fused_moe's GEMMs
    with torch.no_grad():
        monkeypatch.setattr(moe, "SHARED_IN_SUM", False)
        added = block(x)
        monkeypatch.setattr(moe, "SHARED_IN_SUM", True)
        fused = block(x)
    torch.testing.assert_close(fused, added, rtol=1e-4, atol=1e-4 * added.abs().max().item())


def _shared_block(name: str, arch: str, device: str = "cpu", dtype: torch.dtype = torch.float32,
                  **overrides) -> SharedExpertsMoE:
    """The first MoE layer with shared experts of a tiny whole (unsplit) model in `dtype` (DeepSeek's router in
    float32), its weights drawn at random."""
    config = _configs()[name]
    config.architectures = [arch]
    for key, value in overrides.items():
        setattr(config, key, value)
    whole = Shard()
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            model = model_class(config)(config, LayerSharding(attn=whole, mlp=whole, dp=whole))
    finally:
        torch.set_default_dtype(previous)
    block = next(layer.mlp for layer in model.model.layers if isinstance(layer.mlp, SharedExpertsMoE))
    torch.manual_seed(0)
    for p in block.parameters():
        p.data.normal_(0.0, 0.2)
    return block


# The tiny models with shared experts two expert widths wide (Qwen2-MoE's 48 is not a whole number of its 32).
SHARED_SLICE_MODELS = [("qwen2moe", "Qwen2MoeForCausalLM", dict(shared_expert_intermediate_size=64)),
                       ("dsv2", "DeepseekV2ForCausalLM", dict(n_shared_experts=2)),
                       ("dsv3", "DeepseekV3ForCausalLM", dict(n_shared_experts=2))]


@pytest.mark.parametrize("name, arch, overrides", SHARED_SLICE_MODELS, ids=[m[0] for m in SHARED_SLICE_MODELS])
def test_shared_experts_run_as_more_experts_up_to_the_token_limit(name, arch, overrides, monkeypatch):
    """SPMD_MOE_SHARED_FUSED_TOKENS: at up to that many tokens the shared MLP runs as two more experts of the
    routed experts' width (Qwen2-MoE's weighing its sigmoid gate, DeepSeek's 1 beside its scaled routed weights),
    giving the block's output as the shared MLP run on its own (float32, the kernels' reference on the CPU); past
    the limit, and where its width is no whole number of experts, it runs on its own."""
    from spmd_infer.layers import moe

    block = _shared_block(name, arch, **overrides)
    assert block.shared_count == 2
    x = torch.randn(6, block.experts.gate.shape[1])
    with torch.no_grad():
        assert not block.fuses_shared(x)  # the CPU runs it as transformers does unless a test asks
        alone = block(x)
        monkeypatch.setattr(moe, "SHARED_FUSED_ON_CPU", True)
        monkeypatch.setattr(moe, "SHARED_FUSED_TOKENS", 6)
        assert block.fuses_shared(x) and not block.fuses_shared(torch.cat([x, x]))
        fused = block(x)
    torch.testing.assert_close(fused, alone, rtol=1e-5, atol=1e-5)
    assert _shared_block("qwen2moe", "Qwen2MoeForCausalLM").shared_count == 0  # 48 features over experts of 32


@pytest.mark.skipif(not torch.cuda.is_available(), reason="fused_moe's kernels on the GPU")
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("name, arch, overrides", SHARED_SLICE_MODELS, ids=[m[0] for m in SHARED_SLICE_MODELS])
def test_shared_experts_run_as_more_experts_in_the_kernels(name, arch, overrides, dtype, monkeypatch):
    """On the GPU the shared MLP inside fused_moe (SPMD_MOE_SHARED_FUSED_TOKENS) gives the block's output as
    the shared MLP run on its own and added in fused_moe's sum (float32: within the accumulation order; bf16:
    within the rounding of h and the per-slot products, which the fused path rounds per slice)."""
    from spmd_infer.layers import moe

    block = _shared_block(name, arch, "cuda", dtype, **overrides)
    x = torch.randn(7, block.experts.gate.shape[1], device="cuda", dtype=dtype)
    with torch.no_grad():
        monkeypatch.setattr(moe, "SHARED_FUSED_TOKENS", 0)
        assert not block.fuses_shared(x)
        alone = block(x)
        monkeypatch.setattr(moe, "SHARED_FUSED_TOKENS", 64)
        assert block.fuses_shared(x)
        fused = block(x)
    tol = 1e-4 if dtype == torch.float32 else 2e-2
    torch.testing.assert_close(fused.float(), alone.float(), rtol=tol, atol=tol * alone.abs().max().item())

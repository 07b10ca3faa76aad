"""moe_route (one kernel a token: scores, group-limited choice, top-k, renormalized and scaled weights) against its
PyTorch reference, which tests/test_deepseek.py holds to transformers' routers."""

import pytest
import torch

from spmd_kernels import moe_route, moe_route_ref

# The routers of the models we run: (experts, route arguments).
ROUTERS = {
    "qwen2moe": (60, dict(top_k=4)),  # 60 experts: not a power of two
    "qwen3moe": (128, dict(top_k=8, renormalize=True)),
    "mixtral": (8, dict(top_k=2, renormalize=True)),
    "dsv2-lite": (64, dict(top_k=6)),
    "dsv2": (160, dict(top_k=6, num_groups=8, topk_groups=3, scaling=16.0)),  # groups of 20
    "dsv3": (256, dict(top_k=8, sigmoid=True, num_groups=8, topk_groups=4, group_top2=True, renormalize=True,
                       scaling=2.5)),
}


@pytest.mark.parametrize("router", list(ROUTERS))
@pytest.mark.parametrize("T", [0, 1, 5, 33])
@pytest.mark.parametrize("logits_dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
def test_moe_route_matches_reference(router, T, logits_dtype, device):
    E, args = ROUTERS[router]
    g = torch.Generator(device="cpu").manual_seed(T * 1000 + E)
    logits = (torch.randn(T, E, generator=g) * 2.0).to(logits_dtype).to(device)
    bias = (torch.randn(E, generator=g) * 0.1).to(device) if router == "dsv3" else None
    weights, ids = moe_route(logits, bias=bias, **args)
    want_weights, want_ids = moe_route_ref(logits, bias=bias, **args)
    assert weights.dtype == torch.float32 and ids.dtype == torch.int64 and ids.shape == (T, args["top_k"])
    assert torch.equal(ids, want_ids)  # the same experts, best first
    torch.testing.assert_close(weights, want_weights, rtol=1e-5, atol=1e-7)  # (the GPU's exp is approximate)


def test_moe_route_reads_a_strided_logits_view(device):
    """Rows of a wider buffer (a fused projection's slice): the row stride is the buffer's."""
    wide = torch.randn(7, 100, device=device)
    logits = wide[:, 10:70]
    weights, ids = moe_route(logits, top_k=4)
    want_weights, want_ids = moe_route_ref(logits, top_k=4)
    assert torch.equal(ids, want_ids)
    torch.testing.assert_close(weights, want_weights, rtol=1e-5, atol=1e-7)  # (the GPU's exp is approximate)


def test_moe_route_breaks_ties_toward_the_lower_expert(device):
    """Equal scores: the lower index first, and never an expert twice; the weights are the tied scores."""
    logits = torch.zeros(3, 16, device=device)
    logits[0, [3, 9, 12]] = 1.0  # three tied for the two places
    logits[2, 5] = 2.0  # one clear best, then fifteen tied
    weights, ids = moe_route(logits, top_k=2)
    assert ids.tolist() == [[3, 9], [0, 1], [5, 0]]
    want = moe_route_ref(logits, top_k=2)[0]
    torch.testing.assert_close(weights, want, rtol=1e-5, atol=1e-7)  # (the GPU's exp is approximate)


def test_group_limited_routing_chooses_only_from_the_kept_groups(device):
    """DeepSeek-V2's group-limited greedy: the best expert of a dropped group loses to weaker ones of kept groups."""
    logits = torch.full((1, 16), -4.0, device=device)  # 4 groups of 4
    logits[0, 0] = 3.0  # group 0: one strong expert
    logits[0, [4, 5, 8, 9]] = torch.tensor([2.9, 2.8, 2.7, 2.6], device=device)  # groups 1 and 2
    _, ids = moe_route(logits, top_k=3, num_groups=4, topk_groups=2)
    assert ids.tolist() == [[0, 4, 5]]  # groups 0 and 1 kept
    _, ids = moe_route(logits, top_k=3, num_groups=4, topk_groups=2, group_top2=True)
    assert ids.tolist() == [[4, 5, 8]]  # groups scored by their two best: 1 and 2 over 0


@pytest.mark.parametrize("gated", [False, True], ids=["weight-1", "sigmoid-gate"])
@pytest.mark.parametrize("router", ["qwen2moe", "dsv2"])
@pytest.mark.parametrize("T", [0, 1, 9])
def test_shared_expert_slots_follow_the_routed_ones(router, T, gated, device):
    """num_shared slots after the top-k (fused_moe's shared slices): ids E, E + 1, ..., weighing 1 (unscaled by
    `scaling`) or sigmoid(x . gate) (Qwen2-MoE's shared expert gate, computed in the kernel); the routed slots as
    without them."""
    E, args = ROUTERS[router]
    H, shared = 80, 3
    g = torch.Generator(device="cpu").manual_seed(T + E)
    logits = (torch.randn(T, E, generator=g) * 2.0).to(device)
    x, gate = torch.randn(T, H, generator=g).to(device), (torch.randn(H, generator=g) * H**-0.5).to(device)
    extra = dict(num_shared=shared, shared_gate=(x, gate) if gated else None)
    weights, ids = moe_route(logits, **args, **extra)
    want_weights, want_ids = moe_route_ref(logits, **args, **extra)
    k = args["top_k"]
    assert weights.shape == ids.shape == (T, k + shared)
    assert torch.equal(ids, want_ids)
    torch.testing.assert_close(weights, want_weights, rtol=1e-5, atol=1e-7)
    routed_weights, routed_ids = moe_route(logits, **args)
    assert torch.equal(ids[:, :k], routed_ids) and torch.equal(weights[:, :k], routed_weights)
    assert (ids[:, k:] == torch.arange(E, E + shared, device=device)).all()
    want_shared = torch.sigmoid(x @ gate)[:, None] if gated else torch.ones(T, 1, device=device)
    torch.testing.assert_close(weights[:, k:], want_shared.expand(T, shared), rtol=1e-5, atol=1e-6)

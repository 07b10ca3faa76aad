"""moe_route (one kernel a token: scores, group-limited choice, top-k, renormalized and scaled weights) against its
PyTorch reference, which tests/test_deepseek.py holds to transformers' routers."""

import pytest
import torch

from spmd_kernels import moe_route, moe_route_hidden, moe_route_hidden_ref, moe_route_ref
from spmd_kernels.moe_route import ROUTER_MAX_TOKENS, router_fits
from spmd_kernels.split_counters import split_counters

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


# Router products as the layers hold them: (x dtype, router weight dtype). DeepSeek's router is fp32 over 16-bit
# hidden states; a 16-bit one rounds its logits (checked in fp16 on the CPU: the interpreter's bf16 dots are wrong).
ROUTER_DTYPES = {"fp32": (torch.float32, torch.float32), "fp16-x-fp32-router": (torch.float16, torch.float32),
                 "bf16-x-fp32-router": (torch.bfloat16, torch.float32), "fp16": (torch.float16, torch.float16),
                 "bf16": (torch.bfloat16, torch.bfloat16)}


@pytest.mark.parametrize("router", list(ROUTERS))
@pytest.mark.parametrize("T", [0, 1, 5, ROUTER_MAX_TOKENS])
@pytest.mark.parametrize("dtypes", list(ROUTER_DTYPES))
def test_moe_route_hidden_matches_the_router_product_then_routing(router, T, dtypes, device):
    """The router's logits computed in the routing launch (split over many programs, the last one routing): the
    experts and weights of F.linear's logits routed by the reference, for every router we run."""
    if dtypes == "bf16" and device == "cpu":
        pytest.skip("the interpreter computes bf16 dots wrongly")
    x_dtype, w_dtype = ROUTER_DTYPES[dtypes]
    E, args = ROUTERS[router]
    H = 320  # not a multiple of the 128-feature step: the last step masked
    g = torch.Generator(device="cpu").manual_seed(T * 1000 + E + H)
    x = torch.randn(T, H, generator=g).to(x_dtype).to(device)
    weight = (torch.randn(E, H, generator=g) * H**-0.5 * 2.0).to(w_dtype).to(device)
    bias = (torch.randn(E, generator=g) * 0.1).to(device) if router == "dsv3" else None
    weights, ids = moe_route_hidden(x, weight, bias=bias, **args)
    want_weights, want_ids = moe_route_hidden_ref(x, weight, bias=bias, **args)
    assert weights.shape == ids.shape == (T, args["top_k"])
    assert torch.equal(ids, want_ids)
    # The sums' order differs from F.linear's: fp32 logits within ~1e-6; a 16-bit router's rounded logits may land
    # one unit in the last place apart (seen in fp16 on an H200), moving the softmax weights by about that much.
    rtol = 1e-4 if w_dtype == torch.float32 else 4 * torch.finfo(w_dtype).eps
    torch.testing.assert_close(weights, want_weights, rtol=rtol, atol=1e-6)
    assert split_counters(torch.device(device))[0].item() == 0  # reset for the next launch (graph replays)


@pytest.mark.parametrize("gated", [False, True], ids=["weight-1", "sigmoid-gate"])
def test_moe_route_hidden_adds_shared_slots_and_repeats(gated, device):
    """Shared slots as moe_route's (Qwen2-MoE's gate from the same rows), and a second launch on the same
    counters gives the same result (the last program reset them)."""
    E, args = ROUTERS["qwen2moe"]
    T, H = 3, 256
    g = torch.Generator(device="cpu").manual_seed(7)
    x = torch.randn(T, H, generator=g).to(device)
    weight, gate = torch.randn(E, H, generator=g).to(device) * 0.1, torch.randn(H, generator=g).to(device) * 0.1
    extra = dict(num_shared=2, shared_gate=(x, gate) if gated else None)
    first = moe_route_hidden(x, weight, **args, **extra)
    want = moe_route_hidden_ref(x, weight, **args, **extra)
    again = moe_route_hidden(x, weight, **args, **extra)
    for got in (first, again):
        assert torch.equal(got[1], want[1])
        torch.testing.assert_close(got[0], want[0], rtol=1e-4, atol=1e-6)


def test_moe_route_hidden_refuses_a_prefill_batch_and_a_router_in_another_16_bit_dtype(device):
    """Past 16 tokens the layer keeps F.linear, and the router must be in x's dtype or fp32; called anyway, the
    kernel says what to use."""
    x = torch.randn(ROUTER_MAX_TOKENS + 1, 64, device=device)
    weight = torch.randn(8, 64, device=device)
    assert router_fits(x[:4], weight) and router_fits(x[:4].half(), weight)  # fp32 router over fp16 states
    assert not router_fits(x, weight) and not router_fits(x[:4], weight.half())
    for rows, w in ((x, weight), (x[:4], weight.half())):
        with pytest.raises(ValueError, match="use moe_route on F.linear's logits"):
            moe_route_hidden(rows, w, top_k=2)

"""A MoE layer's slot products summed inside the residual add and RMSNorm after it (kernels/moe_sum_norm.py): the
same bits as moe_sum then rms_norm (Qwen2-MoE's gate dot aside), and their torch references', whatever the slots
hold."""

import importlib

import pytest
import torch

from spmd_kernels import fused_moe_slots, moe_sum, moe_sum_add_norm, moe_sum_add_norm_ref, moe_sum_ref, rms_norm

fm = importlib.import_module("spmd_kernels.fused_moe")


def _slots(T, H, dtype, device, *, E=4, k=2, first_expert=0, num_experts=4, valid_row=None, shared=False,
           gated=False, slices=0):
    """fused_moe_slots over random experts, the products not computed here NaN (as fused_moe never zero-fills)."""
    inter = 40
    x = torch.randn(T, H, dtype=dtype, device=device)
    w13 = (torch.randn(E, 2 * inter, H, device=device) * H**-0.5).to(dtype)
    w2 = (torch.randn(E, H, inter, device=device) * inter**-0.5).to(dtype)
    ids = torch.rand(T, num_experts, device=device).argsort(dim=1)[:, :k] + 0
    weights = torch.rand(T, k, device=device)
    extra = {}
    if slices:
        extra = dict(shared_w13=(torch.randn(2 * slices * inter, H, device=device) * H**-0.5).to(dtype),
                     shared_w2=(torch.randn(H, slices * inter, device=device) * (slices * inter)**-0.5).to(dtype))
        ids = torch.cat([ids, torch.arange(E, E + slices, device=device).expand(T, slices)], 1)
        weights = torch.cat([weights, torch.ones(T, slices, device=device)], 1)
    valid = None
    if valid_row is not None:
        valid = torch.ones(T, dtype=torch.bool, device=device)
        valid[min(valid_row, T - 1)] = False
    add = torch.randn(T, H, device=device).to(dtype) if shared else None
    gate = (torch.randn(H, device=device) * H**-0.5).to(dtype) if gated else None
    return fused_moe_slots(x, w13, w2, weights, ids, first_expert, valid, add=add, add_gate=gate, **extra)


CASES = {
    "plain": dict(),
    "other-ranks-experts": dict(E=4, first_expert=4, num_experts=12),
    "padding-row": dict(valid_row=1),
    "shared-output": dict(shared=True),
    "gated-shared-output": dict(shared=True, gated=True),
    "shared-slices": dict(slices=2, valid_row=0),
}


@pytest.mark.parametrize("T,H", [(1, 64), (5, 48), (3, 1536)])  # 1536: a gate dot of two 1024-feature chunks
@pytest.mark.parametrize("case", CASES)
def test_sum_in_the_norm_gives_the_bits_of_sum_then_norm(T, H, case, dtype, device, assert_close, monkeypatch):
    monkeypatch.setattr(fm, "_unfilled", lambda shape, dt, dev: torch.full(shape, float("nan"), dtype=dt,
                                                                          device=dev))
    slots = _slots(T, H, dtype, device, **CASES[case])
    residual = torch.randn(T, H, device=device).to(dtype)
    weight = (1 + 0.1 * torch.randn(H, device=device)).to(dtype)
    out, h = moe_sum_add_norm(slots, residual, weight, 1e-6)
    want_out, want_h = rms_norm(moe_sum(slots), weight, 1e-6, residual)
    assert out.shape == h.shape == (T, H) and out.dtype == h.dtype == dtype
    assert not out.isnan().any() and not h.isnan().any()
    # Bit for bit, but for Qwen2-MoE's gate: its dot is a reduction whose order follows the launch's warps (the
    # norm's, by H, against the sum kernel's 4), so in fp32 the gate may differ in its last bit (H200: 2.4e-7).
    exact = dict(atol=0, rtol=0) if not CASES[case].get("gated") else dict(atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(h, want_h, **exact)
    torch.testing.assert_close(out, want_out, **exact)
    ref_out, ref_h = moe_sum_add_norm_ref(slots, residual, weight, 1e-6)
    assert_close(h, ref_h)
    assert_close(out, ref_out)


@pytest.mark.parametrize("case", CASES)
def test_moe_sum_matches_its_reference(case, dtype, device, assert_close, monkeypatch):
    monkeypatch.setattr(fm, "_unfilled", lambda shape, dt, dev: torch.full(shape, float("nan"), dtype=dt,
                                                                          device=dev))
    slots = _slots(6, 48, dtype, device, **CASES[case])
    out = moe_sum(slots)
    assert not out.isnan().any()
    assert_close(out, moe_sum_ref(slots))


def test_no_tokens(device):
    """fused_moe_slots has nothing to leave unsummed then (its sum, a [0, H] tensor); the norm takes no rows."""
    assert _slots(0, 48, torch.float32, device).shape == (0, 48)
    empty = torch.empty(0, 48, device=device)
    slots = fm.MoESlots(empty, torch.empty(0, 2, dtype=torch.long, device=device), None, None, None, empty, 0, 4)
    out, h = moe_sum_add_norm(slots, empty, torch.ones(48, device=device), 1e-6)
    assert out.shape == h.shape == (0, 48)

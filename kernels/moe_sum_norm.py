"""A MoE layer's per-slot products summed inside the residual add and RMSNorm after the layer: one launch, not two.

fused_moe ends in a kernel that adds up each token's weighted slot products (moe_sum), and the decoder layer's next
op is an RMSNorm with the residual add (rmsnorm.py). Where the layer's output needs no reduction over ranks, the
norm's program for a token sums its slots itself (fused_moe.sum_slots), then adds the residual and normalises
(rmsnorm.add_rms_norm_row): the same code as the two kernels, so the same bits (but for Qwen2-MoE's gate, whose
dot is a reduction in the order of the launch's warps: in fp32 its last bit may differ), and one launch and one
[T, H] round trip a layer fewer.

Timed on an H200 (session 34, tests/gpu/run_moe_sum_in_norm.sh, decode @1k, two runs a launch): Qwen3-30B-A3B
bs1 3.3 ms a step either way, bs8 8.3 against 8.25-8.3: the sum kernel's launch was already hidden behind the down
kernel by programmatic dependent launch. Off (layers/moe.py's SUM_IN_NORM) until larger batches and the other MoE
models are timed.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .fused_moe import MoESlots, moe_sum, sum_block, sum_slots
from .pdl import pdl_args, pdl_enter
from .rmsnorm import add_rms_norm_row, rms_norm_launch, rms_norm_ref


@triton.jit
def _moe_sum_norm_kernel(y_ptr, ids_ptr, valid_ptr, add_ptr, x_ptr, gate_ptr, first_expert, num_local, stride_yt,
                         stride_it, stride_at, stride_xt, res_ptr, w_ptr, out_ptr, h_ptr, stride_r, stride_o,
                         stride_h, eps, HIDDEN: tl.constexpr, TOP_K: tl.constexpr, HAS_VALID: tl.constexpr,
                         HAS_ADD: tl.constexpr, ADD_GATE: tl.constexpr, GATE_BLOCK: tl.constexpr,
                         BLOCK_H: tl.constexpr, PDL: tl.constexpr):
    """Token t's row: h = sum_slots(t) (rounded to the activations' dtype, as moe_sum stores it) + residual[t], out
    = rms_norm(h) * w (its first twelve arguments MoESlots.sum_args')."""
    pdl_enter(PDL)
    t = tl.program_id(0).to(tl.int64)
    offs = tl.arange(0, BLOCK_H)
    mask = offs < HIDDEN
    x = sum_slots(y_ptr, ids_ptr, valid_ptr, add_ptr, x_ptr, gate_ptr, t, offs, mask, first_expert, num_local,
                  stride_yt, stride_it, stride_at, stride_xt, HIDDEN, TOP_K, HAS_VALID, HAS_ADD, ADD_GATE, GATE_BLOCK,
                  BLOCK_H)
    add_rms_norm_row(x.to(y_ptr.dtype.element_ty), t, offs, mask, res_ptr, w_ptr, out_ptr, h_ptr, stride_r,
                     stride_o, stride_h, HIDDEN, eps, True)


def moe_sum_add_norm(slots: MoESlots, residual: torch.Tensor, weight: torch.Tensor,
                     eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(rms_norm(moe_sum(slots) + residual) * weight, moe_sum(slots) + residual), each [T, H] in the activations'
    dtype, in one launch; bit for bit rms_norm(moe_sum(slots), weight, eps, residual) (Qwen2-MoE's gate aside)."""
    T, H = slots.ids.shape[0], slots.y.shape[1]
    dtype, device = slots.y.dtype, slots.y.device
    assert residual.shape == (T, H) and residual.dtype == dtype and weight.shape == (H,)
    residual = residual if residual.stride(-1) == 1 else residual.contiguous()
    out = torch.empty((T, H), dtype=dtype, device=device)
    h = torch.empty((T, H), dtype=dtype, device=device)
    if T == 0:
        return out, h
    block_h, warps = rms_norm_launch(H)
    args, consts = slots.sum_args()
    _moe_sum_norm_kernel[(T,)](
        *args, residual, weight.contiguous(), out, h, residual.stride(0), out.stride(0), h.stride(0), float(eps),
        GATE_BLOCK=sum_block(H), BLOCK_H=block_h, num_warps=warps, **consts, **pdl_args(device),
    )
    return out, h


def moe_sum_add_norm_ref(slots: MoESlots, residual: torch.Tensor, weight: torch.Tensor,
                         eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """moe_sum_add_norm as its two kernels' references compute it: the slots' sum, rounded, then rms_norm_ref."""
    return rms_norm_ref(moe_sum(slots), weight, eps, residual)

"""Repetition, presence and frequency penalties applied in place to float32 logits from per-sequence token counts
kept on the device, so that no step walks the sequences' token lists on the host."""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .pdl import pdl_args, pdl_enter

# A count row's entry: bit 30 set when the token is in the prompt, bits 0..29 the times it is in the output.
PROMPT_BIT = 1 << 30
OUTPUT_MASK = PROMPT_BIT - 1
_OUTPUT_MASK = tl.constexpr(OUTPUT_MASK)


@triton.jit
def _penalize_kernel(
    logits_ptr,
    rows_ptr,
    counts_ptr,
    repetition_ptr,
    presence_ptr,
    frequency_ptr,
    vocab,
    stride_l,
    stride_c,
    BLOCK_V: tl.constexpr,
    PDL: tl.constexpr,
):
    pdl_enter(PDL)
    s = tl.program_id(0)
    row = tl.load(rows_ptr + s)
    if row < 0:  # this sequence asks for no penalty
        return
    offs = tl.program_id(1) * BLOCK_V + tl.arange(0, BLOCK_V)
    mask = offs < vocab
    c = tl.load(counts_ptr + row.to(tl.int64) * stride_c + offs, mask=mask, other=0)
    x_ptr = logits_ptr + s.to(tl.int64) * stride_l + offs
    x = tl.load(x_ptr, mask=mask, other=0.0)
    rep = tl.load(repetition_ptr + s)
    presence = tl.load(presence_ptr + s)
    frequency = tl.load(frequency_ptr + s)
    # transformers' repetition rule on prompt and output tokens, then OpenAI's on the output (vLLM's order).
    x = tl.where(c != 0, tl.where(x > 0, tl.math.div_rn(x, rep), x * rep), x)
    out = c & _OUTPUT_MASK
    x = tl.where(out > 0, x - (presence + frequency * out.to(tl.float32)), x)
    tl.store(x_ptr, x, mask=mask)


CUDA_BLOCK_V = 2048


def apply_penalties(logits: torch.Tensor, rows: torch.Tensor, counts: torch.Tensor, repetition: torch.Tensor,
                    presence: torch.Tensor, frequency: torch.Tensor) -> None:
    """In place on float32 logits [S, V]: row s reads counts[rows[s]] ([R, V'] int32, V' >= V, entries as
    PROMPT_BIT above; rows[s] < 0: no penalty) and its repetition / presence / frequency penalties ([S] float32).

    A token in the prompt or the output has its logit divided by the repetition penalty when positive, multiplied
    when not; then a token the output holds c > 0 times loses presence + frequency * c.
    """
    S, V = logits.shape
    assert logits.dtype == torch.float32 and logits.stride(1) == 1, "penalties work on contiguous float32 logits"
    assert counts.dtype == torch.int32 and counts.stride(1) == 1 and counts.shape[1] >= V
    assert rows.shape == repetition.shape == presence.shape == frequency.shape == (S,)
    if S == 0:
        return
    block_v = CUDA_BLOCK_V if logits.is_cuda else min(triton.next_power_of_2(V), 256)
    # No fused multiply-add: presence + frequency * c rounds twice, as torch's (and the reference's) separate ops do;
    # an FMA gave other bits on an H200.
    _penalize_kernel[(S, triton.cdiv(V, block_v))](
        logits, rows, counts, repetition, presence, frequency, V, logits.stride(0), counts.stride(0),
        BLOCK_V=block_v, num_warps=4, enable_fp_fusion=False, **pdl_args(logits.device),
    )


def apply_penalties_ref(logits: torch.Tensor, rows: torch.Tensor, counts: torch.Tensor, repetition: torch.Tensor,
                        presence: torch.Tensor, frequency: torch.Tensor) -> None:
    """Plain-PyTorch reference for :func:`apply_penalties` (also the CPU path)."""
    S, V = logits.shape
    if S == 0:
        return
    on = rows >= 0
    c = counts[rows.clamp(min=0), :V]
    seen = (c != 0) & on.unsqueeze(1)
    out = torch.where(on.unsqueeze(1), c & OUTPUT_MASK, 0)
    rep = repetition.unsqueeze(1)
    x = torch.where(seen, torch.where(logits > 0, logits / rep, logits * rep), logits)
    x = torch.where(out > 0, x - (presence.unsqueeze(1) + frequency.unsqueeze(1) * out.to(torch.float32)), x)
    logits.copy_(x)

"""V laid out by head dimension ([blocks, Hkv, D, page], tokens innermost; config cache.v_by_dim): the layout check,
and the page-at-a-time tile read that the prefill and decode attention kernels share."""

from __future__ import annotations

import torch
import triton
import triton.language as tl


def v_laid_out_by_dim(v_cache: torch.Tensor) -> bool:
    """Whether v_cache [blocks, page, Hkv, D] is a view of [blocks, Hkv, D, page] (tokens innermost: a float8 V's
    P V dot operand pairs adjacent, config cache.v_by_dim) rather than D-contiguous; any other layout is an error."""
    if v_cache.stride(-1) == 1:
        return False
    if v_cache.stride(1) == 1 and v_cache.stride(3) == v_cache.shape[1]:
        return True
    raise ValueError(f"v_cache {tuple(v_cache.shape)} with strides {v_cache.stride()}: give [blocks, page, Hkv, D] "
                     "with D contiguous, or a view of [blocks, Hkv, D, page]")


@triton.jit
def load_v_pages(v_head_ptr, bt_row, start_n, end, stride_vb, offs_d, mask_d, PAGE: tl.constexpr,
                 MASKED: tl.constexpr, BLOCK_N: tl.constexpr):
    """V tokens [start_n, start_n + BLOCK_N) (start_n a multiple of PAGE) as stored, [pages, D, PAGE]: each page's
    row one contiguous run, so the loads stay vectors. MASKED: the pages at or past `end` are not read; a per-token
    mask along the run would split its vector loads, so a live page's slots past `end` are read as they are and
    v_pages_as_tokens zeroes them."""
    page_no = start_n // PAGE + tl.arange(0, BLOCK_N // PAGE)
    if MASKED:
        live = page_no * PAGE < end
        phys = tl.load(bt_row + page_no, mask=live, other=0).to(tl.int64)
        mask = live[:, None, None] & mask_d[None, :, None]
    else:
        phys = tl.load(bt_row + page_no).to(tl.int64)
        mask = mask_d[None, :, None]
    return tl.load(v_head_ptr + phys[:, None, None] * stride_vb + offs_d[None, :, None] * PAGE
                   + tl.arange(0, PAGE)[None, None, :], mask=mask, other=0.0)


@triton.jit
def v_pages_as_tokens(v, start_n, end, MASKED: tl.constexpr, PAGE: tl.constexpr, BLOCK_N: tl.constexpr,
                      BLOCK_D: tl.constexpr):
    """load_v_pages' tile (widened as the dot wants it) as [BLOCK_N, BLOCK_D], token by token; MASKED: the tokens at
    or past `end` zeroed (a page's unwritten tail may hold NaN bits, and their zero softmax weight times NaN is not
    0)."""
    if MASKED:
        tok = start_n + tl.arange(0, BLOCK_N // PAGE)[:, None, None] * PAGE + tl.arange(0, PAGE)[None, None, :]
        v = tl.where(tok < end, v, 0.0)
    return tl.reshape(tl.permute(v, (0, 2, 1)), (BLOCK_N, BLOCK_D))

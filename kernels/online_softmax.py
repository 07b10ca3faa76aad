"""Flash attention's online-softmax update over one key tile, shared by the prefill, decode and MLA decode kernels."""

from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def online_softmax_weights(qk, m_i, l_i):
    """qk [rows, BLOCK_N]: scores scaled by log2(e), masked keys already -inf. Returns the new (row max, row sum),
    alpha (what the output so far is rescaled by) and p (this tile's weights, unnormalised)."""
    m_new = tl.maximum(m_i, tl.max(qk, axis=1))
    alpha = tl.exp2(m_i - m_new)
    p = tl.exp2(qk - m_new[:, None])
    return m_new, l_i * alpha + tl.sum(p, axis=1), alpha, p


@triton.jit
def online_softmax_step(qk, v, m_i, l_i, acc):
    """qk as for online_softmax_weights; v [BLOCK_N, D]. Returns the new (row max, row sum, unnormalised output)
    after folding this tile in."""
    m_new, l_i, alpha, p = online_softmax_weights(qk, m_i, l_i)
    acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision="ieee")
    return m_new, l_i, acc

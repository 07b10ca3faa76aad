"""Decode attention over a float8 cache written in Gluon (Triton's explicit-layout dialect), an experiment (session 38):
one warp a program, its K and V tiles in swizzled shared memory by cp.async, the score dot reading K with q's head
dimension reordered so that each thread takes D / 4 adjacent bytes of a token's row, the P V dot reading V with its
columns dealt as decode_attention.v_by_warp does, and P handed from the score dot's accumulator to the P V dot in
registers. Not used by the engine: time_gluon_decode.py checks it against the reference and times it against
decode_attention's kernel on the device (run_gluon_decode.sh). Written against the GPU machines' Triton 3.6 (3.9 renamed
async_copy_global_to_shared to async_load).

Offline (Triton 3.6 for sm_90, ptx_census.py's counters): 807 instructions a 32-token main-loop trip (Triton's
one-warp (32, 1, 6) tile: 797), 16-byte shared loads for K and V, 165 registers, 24 KB of shared memory at 3 stages.
H200, session 38, the kernel alone: as exact as decode_attention's (the same error against the fp32 reference, within
a bf16 unit of its output) and about as fast, 3 stages: nano-vllm bs256 199-203 us against 202, bs64 67 against 68,
Qwen3-8B bs64 64 against 67 and bs16 27-28 against 30, but Llama-3-8B bs64 @1k 45-46 against 41 and bs1 7.5-7.7
against 6.0; 4 stages bs256 191-195. Rescaling the output only when a row's maximum grew (LAZY) changed nothing. Two
kernels of different structure and instruction mix stopping at ~70% of the copy rate at bs256 point past the
kernel's instructions: next, the cache's access pattern (128-byte rows 1 KB apart in token-major pages;
time_gluon_decode.py --head-major, tune_decode_attention.py --layouts)."""

from __future__ import annotations
from triton.experimental import gluon
from triton.experimental.gluon import language as gl
from triton.experimental.gluon.language.nvidia.ampere import async_copy, mma_v2


@gluon.jit
def _widen(x):
    # float8 e4m3 bytes -> fp16, four a register
    return gl.inline_asm_elementwise(
        asm="{ .reg .b16 lo, hi; mov.b32 {lo, hi}, $2; cvt.rn.f16x2.e4m3x2 $0, lo; cvt.rn.f16x2.e4m3x2 $1, hi; }",
        constraints="=r,=r,r", args=[x], dtype=gl.float16, is_pure=True, pack=4)


@gluon.jit
def _issue(k_smem, v_smem, k_base, v_base, rows, cols, phys, pos, end, stride_kb, stride_ks, stride_vb, stride_vs,
           PAGE: gl.constexpr):
    ok = pos < end
    slot = pos % PAGE
    k_rows = phys.to(gl.int64) * stride_kb + slot * stride_ks
    v_rows = phys.to(gl.int64) * stride_vb + slot * stride_vs
    mask = gl.expand_dims(ok, 1) & (gl.expand_dims(cols, 0) >= 0)
    cols = gl.expand_dims(cols, 0)
    async_copy.async_copy_global_to_shared(k_smem, k_base + gl.expand_dims(k_rows, 1) + cols, mask=mask)
    async_copy.async_copy_global_to_shared(v_smem, v_base + gl.expand_dims(v_rows, 1) + cols, mask=mask)


@gluon.jit
def gluon_decode_fp8_kernel(
    q_ptr, k_cache_ptr, v_cache_ptr, block_tables_ptr, context_lens_ptr, out_ptr, mid_o_ptr, mid_lse_ptr,
    qk_scale, stride_qb, stride_qh, stride_kb, stride_ks, stride_kh, stride_vb, stride_vs, stride_vh, stride_bt,
    stride_ob, stride_oh, stride_mo_b, stride_mo_h, stride_mo_s, stride_ml_b, stride_ml_h, num_splits,
    GROUP: gl.constexpr, D: gl.constexpr, PAGE: gl.constexpr, BLOCK_N: gl.constexpr, STAGES: gl.constexpr,
    DIRECT: gl.constexpr,
    LAZY: gl.constexpr = False,
):
    BLOCK_G: gl.constexpr = 16
    mma: gl.constexpr = gl.NVMMADistributedLayout(version=[2, 0], warps_per_cta=[1, 1], instr_shape=[16, 8])
    a_op: gl.constexpr = gl.DotOperandLayout(operand_index=0, parent=mma, k_width=2)
    b_op: gl.constexpr = gl.DotOperandLayout(operand_index=1, parent=mma, k_width=2)
    copy: gl.constexpr = gl.BlockedLayout(size_per_thread=[1, 16], threads_per_warp=[32 * 16 // D, D // 16],
                                          warps_per_cta=[1, 1], order=[1, 0])
    smem: gl.constexpr = gl.SwizzledSharedLayout(vec=16, per_phase=1, max_phase=D // 16, order=[1, 0])

    b = gl.program_id(0)
    kvh = gl.program_id(1)
    split = gl.program_id(2)
    ctx = gl.load(context_lens_ptr + b)
    chunk = gl.cdiv(gl.cdiv(ctx, num_splits), BLOCK_N) * BLOCK_N
    start = split * chunk
    end = gl.minimum(start + chunk, ctx)
    num_tiles = gl.cdiv(gl.maximum(end - start, 0), BLOCK_N)

    # q with its head dimension in the order the score dot reads K's bytes: thread t of each lane quad takes D / 4
    # adjacent bytes of a token's row (logical l = 16 s + 8 h + 2 t + e <- physical (D / 4) t + 4 s + 2 h + e).
    g_a = gl.arange(0, BLOCK_G, layout=gl.SliceLayout(1, a_op))
    l_a = gl.arange(0, D, layout=gl.SliceLayout(0, a_op))
    phys_d = (D // 4) * ((l_a // 2) % 4) + 4 * (l_a // 16) + 2 * ((l_a // 8) % 2) + l_a % 2
    heads_a = kvh * GROUP + g_a
    q = gl.load(q_ptr + b * stride_qb + gl.expand_dims(heads_a, 1) * stride_qh + gl.expand_dims(phys_d, 0),
                mask=gl.expand_dims(g_a < GROUP, 1) & gl.expand_dims(l_a < D, 0), other=0.0).to(gl.float16)

    k_smem = gl.allocate_shared_memory(gl.uint8, [STAGES, BLOCK_N, D], smem)
    v_smem = gl.allocate_shared_memory(gl.uint8, [STAGES, BLOCK_N, D], smem)
    rows = gl.arange(0, BLOCK_N, layout=gl.SliceLayout(1, copy))
    cols = gl.arange(0, D, layout=gl.SliceLayout(0, copy))
    k_base = k_cache_ptr.to(gl.pointer_type(gl.uint8), bitcast=True) + kvh * stride_kh
    v_base = v_cache_ptr.to(gl.pointer_type(gl.uint8), bitcast=True) + kvh * stride_vh
    bt_row = block_tables_ptr + b.to(gl.int64) * stride_bt

    for st in gl.static_range(STAGES - 1):
        pos = start + st * BLOCK_N + rows
        phys = gl.load(bt_row + pos // PAGE, mask=pos < end, other=0)
        _issue(k_smem.index(st), v_smem.index(st), k_base, v_base, rows, cols, phys, pos, end, stride_kb,
               stride_ks, stride_vb, stride_vs, PAGE)
        async_copy.commit_group()
    pos_next = start + (STAGES - 1) * BLOCK_N + rows
    phys_next = gl.load(bt_row + pos_next // PAGE, mask=pos_next < end, other=0)

    m_i = gl.full([BLOCK_G], float("-inf"), gl.float32, layout=gl.SliceLayout(1, mma))
    l_i = gl.zeros([BLOCK_G], gl.float32, layout=gl.SliceLayout(1, mma))
    acc = gl.zeros([BLOCK_G, D], gl.float32, layout=mma)
    n_s = gl.arange(0, BLOCK_N, layout=gl.SliceLayout(0, mma))
    for i in range(num_tiles):
        ahead = i + STAGES - 1
        _issue(k_smem.index(ahead % STAGES), v_smem.index(ahead % STAGES), k_base, v_base, rows, cols, phys_next,
               pos_next, end, stride_kb, stride_ks, stride_vb, stride_vs, PAGE)
        async_copy.commit_group()
        pos_next = pos_next + BLOCK_N
        phys_next = gl.load(bt_row + pos_next // PAGE, mask=pos_next < end, other=0)
        async_copy.wait_group(STAGES - 1)
        gl.thread_barrier()
        stage = i % STAGES
        # K^T [D, BLOCK_N] in the permuted head-dimension order (see q)
        kt = k_smem.index(stage).reshape([BLOCK_N, 4, D // 16, 2, 2]).permute([0, 2, 3, 1, 4])
        kt = kt.reshape([BLOCK_N, D]).permute([1, 0])
        k16 = _widen(kt.load(b_op))
        # V [BLOCK_N, D] with columns dealt: logical n = 8 j + g <- physical (D / 8) g + j
        vv = v_smem.index(stage).reshape([BLOCK_N, 8, D // 8]).permute([0, 2, 1]).reshape([BLOCK_N, D])
        v16 = _widen(vv.load(b_op))
        gl.thread_barrier()
        s = mma_v2(q, k16, gl.zeros([BLOCK_G, BLOCK_N], gl.float32, layout=mma)) * qk_scale
        valid = (start + i * BLOCK_N + n_s) < end
        s = gl.where(gl.expand_dims(valid, 0), s, float("-inf"))
        m_new = gl.maximum(m_i, gl.max(s, axis=1))
        p = gl.exp2(s - gl.expand_dims(m_new, 1))
        if LAZY:  # rescale only when some row's maximum grew (rare after the first tiles): 64 multiplies a tile
            if gl.max((m_new > m_i).to(gl.int32), axis=0) > 0:
                alpha = gl.exp2(m_i - m_new)
                acc = acc * gl.expand_dims(alpha, 1)
                l_i = l_i * alpha
        else:
            alpha = gl.exp2(m_i - m_new)
            acc = acc * gl.expand_dims(alpha, 1)
            l_i = l_i * alpha
        l_i = l_i + gl.sum(p, axis=1)
        m_i = m_new
        p16 = gl.convert_layout(p.to(gl.float16), a_op)
        acc = mma_v2(p16, v16, acc)
    async_copy.wait_group(0)

    g_o = gl.arange(0, BLOCK_G, layout=gl.SliceLayout(1, mma))
    n_o = gl.arange(0, D, layout=gl.SliceLayout(0, mma))
    col = (D // 8) * (n_o % 8) + n_o // 8
    heads = kvh * GROUP + g_o
    has = l_i > 0.0
    o = acc / gl.expand_dims(gl.where(has, l_i, 1.0), 1)
    mask = gl.expand_dims(g_o < GROUP, 1) & gl.expand_dims(n_o < D, 0)
    if DIRECT:
        gl.store(out_ptr + b * stride_ob + gl.expand_dims(heads, 1) * stride_oh + gl.expand_dims(col, 0),
                 o.to(out_ptr.dtype.element_ty), mask=mask)
    else:
        gl.store(mid_o_ptr + b * stride_mo_b + gl.expand_dims(heads, 1) * stride_mo_h + split * stride_mo_s
                 + gl.expand_dims(col, 0), o, mask=mask)
        lse = gl.where(has, m_i + gl.log2(gl.where(has, l_i, 1.0)), float("-inf"))
        gl.store(mid_lse_ptr + b * stride_ml_b + heads * stride_ml_h + split, lse, mask=g_o < GROUP)

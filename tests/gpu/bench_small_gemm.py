"""Probe (session 20): can a Triton GEMM beat cuBLAS on a small model's decode projections (Qwen3-0.6B: 2-12 MB bf16
weights, 1-256 rows), where cuBLAS takes 5-11 us a product against 1-3 us of weight bytes (run_small_model_floor.sh)?
The kernel is fp8_linear's structure over 16-bit weights: the first weight tile fetched before the PDL wait, K split
over programs whose last one adds the fp32 partial sums; timed in CUDA graphs over weight copies larger than L2,
against F.linear, per shape and row count, with each setting's error against F.linear.

With --skinny it sweeps the engine's own kernel instead (skinny_gemm with K split, SPMD_SKINNY_SPLIT) at 1 and 16
rows: cuBLAS, the default (skinny_gemm_config with skinny_split_k), and tiles x splits, each checked against F.linear.

usage (GPU machine, repo root, after `source tests/gpu/device_env.sh`): python tests/gpu/bench_small_gemm.py [--skinny]
"""

from __future__ import annotations

import argparse
import itertools

import torch
import torch.nn.functional as F
import triton
import triton.language as tl

from spmd_kernels.pdl import pdl_args, pdl_enter
from spmd_kernels.skinny_gemm import skinny_gemm, skinny_gemm_config, skinny_split_k
from sweep_tools import graph_replay_us

SHAPES = {"qkv": (4096, 1024), "o": (1024, 2048), "gate_up": (6144, 1024), "down": (1024, 3072)}
ROWS = (1, 16, 64, 128, 256)
ROTATE_BYTES = 160 * 2**20  # weight copies cycled a pass: 3x the H200's 50 MB L2
CALLS = 64


@triton.jit(do_not_specialize=["M"])
def _gemm_kernel(x_ptr, w_ptr, y_ptr, part_ptr, count_ptr, M, N, K, stride_xm, stride_wn, stride_ym,
                 BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, SPLIT_K: tl.constexpr,
                 PDL: tl.constexpr):
    pid = tl.program_id(0)
    split = pid % SPLIT_K
    tile = pid // SPLIT_K
    num_n = tl.cdiv(N, BLOCK_N)
    pid_m = tile // num_n
    pid_n = tile % num_n
    per_split = K // BLOCK_K // SPLIT_K  # the settings divide K evenly
    k_first = split * per_split * BLOCK_K
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_k = tl.arange(0, BLOCK_K)
    mask_m = offs_m < M
    mask_n = offs_n < N
    x_ptrs = x_ptr + offs_m[:, None].to(tl.int64) * stride_xm + k_first + offs_k[None, :]
    w_ptrs = w_ptr + offs_n[None, :].to(tl.int64) * stride_wn + k_first + offs_k[:, None]
    w = tl.load(w_ptrs, mask=mask_n[None, :], other=0.0)
    pdl_enter(PDL)
    x = tl.load(x_ptrs, mask=mask_m[:, None], other=0.0)
    acc = tl.dot(x, w, tl.zeros([BLOCK_M, BLOCK_N], tl.float32))
    for _ in range(1, per_split):
        x_ptrs += BLOCK_K
        w_ptrs += BLOCK_K
        x = tl.load(x_ptrs, mask=mask_m[:, None], other=0.0)
        w = tl.load(w_ptrs, mask=mask_n[None, :], other=0.0)
        acc = tl.dot(x, w, acc)
    mask = mask_m[:, None] & mask_n[None, :]
    if SPLIT_K > 1:
        offs = offs_m[:, None].to(tl.int64) * N + offs_n[None, :]
        tl.store(part_ptr + split * M * N + offs, acc, mask=mask)
        tl.debug_barrier()
        if tl.atomic_add(count_ptr + tile, 1, sem="acq_rel") != SPLIT_K - 1:
            return
        acc = tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.float32)
        for j in range(SPLIT_K):
            acc += tl.load(part_ptr + j * M * N + offs, mask=mask, other=0.0, cache_modifier=".cg")
        tl.store(count_ptr + tile, 0)
    tl.store(y_ptr + offs_m[:, None] * stride_ym + offs_n[None, :], acc.to(y_ptr.dtype.element_ty), mask=mask)


_COUNTERS = None


def triton_linear(x, w, block_m, block_n, block_k, stages, splits, warps=4):
    global _COUNTERS
    m, k = x.shape
    n = w.shape[0]
    if _COUNTERS is None:
        _COUNTERS = torch.zeros(1 << 14, dtype=torch.int32, device=x.device)
    y = torch.empty((m, n), dtype=x.dtype, device=x.device)
    tiles = triton.cdiv(m, block_m) * triton.cdiv(n, block_n)
    part = torch.empty((splits, m, n), dtype=torch.float32, device=x.device) if splits > 1 else y
    _gemm_kernel[(tiles * splits,)](x, w, y, part, _COUNTERS, m, n, k, x.stride(0), w.stride(0), y.stride(0),
                                    BLOCK_M=block_m, BLOCK_N=block_n, BLOCK_K=block_k, SPLIT_K=splits,
                                    num_warps=warps, num_stages=stages, **pdl_args(x.device))
    return y


def timed(fn, copies):
    """Microseconds a call: a CUDA graph of CALLS calls over the weight copies, replayed; None if it cannot run."""
    try:
        return graph_replay_us(fn, CALLS, copies)
    except Exception as e:  # out of shared memory or registers
        print(f"    failed: {type(e).__name__}: {str(e)[:80]}")
        return None


def settings(m, k):
    """Candidate (BLOCK_M, BLOCK_N, BLOCK_K, stages, splits) for m rows and depth k."""
    block_ms = {1: (16,), 16: (16,), 64: (32, 64), 128: (64,), 256: (64, 128)}[m]
    for bm, bn, stages, splits in itertools.product(block_ms, (32, 64, 128), (4, 6), (1, 2, 4, 8)):
        if k % (128 * splits) == 0 and bm * bn <= 128 * 64:
            yield bm, bn, 128, stages, splits


def _copies(n, k, dev):
    copies = max(2, ROTATE_BYTES // (n * k * 2))
    return [torch.randn(n, k, device=dev, dtype=torch.bfloat16) * k**-0.5 for _ in range(copies)]


def _ranked(settings, run, x, weights):
    """(microseconds, setting) of each setting that runs and matches F.linear, fastest first: run(x, weight, setting)
    is the product under that setting."""
    ref = F.linear(x, weights[0]).float()
    results = []
    for setting in settings:
        try:
            out = run(x, weights[0], setting).float()
        except triton.runtime.errors.OutOfResources:
            continue
        err = ((out - ref).abs().max() / ref.abs().max()).item()
        if err > 2e-2:
            print(f"    {setting} WRONG: {err:.3g}")
            continue
        t = timed(lambda i: run(x, weights[i], setting), len(weights))
        if t is not None:
            results.append((t, setting))
    return sorted(results)


def skinny_sweep():
    """skinny_gemm with K split against cuBLAS at 1 and 16 rows: the default setting and the best of a sweep."""
    dev = torch.device("cuda")
    torch.manual_seed(0)
    for name, (n, k) in SHAPES.items():
        weights = _copies(n, k, dev)
        default = (skinny_gemm_config(n, k), skinny_split_k(n, k, dev))
        sweep = [((bn, bk, 4, stages), splits)
                 for bn, bk, stages, splits in itertools.product((32, 64), (128, 256), (3, 4, 6), (1, 2, 4, 8))
                 if k % (bk * splits) == 0]
        sweep += [default] * (default not in sweep)  # so that the default's own time is always printed
        for m in (1, 16):
            x = torch.randn(m, k, device=dev, dtype=torch.bfloat16)
            cublas = timed(lambda i: F.linear(x, weights[i]), len(weights))
            results = _ranked(sweep, lambda x, w, s: skinny_gemm(x, w, config=s[0], splits=s[1]), x, weights)
            mine = next((f"{t:.1f}" for t, st in results if st == default), "failed")
            top = ", ".join(f"{t:.1f} {st}" for t, st in results[:3])
            print(f"{name:8s} rows {m:2d}: cuBLAS {cublas:5.1f} us, default {default} {mine} us, best {top}",
                  flush=True)


def main():
    dev = torch.device("cuda")
    torch.manual_seed(0)
    total = {"cublas": 0.0, "best": 0.0}
    for name, (n, k) in SHAPES.items():
        weights = _copies(n, k, dev)
        for m in ROWS:
            x = torch.randn(m, k, device=dev, dtype=torch.bfloat16)
            cublas = timed(lambda i: F.linear(x, weights[i]), len(weights))
            results = _ranked(settings(m, k), lambda x, w, s: triton_linear(x, w, *s), x, weights)
            bound = n * k * 2 / 4.2e12 * 1e6
            total["cublas"] += cublas
            total["best"] += results[0][0]
            top = ", ".join(f"{t:.1f} {s}" for t, s in results[:3])
            print(f"{name:8s} rows {m:3d}: cuBLAS {cublas:5.1f} us, Triton best {top} (bytes at 4.2 TB/s: {bound:.1f})",
                  flush=True)
    print(f"sum over shapes and rows: cuBLAS {total['cublas']:.0f} us, Triton best {total['best']:.0f} us")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--skinny", action="store_true", help="sweep skinny_gemm with K split (the engine's kernel)")
    skinny_sweep() if ap.parse_args().skinny else main()

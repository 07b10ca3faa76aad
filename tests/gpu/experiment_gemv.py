"""GPU experiment: can a Triton skinny GEMM (decode at batch 1-8) read Llama-3-8B's weights faster than cuBLAS?

Session 4's bs1 profile (H200): gate_up and down already stream at the copy rate under cuBLAS, but the qkv (50 MB)
and o (33 MB) projections run at 3.1-3.2 TB/s of 4.2 and o / down add a split-K reduce (109 us a step); with
RMSNorm (65 launches, 142 us) and SiLU (47 us) around them, that is most of what keeps bs1 decode at MBU 78% instead
of the issue's 85%. This times, in CUDA graphs, torch.matmul against a Triton kernel with one program per BLOCK_N
output features (optionally split over K into an fp32 partial buffer summed afterwards), and the same kernel with
RMSNorm fused into its prologue (each program recomputes the row's rms: K values from L2), for every projection at
M = 1 and 4. If the Triton rows win on qkv / o (with the norm fused), the next step is a decode-only linear path.

usage (on a GPU machine, in the repo root, after `source tests/gpu/device_env.sh`):
  python tests/gpu/experiment_gemv.py
On the CPU (TRITON_INTERPRET=1) `--check` only compares the kernel with torch on small shapes.
"""

from __future__ import annotations

import argparse
import itertools
import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")  # before triton is imported
import triton  # noqa: E402
import triton.language as tl  # noqa: E402

# name: (N out features, K in features), Llama-3-8B, bf16
SHAPES = {"qkv": (6144, 4096), "o": (4096, 4096), "gate_up": (28672, 4096), "down": (4096, 14336),
          "lm_head": (128256, 4096)}
BATCHES = [1, 4]
# (BLOCK_N, BLOCK_K, SPLIT_K, num_warps, num_stages); per M only those whose [M, BLOCK_N, BLOCK_K] product tile
# stays within 16k fp32 values (registers).
CONFIGS = list(itertools.product([4, 8, 16, 32], [128, 256, 512], [1, 2, 4], [4], [3]))


@triton.jit
def _skinny_gemm_kernel(x_ptr, w_ptr, g_ptr, out_ptr, M, N, K, eps, stride_xm, stride_wn, stride_os, stride_om,
                        BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, SPLIT_K: tl.constexpr,
                        NORM: tl.constexpr):
    """out[s, m, n] = sum over this program's K range of xn[m, k] * w[n, k] (fp32), xn = x or RMSNorm(x) * g."""
    pid_n = tl.program_id(0)
    pid_k = tl.program_id(1)
    offs_m = tl.arange(0, BLOCK_M)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_k = tl.arange(0, BLOCK_K)
    mask_m = offs_m < M
    mask_n = offs_n < N
    inv_rms = tl.full([BLOCK_M], 1.0, tl.float32)
    if NORM:  # each program recomputes the rows' rms over all K (x is small and stays in L2)
        sq = tl.zeros([BLOCK_M], tl.float32)
        for k0 in range(0, K, BLOCK_K):
            xk = tl.load(x_ptr + offs_m[:, None] * stride_xm + (k0 + offs_k)[None, :],
                         mask=mask_m[:, None] & ((k0 + offs_k) < K)[None, :], other=0.0).to(tl.float32)
            sq += tl.sum(xk * xk, axis=1)
        inv_rms = 1.0 / tl.sqrt(sq / K + eps)
    k_len = tl.cdiv(tl.cdiv(K, SPLIT_K), BLOCK_K) * BLOCK_K
    k_start = pid_k * k_len
    acc = tl.zeros([BLOCK_M, BLOCK_N], tl.float32)
    for k0 in range(k_start, tl.minimum(k_start + k_len, K), BLOCK_K):
        ks = k0 + offs_k
        mask_k = ks < K
        w = tl.load(w_ptr + offs_n[:, None] * stride_wn + ks[None, :], mask=mask_n[:, None] & mask_k[None, :],
                    other=0.0).to(tl.float32)  # [BLOCK_N, BLOCK_K]
        x = tl.load(x_ptr + offs_m[:, None] * stride_xm + ks[None, :], mask=mask_m[:, None] & mask_k[None, :],
                    other=0.0).to(tl.float32)  # [BLOCK_M, BLOCK_K]
        if NORM:
            g = tl.load(g_ptr + ks, mask=mask_k, other=0.0).to(tl.float32)
            x = x * inv_rms[:, None] * g[None, :]
        # CUDA cores, not tensor cores: at M <= 8 the work is the weight stream, not the multiply-adds.
        acc += tl.sum(x[:, None, :] * w[None, :, :], axis=2)
    tl.store(out_ptr + pid_k * stride_os + offs_m[:, None] * stride_om + offs_n[None, :], acc,
             mask=mask_m[:, None] & mask_n[None, :])


def skinny_gemm(x, w, config, g=None, eps=1e-5):
    """x [M, K] @ w[N, K]^T (RMSNorm(x) * g first when g is given) -> [M, N] in x.dtype."""
    M, K = x.shape
    N = w.shape[0]
    block_n, block_k, split_k, warps, stages = config
    part = torch.empty((split_k, M, N), dtype=torch.float32, device=x.device)
    _skinny_gemm_kernel[(triton.cdiv(N, block_n), split_k)](
        x, w, g if g is not None else x, part, M, N, K, eps, x.stride(0), w.stride(0), part.stride(0), part.stride(1),
        BLOCK_M=triton.next_power_of_2(M), BLOCK_N=block_n, BLOCK_K=block_k, SPLIT_K=split_k, NORM=g is not None,
        num_warps=warps, num_stages=stages)
    return (part[0] if split_k == 1 else part.sum(0)).to(x.dtype)


def reference(x, w, g=None, eps=1e-5):
    xf = x.float()
    if g is not None:
        xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps) * g.float()
    return (xf @ w.float().t()).to(x.dtype)


def check(device: str) -> None:
    """Small shapes: the kernel (plain and with the norm) against torch, every split."""
    dtype = torch.float32 if device == "cpu" else torch.bfloat16
    for M, N, K, split in [(1, 24, 200, 1), (3, 40, 130, 2), (8, 16, 512, 4)]:
        x, w = torch.randn(M, K, device=device, dtype=dtype), torch.randn(N, K, device=device, dtype=dtype)
        g = torch.randn(K, device=device, dtype=dtype)
        for gg in (None, g):
            got = skinny_gemm(x, w, (16, 64, split, 4, 1), gg)
            torch.testing.assert_close(got.float(), reference(x, w, gg).float(), atol=2e-2, rtol=2e-2)
    print("check: the kernel equals torch on small shapes (plain and norm-fused, split-K 1/2/4)")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--check", action="store_true", help="only compare with torch on small shapes")
    args = ap.parse_args()
    if args.check or not torch.cuda.is_available():
        check("cuda" if torch.cuda.is_available() else "cpu")
        return
    check("cuda")
    from sweep_tools import time_in_graph  # tests/gpu/, this script's folder (imports triton: after the env is set)

    from spmd_infer.bench.ceilings import measure_ceilings
    bw = measure_ceilings(torch.device("cuda"), torch.bfloat16).bandwidth_bytes_per_s
    print(f"{torch.cuda.get_device_name()}: copy rate {bw / 1e12:.2f} TB/s")
    for (name, (N, K)), M in itertools.product(SHAPES.items(), BATCHES):
        w = torch.randn(N, K, device="cuda", dtype=torch.bfloat16) * K**-0.5
        x = torch.randn(M, K, device="cuda", dtype=torch.bfloat16)
        g = torch.randn(K, device="cuda", dtype=torch.bfloat16)
        ref = reference(x, w).float()
        nbytes = N * K * 2
        out = torch.empty(M, N, device="cuda", dtype=torch.bfloat16)
        t_cublas, _ = time_in_graph(f"{name} M={M} cublas", lambda: torch.matmul(x, w.t(), out=out), lambda: 0.0)
        rows = []
        for config in [c for c in CONFIGS if triton.next_power_of_2(M) * c[0] * c[1] <= 16384]:
            t, err = time_in_graph(f"{name} M={M} {config}", lambda: skinny_gemm(x, w, config),
                                   lambda: (skinny_gemm(x, w, config).float() - ref).abs().max().item())
            rows.append((t, config, err))
        t_best, best, err = min(rows)
        t_norm, _ = time_in_graph(f"{name} M={M} norm", lambda: skinny_gemm(x, w, best, g), lambda: 0.0)

        def rate(t):
            return f"{t * 1e3:7.1f} us {nbytes / (t * 1e-3) / 1e12:5.2f} TB/s ({nbytes / (t * 1e-3) / bw:4.0%})"
        print(f"{name:8s} M={M}: cuBLAS {rate(t_cublas)} | Triton {rate(t_best)} {best} err={err:.3f} | "
              f"with RMSNorm fused {t_norm * 1e3:.1f} us")


if __name__ == "__main__":
    main()

"""GPU probe: cuBLAS's block-scaled float8 GEMM (torch's scaled_mm with DeepSeek's 1x128 activation / 128x128
weight scales, cuBLASLt 12.9+ on sm_90) against fp8_linear and bf16 cuBLAS on dense projections, row count by row
count: whether prefill-sized float8 linear layers should go to cuBLAS (fp8_linear's prefill runs at 0.85x of bf16
cuBLAS, session 17).

usage (on a GPU machine, in the repo root, after `source tests/gpu/device_env.sh`):
  python tests/gpu/probe_scaled_mm.py [--shapes SUBSTRING] [--rows 1,16,...]
Prints, per shape and row count: microseconds and TFLOP/s of bf16 cuBLAS, the Triton kernel (its rounding launch
included), scaled_mm alone (x rounded already) and fp8_linear as the engine calls it (cuBLAS with its rounding
launch from fp8_linear.CUBLAS_MIN_ROWS rows), and the largest errors against fp8_linear_ref relative to the
output's peak.
"""

from __future__ import annotations

import argparse
import importlib
import math
import sys

import torch
import torch.nn.functional as F

try:
    from spmd_kernels.block_fp8 import dequantize_blocks, quantize_blocks
    from spmd_kernels.scaled_activations import quantize_activations

    fl = importlib.import_module("spmd_kernels.fp8_linear")
except ImportError as e:
    sys.exit(f"probe_scaled_mm.py: {e}; run `source tests/gpu/device_env.sh` in the repo root first")
from tune_fp8_linear import BLOCK, ROTATE_BYTES, SHAPES, max_error, time_graph


def scaled_mm(xq: torch.Tensor, xs: torch.Tensor, w: torch.Tensor, ws_cublas: torch.Tensor) -> torch.Tensor:
    """cuBLAS's block-scaled float8 GEMM alone, on x rounded already with group-major scales."""
    return F.scaled_mm(xq, w.t(), xs, F.ScalingType.BlockWise1x128, ws_cublas, F.ScalingType.BlockWise128x128,
                       output_dtype=torch.bfloat16)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shapes", default="llama3-8b")
    ap.add_argument("--rows", default="1,16,64,256,1024,2048,8192,16384")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        sys.exit("probe_scaled_mm.py needs a CUDA GPU: run it on the device machine (tests/gpu/run_fp8_cublas.sh)")
    dev = torch.device("cuda")
    print(torch.__version__, torch.version.cuda, torch.cuda.get_device_name(), "F.scaled_mm:", hasattr(F, "scaled_mm"))
    g = torch.Generator(device=dev).manual_seed(0)
    for name, (n, k) in SHAPES.items():
        if args.shapes not in name:
            continue
        w0, s0 = quantize_blocks(torch.randn(n, k, device=dev, generator=g) * k**-0.5, BLOCK)
        wb0 = dequantize_blocks(w0, s0, BLOCK).to(torch.bfloat16)
        copies = max(2, math.ceil(ROTATE_BYTES / w0.nbytes))
        fp8_copies = [(w, s, fl.cublas_weight_scales(s)) for w, s in ((w0.clone(), s0.clone()) for _ in range(copies))]
        bf16_copies = [wb0.clone() for _ in range(max(2, math.ceil(ROTATE_BYTES / wb0.nbytes)))]
        for rows in [int(r) for r in args.rows.split(",")]:
            x = torch.randn(rows, k, device=dev, generator=g).to(torch.bfloat16)
            flop = 2 * rows * n * k
            ref = fl.fp8_linear_ref(x, w0, s0, BLOCK, activations="fp8")
            xq, xs_c = quantize_activations(x, BLOCK[1], group_major_scales=True, rows_multiple=4)
            line = f"{name} [{n}, {k}] rows={rows:5d}:"

            t = time_graph(lambda: [F.linear(x, wb) for wb in bf16_copies]) / len(bf16_copies)
            line += f"  bf16 {t * 1e3:7.1f} us {flop / (t * 1e-3) / 1e12:4.0f} TF"
            # The Triton kernel: a tile given (fp8_linear's own for these rows) keeps fp8_linear off cuBLAS.
            tile = fl.fp8_linear_config(rows, dev, n)
            t = time_graph(lambda: [fl.fp8_linear(x, w, s, BLOCK, config=tile) for w, s, _ in fp8_copies]) / copies
            err = max_error(fl.fp8_linear(x, w0, s0, BLOCK, config=tile), ref)
            line += f" | triton {t * 1e3:7.1f} us {flop / (t * 1e-3) / 1e12:4.0f} TF err={err:.4f}"
            try:
                out = scaled_mm(xq, xs_c, w0, fp8_copies[0][2])[:rows]
                err = max_error(out, ref)
                t = time_graph(lambda: [scaled_mm(xq, xs_c, w, sc) for w, _, sc in fp8_copies]) / copies
                # fp8_linear as the engine calls it: cuBLAS with its rounding launch where takes_cublas says so.
                t2 = time_graph(lambda: [fl.fp8_linear(x, w, s, BLOCK) for w, s, _ in fp8_copies]) / copies
                line += (f" | scaled_mm {t * 1e3:7.1f} us {flop / (t * 1e-3) / 1e12:4.0f} TF err={err:.4f}"
                         f" | fp8_linear{' (cuBLAS)' if fl.takes_cublas(rows, n, k, BLOCK, dev, x.dtype) else ''}"
                         f" {t2 * 1e3:7.1f} us")
            except Exception as e:
                line += f" | scaled_mm failed: {type(e).__name__}: {str(e)[:300]}"
            print(line, flush=True)
        fp8_copies.clear()
        bf16_copies.clear()
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()

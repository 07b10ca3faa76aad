"""Compile decode attention's split kernel for sm_90 on any machine (no GPU needed: Triton's bundled ptxas) and count
the PTX instructions that tell how it moves data: global loads and async copies, shared-memory loads and stores,
ldmatrix, float8 conversions, byte permutes, tensor-core mma.

Session 9 found with it why decode attention over a float8 cache runs at 2.0 TB/s where a bf16 cache reaches
3.6 TB/s: 128 byte-wide shared loads (ld.shared.b8) per thread per tile, Triton transposing the float8 V tile a
byte at a time; loading V by head dimension (V_BY_DIM) turns them into 64-bit loads and register permutes.
Launch arguments are specialised as a real launch specialises them (16-byte aligned pointers, strides divisible by
16), without which every load compiles scalar. The local Triton may differ from the GPU machines' (3.6).

usage: python tests/gpu/ptx_census.py [--cache fp8|bf16] [--v-by-dim] [--stages 3] [--block-n 128] [--group 2]
"""

from __future__ import annotations

import argparse
import collections
import re
import sys
from pathlib import Path

_REPO = Path(__file__).resolve().parents[2]
WATCH = ("ld.global", "cp.async", "ld.shared", "st.shared", "ldmatrix", "cvt.rn.f16x2.e4m3x2", "prmt", "mma")
NOT_SPECIALISED = ("stride_bt", "stride_ml_b", "stride_ml_h", "num_splits")  # the kernel's do_not_specialize


def census(cache: str, v_by_dim: bool, stages: int, block_n: int, group: int, warps: int = 4) -> tuple[dict, int]:
    """({instruction: count} over WATCH, shared memory bytes) of one decode split-kernel compile for sm_90."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    from spmd_kernels import decode_attention

    fn = decode_attention._decode_split_kernel
    kv = "*fp8e4nv" if cache == "fp8" else "*bf16"
    sig = {"q_ptr": "*bf16", "k_cache_ptr": kv, "v_cache_ptr": kv, "block_tables_ptr": "*i32",
           "context_lens_ptr": "*i32", "out_ptr": "*bf16", "mid_o_ptr": "*fp32", "mid_lse_ptr": "*fp32",
           "qk_scale": "fp32"}
    consts = dict(GROUP=group, HEAD_DIM=128, PAGE=16, BLOCK_G=max(16, triton.next_power_of_2(group)), BLOCK_D=128,
                  BLOCK_N=block_n, DIRECT=True, F16_DOTS=cache == "fp8", V_BY_DIM=v_by_dim, PDL=True)
    for name in fn.arg_names:
        if name in consts:
            sig[name] = "constexpr"
        elif name not in sig:
            sig[name] = "i32"
    aligned = [n for n in fn.arg_names if sig[n].startswith("*") or (n.startswith("stride") and
                                                                      n not in NOT_SPECIALISED)]
    attrs = {(fn.arg_names.index(n),): [["tt.divisibility", 16]] for n in aligned}
    kernel = triton.compile(ASTSource(fn=fn, signature=sig, constexprs=consts, attrs=attrs),
                            target=GPUTarget("cuda", 90, 32), options=dict(num_warps=warps, num_stages=stages))
    ops = collections.Counter(re.findall(r"^\s*(?:@!?%p\d+\s+)?([a-z]+(?:\.[a-z0-9]+)*)", kernel.asm["ptx"], re.M))
    watched = {op: n for op, n in ops.items() if op.startswith(WATCH)}
    return dict(sorted(watched.items(), key=lambda t: (-t[1], t[0]))), kernel.metadata.shared


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cache", choices=("fp8", "bf16"), default="fp8")
    ap.add_argument("--v-by-dim", action="store_true")
    ap.add_argument("--stages", type=int, default=3)
    ap.add_argument("--block-n", type=int, default=128)
    ap.add_argument("--group", type=int, default=2, help="query heads per KV head")
    args = ap.parse_args()
    sys.path.insert(0, str(_REPO))
    ops, shared = census(args.cache, args.v_by_dim, args.stages, args.block_n, args.group)
    for op, n in ops.items():
        print(f"{n:6d}  {op}")
    print(f"shared memory: {shared} bytes")


if __name__ == "__main__":
    main()

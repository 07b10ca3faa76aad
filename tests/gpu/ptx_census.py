"""Compile one of our Triton kernels for sm_90 on any machine (no GPU needed: Triton's bundled ptxas) and count the
PTX instructions that tell how it moves data: global loads and async copies, shared-memory loads and stores,
ldmatrix, float8 conversions, byte permutes, tensor-core mma / wgmma.

Device time is the scarce resource; this answers "does Triton pipeline, vectorise, transpose bytes?" offline.
It counts instructions, not time: session 9 found with it 128 byte-wide shared loads (ld.shared.b8) per thread per
tile in decode attention over a float8 cache, Triton transposing the float8 V tile for decode's 16-row mma.sync,
and took them for why that kernel ran at half a bf16 cache's bytes a second. Session 10 timed the kernel without
them (V laid out by head dimension) and without cvt (widening by moving bits): neither was faster. Five pipeline
stages were, and session 11's narrower tiles (decode_settings.FP8_SPLIT_CONFIGS) more so: what bound it was
the bytes in flight. The last line gives the registers a thread (Triton's ptxas -v for sm_90a), spills and how many
programs fit an SM: over a float8 cache decode attention widens whole tiles into registers (199 a thread at BLOCK_N
128, two programs an SM, against 134 and three over bf16).
With --sass FILE it also writes the kernel's sm_90a SASS (Triton's bundled ptxas and cuobjdump) and prints how
its tensor-core instructions depend on one another in issue order: an HMMA whose accumulator is the result of the
HMMA just before it waits out that one's latency; and the instructions one trip of the main loop issues, by
opcode. Session 14 found MLA decode's score dot one run of 36 such (ncu's top stall, 'wait'), split it into two
halves the SASS interleaves (runs of 1), saw that quarters compiled into four runs of 8, one after another, and
cut the loop from 552 to 499 instructions by computing cache offsets from compile-time sizes.
Launch arguments are specialised as a real launch specialises them (16-byte aligned pointers, integer arguments
divisible by 16 except the kernel's do_not_specialize ones), without which every load compiles scalar. The local
Triton may differ from the GPU machines' (3.6).

usage: python tests/gpu/ptx_census.py decode [--cache fp8|bf16] [--stages 3] [--warps 4] [--block 128] [--group 2]
                                              [--maxnreg 168] [--asm-widen 1] [--pin-v 1] [--v-by-warp 1]
       python tests/gpu/ptx_census.py mla [--cache fp8|bf16] [--block 32] [--stages 2] [--warps 4] [--pin-v 1]
       python tests/gpu/ptx_census.py prefill [--cache fp8|bf16] [--stages 3] [--warps 4] [--block 64] [--group 4]
                                              [--heavy-first 1]
       python tests/gpu/ptx_census.py skinny [--block 64] [--block-k 128] [--stages 4] [--warps 4] [--rope]
                                             [--splits 1]
       python tests/gpu/ptx_census.py moe [--tile small|medium|large] [--part gate_up|down] [--weights fp8]
                                          [--act model|fp8] [--swap 0|1] [--shared]
       any of them with --sass FILE
"""

from __future__ import annotations

import argparse
import collections
import importlib
import re
import subprocess
import sys
import tempfile
from pathlib import Path

_REPO = Path(__file__).resolve().parents[2]
WATCH = ("ld.global", "cp.async", "ld.shared", "st.shared", "ldmatrix", "cvt.rn.f16x2.e4m3x2", "prmt", "mma",
         "wgmma.mma")
_OP = re.compile(r"^\s*(?:@!?%p\d+\s+)?([a-z]+(?:\.[a-z0-9]+)*)", re.M)


def compile_census(fn, pointers: dict, consts: dict, not_specialised: tuple, warps: int, stages: int,
                   maxnreg: int | None = None):
    """({instruction: count} over WATCH, shared memory bytes, the PTX) of fn compiled for sm_90 with these pointer
    types, constexprs and launch options (maxnreg: a register cap, as a launch's keyword sets it); other arguments
    are int32 (float32 where named in pointers as "fp32")."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    sig = {n: "constexpr" if n in consts else pointers.get(n, "i32") for n in fn.arg_names}
    divisible = [n for n in fn.arg_names if sig[n].startswith("*") or (sig[n] == "i32" and n not in not_specialised)]
    attrs = {(fn.arg_names.index(n),): [["tt.divisibility", 16]] for n in divisible}
    options = dict(num_warps=warps, num_stages=stages, **({"maxnreg": maxnreg} if maxnreg else {}))
    kernel = triton.compile(ASTSource(fn=fn, signature=sig, constexprs=consts, attrs=attrs),
                            target=GPUTarget("cuda", 90, 32), options=options)
    ops = collections.Counter(_OP.findall(kernel.asm["ptx"]))
    watched = {op: n for op, n in ops.items() if op.startswith(WATCH)}
    return dict(sorted(watched.items(), key=lambda t: (-t[1], t[0]))), kernel.metadata.shared, kernel.asm["ptx"]


def register_use(ptx: str) -> tuple[int, int]:
    """(registers a thread, spill bytes stored) of this PTX assembled for sm_90a by Triton's bundled ptxas -v.
    ptxas runs a second time here because Triton's compile result holds no register count until a driver loads
    the module, which this machine has none of."""
    from triton.backends.nvidia.compiler import get_ptxas

    with tempfile.NamedTemporaryFile("w", suffix=".ptx") as f:
        f.write(ptx)
        f.flush()
        info = subprocess.run([get_ptxas(90).path, "-arch=sm_90a", "-v", f.name, "-o", "/dev/null"],
                              capture_output=True, text=True, check=True).stderr
    regs = int(re.search(r"Used (\d+) registers", info).group(1))
    spill = re.search(r"(\d+) bytes spill stores", info)
    return regs, int(spill.group(1)) if spill else 0


def write_sass(ptx: str, path: Path) -> str:
    """The SASS of this PTX assembled for sm_90a (Triton's bundled ptxas, then cuobjdump beside it), written to
    path and returned."""
    from triton.backends.nvidia.compiler import get_ptxas

    ptxas = Path(get_ptxas(90).path)
    with tempfile.TemporaryDirectory() as tmp:
        src, cubin = Path(tmp) / "k.ptx", Path(tmp) / "k.cubin"
        src.write_text(ptx)
        subprocess.run([ptxas, "-arch=sm_90a", src, "-o", cubin], capture_output=True, text=True, check=True)
        sass = subprocess.run([ptxas.parent / "cuobjdump", "-sass", cubin], capture_output=True, text=True,
                              check=True).stdout
    path.write_text(sass)
    return sass


_HMMA = re.compile(r"\bHMMA\.\S+\s+(R\d+),\s*R\d+(?:\.reuse)?,\s*R\d+(?:\.reuse)?,\s*(R\d+|RZ)")


def mma_dependence(sass: str) -> tuple[int, int, int]:
    """(HMMA instructions, how many take as accumulator the result of the HMMA just before them in issue order,
    the longest run of such back-to-back dependent HMMA)."""
    total = dependent = run = longest = 0
    previous = None
    for dest, acc in _HMMA.findall(sass):
        total += 1
        if acc == previous:
            dependent += 1
            run += 1
        else:
            run = 1
        longest = max(longest, run)
        previous = dest
    return total, dependent, longest


_SASS_LINE = re.compile(r"\s+/\*([0-9a-f]{4,})\*/\s+(.*?)\s*;")
_BACK_BRANCH = re.compile(r"\bBRA\s+0x([0-9a-f]+)")


def main_loop(sass: str) -> tuple[int, collections.Counter]:
    """(instructions, opcode counts) of the body of the longest backward branch in the SASS: a kernel's main loop,
    what one trip (one KV tile, one K step) issues a warp."""
    body: list[str] = []
    ins = [(int(a, 16), text) for a, text in _SASS_LINE.findall(sass)]
    for addr, text in ins:
        target = _BACK_BRANCH.search(text)
        if target and int(target.group(1), 16) < addr:
            span = [t for a, t in ins if int(target.group(1), 16) <= a <= addr]
            body = span if len(span) > len(body) else body
    ops = collections.Counter(re.sub(r"^@!?U?P\w+\s+", "", t).split()[0].split(".")[0] for t in body)
    return len(body), ops


def programs_per_sm(regs: int, warps: int, shared: int) -> int:
    """How many programs (CTAs) of this kernel fit on one H100/H200 SM: 64K registers (allocated per warp in units
    of 256), 227 KB of shared memory a block can use (228 KB an SM, 1 KB reserved per block), 64 warps."""
    regs_per_warp = -(-regs * 32 // 256) * 256
    by_regs = 65536 // (regs_per_warp * warps)
    by_shared = 233472 // (shared + 1024) if shared else 32
    return min(by_regs, by_shared, 64 // warps, 32)


def decode(args):
    from spmd_kernels import decode_attention

    kv = "*fp8e4nv" if args.cache == "fp8" else "*bf16"
    pointers = {"q_ptr": "*bf16", "k_cache_ptr": kv, "v_cache_ptr": kv, "block_tables_ptr": "*i32",
                "context_lens_ptr": "*i32", "out_ptr": "*bf16", "mid_o_ptr": "*fp32", "mid_lse_ptr": "*fp32",
                "order_ptr": "*i32", "qk_scale": "fp32"}
    consts = dict(GROUP=args.group, HEAD_DIM=128, PAGE=16, BLOCK_G=max(16, 1 << (args.group - 1).bit_length()),
                  BLOCK_D=128, BLOCK_N=args.block or 128, DIRECT=True, F16_DOTS=args.cache == "fp8",
                  ASM_WIDEN=args.cache == "fp8" and args.asm_widen, PIN_V=bool(args.pin_v),
                  V_BY_WARP=(args.warps or 4) if args.cache == "fp8" and args.v_by_warp else 0, ORDERED=True,
                  PDL=True)
    return compile_census(decode_attention._decode_split_kernel, pointers, consts,
                          ("stride_bt", "stride_ml_b", "stride_ml_h", "num_splits"), args.warps or 4, args.stages or 3,
                          args.maxnreg)


def mla(args):
    mla_decode = importlib.import_module("spmd_kernels.mla_decode")  # the package exports a function by that name

    kv = "*fp8e4nv" if args.cache == "fp8" else "*bf16"
    pointers = {"q_ptr": "*bf16", "qpe_ptr": "*bf16", "cache_ptr": kv, "block_tables_ptr": "*i32",
                "context_lens_ptr": "*i32", "out_ptr": "*bf16", "mid_o_ptr": "*fp32", "mid_lse_ptr": "*fp32",
                "order_ptr": "*i32", "qk_scale": "fp32"}
    # DeepSeek's kv_lora_rank 512: the large-L tile of the config mla_decode takes for this cache
    config = mla_decode.CUDA_CONFIG_FP8 if args.cache == "fp8" else mla_decode.CUDA_CONFIG
    block_h, (_, block_n), warps, stages = config
    consts = dict(NUM_HEADS=16, LATENT=512, ROPE=64, PAGE=16, BLOCK_H=block_h, BLOCK_L=512, BLOCK_R=64,
                  BLOCK_N=args.block or block_n, DIRECT=True, PIN_LATENT=args.cache == "fp8" and bool(args.pin_v),
                  SEPARATE_CHAINS=True, F16_DOTS=args.cache == "fp8" and bool(args.f16_dots), ORDERED=True, PDL=True)
    return compile_census(mla_decode._mla_decode_split_kernel, pointers, consts,
                          ("stride_bt", "stride_ml_b", "stride_ml_h", "num_splits"), args.warps or warps,
                          args.stages or stages)


def prefill(args):
    from spmd_kernels import prefill_attention

    kv = "*fp8e4nv" if args.cache == "fp8" else "*bf16"
    pointers = {"q_ptr": "*bf16", "k_cache_ptr": kv, "v_cache_ptr": kv, "out_ptr": "*bf16",
                "cu_seqlens_q_ptr": "*i32", "context_lens_ptr": "*i32", "block_tables_ptr": "*i32",
                "qk_scale": "fp32"}
    block = args.block or 64
    consts = dict(GROUP=args.group, HEAD_DIM=128, HEAD_DIM_V=128, PAGE=16, BLOCK_M=block, BLOCK_N=block,
                  BLOCK_D=128, BLOCK_DV=128, HEAVY_FIRST=bool(args.heavy_first), PDL=True)
    return compile_census(prefill_attention._prefill_kernel, pointers, consts, ("stride_bt",), args.warps or 4,
                          args.stages or 3)


def skinny(args):
    skinny_gemm = importlib.import_module("spmd_kernels.skinny_gemm")  # the package exports a function by that name

    pointers = {n: "*bf16" for n in ("x_ptr", "w_ptr", "bias_ptr", "out_ptr", "k_cache_ptr", "v_cache_ptr")}
    pointers.update(pos_ptr="*i64", slot_ptr="*i64", cos_sin_ptr="*fp32", part_ptr="*fp32", count_ptr="*i32")
    consts = dict(HAS_BIAS=False, ROPE=args.rope, HEAD_DIM=128, PAGE=16, FP8=False, IEEE=False, PDL=True, BLOCK_M=16,
                  BLOCK_N=args.block or 64, BLOCK_K=args.block_k, SPLIT_K=args.splits)
    return compile_census(skinny_gemm._skinny_gemm_kernel, pointers, consts, (), args.warps or 4, args.stages or 4)


def moe(args):
    fused_moe = importlib.import_module("spmd_kernels.fused_moe")  # the package exports a function by that name

    block_m, block_n, block_k, warps, stages = fused_moe.CUDA_CONFIGS[args.tile]
    # DeepSeek-V2-Lite's expert sizes. The weights' K stride is 1 in every launch, and Triton specialises an
    # integer argument equal to 1 as a constant: without that here, every weight load would compile scalar.
    fp8 = args.weights == "fp8"  # float8 experts, a scale per 128 x 128 block (model.expert_dtype=fp8)
    if fp8:
        block_m, block_n, block_k, warps, stages = fused_moe.CUDA_CONFIGS_FP8[args.tile]
    # Activations as fused_moe picks them (DEFAULT_ACTIVATIONS for float8 experts), or --act.
    act8 = fp8 and (args.act or fused_moe.DEFAULT_ACTIVATIONS) == "fp8"
    if act8:
        block_k = fused_moe.FP8_ACT_BLOCK_K
    if act8 and args.part == "gate_up":
        block_n = 128  # one program writes a whole scale group of h (as fused_moe launches)
    if args.part == "gate_up":  # two [BLOCK_M, BLOCK_N] accumulators: 8 warps from 64 x 128 (as fused_moe launches)
        warps = max(warps, 8) if block_m * block_n >= 64 * 128 else warps
    consts = dict(HIDDEN=2048, INTER=1408, TOP_K=6, BLOCK_M=block_m, BLOCK_N=block_n, BLOCK_K=block_k, PDL=True,
                  stride_wk=1, SCALED=fp8, SCALE_N=128 if fp8 else 1, SCALE_K=128 if fp8 else 1, ACT=act8,
                  SWAP=(fused_moe.SWAP_AB if args.swap is None else bool(args.swap)) and act8 and block_m < 64,
                  HAS_SHARED=args.shared)
    weight, scale = ("*fp8e4nv", "*fp32") if fp8 else ("*bf16", "*bf16")
    act, act_scale = ("*fp8e4nv", "*fp32") if act8 else ("*bf16", "*bf16")
    if args.part == "gate_up":
        pointers = {"x_ptr": act, "w13_ptr": weight, "s13_ptr": scale, "xs_ptr": act_scale, "h_ptr": act,
                    "hs_ptr": act_scale, "sorted_ids_ptr": "*i32", "block_expert_ptr": "*i32",
                    "shared_w13_ptr": weight}
        kernel = fused_moe._moe_gate_up_kernel
    else:
        pointers = {"h_ptr": act, "w2_ptr": weight, "s2_ptr": scale, "hs_ptr": act_scale, "y_ptr": "*bf16",
                    "weights_ptr": "*fp32", "sorted_ids_ptr": "*i32", "block_expert_ptr": "*i32",
                    "shared_w2_ptr": weight}
        kernel = fused_moe._moe_down_kernel
    args.warps = args.warps or warps  # the tile's own (the large one has 8): main() counts programs an SM by it
    return compile_census(kernel, pointers, consts, ("num_slots",), args.warps, args.stages or stages)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("kernel", choices=("decode", "mla", "prefill", "skinny", "moe"))
    ap.add_argument("--cache", choices=("fp8", "bf16"), default="fp8", help="decode / mla / prefill: KV-cache dtype")
    ap.add_argument("--stages", type=int, default=0, help="num_stages (default: the kernel's usual)")
    ap.add_argument("--warps", type=int, default=0, help="num_warps (default: 4)")
    ap.add_argument("--maxnreg", type=int, default=0, help="decode: cap on registers a thread (Triton's maxnreg)")
    ap.add_argument("--block", type=int, default=0, help="BLOCK_N (decode, skinny) or BLOCK_M = BLOCK_N (prefill)")
    ap.add_argument("--block-k", type=int, default=128, help="skinny: BLOCK_K")
    ap.add_argument("--group", type=int, default=2, help="decode / prefill: query heads per KV head")
    ap.add_argument("--heavy-first", type=int, default=0, help="prefill: query tiles last to first")
    ap.add_argument("--asm-widen", type=int, default=1, help="decode over fp8: 1 widens by e4m3_to_f16, 0 by Triton")
    ap.add_argument("--pin-v", type=int, default=1,
                    help="decode over fp8 with --asm-widen, mla over fp8: 1 widens V (c_kv) as loaded")
    ap.add_argument("--v-by-warp", type=int, default=0,
                    help="decode over fp8: 1 reorders V's columns for the P V dot (decode_attention.v_by_warp)")
    ap.add_argument("--rope", action="store_true", help="skinny: the qkv rotary + KV-store epilogue")
    ap.add_argument("--splits", type=int, default=1, help="skinny: programs a tile's K is split over")
    ap.add_argument("--f16-dots", type=int, default=0, help="mla over fp8: 1 runs the dots in fp16")
    ap.add_argument("--tile", choices=("small", "medium", "large"), default="medium",
                    help="moe: which fused_moe.CUDA_CONFIGS tile")
    ap.add_argument("--part", choices=("gate_up", "down"), default="gate_up", help="moe: which of its GEMMs")
    ap.add_argument("--weights", choices=("bf16", "fp8"), default="bf16", help="moe: the experts' dtype")
    ap.add_argument("--act", choices=("model", "fp8"), help="moe --weights fp8: the activations' dtype "
                    "(fused_moe's activations; default: fused_moe.DEFAULT_ACTIVATIONS)")
    ap.add_argument("--shared", action="store_true", help="moe: with a shared MLP's slices as more experts "
                    "(fused_moe's shared_w13 / shared_w2)")
    ap.add_argument("--swap", type=int, choices=(0, 1), help="moe with float8 activations below 64 rows: 1 computes "
                    "the products transposed, weights x rows; 0 as written (default: fused_moe.SWAP_AB)")
    ap.add_argument("--sass", type=Path, help="write the sm_90a SASS here and report its HMMA dependence")
    args = ap.parse_args()
    sys.path.insert(0, str(_REPO))
    kernels = {"decode": decode, "mla": mla, "prefill": prefill, "skinny": skinny, "moe": moe}
    ops, shared, ptx = kernels[args.kernel](args)
    for op, n in ops.items():
        print(f"{n:6d}  {op}")
    regs, spill = register_use(ptx)
    print(f"shared memory: {shared} bytes; {regs} registers a thread, {spill} bytes spilled; "
          f"{programs_per_sm(regs, args.warps or 4, shared)} programs an SM")
    if args.sass:
        sass = write_sass(ptx, args.sass)
        total, dependent, longest = mma_dependence(sass)
        print(f"SASS in {args.sass}: {total} HMMA, {dependent} waiting on the one just before, the longest run "
              f"{longest}")
        count, ops = main_loop(sass)
        print(f"main loop: {count} instructions a trip; " + ", ".join(f"{op} {n}" for op, n in ops.most_common(12)))


if __name__ == "__main__":
    main()

"""GPU sweep of fp8_linear's tiles (BLOCK_M, BLOCK_N, warps, stages) over dense projections with 128 x 128 float8
blocks, row count by row count, timed in CUDA graphs against bf16 cuBLAS on the same shape and against the memory
bound: the numbers behind fp8_linear.CUDA_CONFIGS and SWAP_AB.

usage (on a GPU machine, in the repo root, after `source tests/gpu/device_env.sh`):
  python tests/gpu/tune_fp8_linear.py [--shapes SUBSTRING] [--rows 1,16,...] [--tiles 'BM,BN,WARPS,STAGES;...']
                                      [--activations fp8,model] [--swap 0,1] [--jobs 8]
Each case prints its fastest settings and the default's: microseconds, the share of the memory bound (float8
weights + scales + x + y at the card's measured copy rate), GB/s, TFLOP/s, the speedup over bf16 cuBLAS and the
largest error against fp8_linear_ref relative to the output's peak (WRONG past ERR_LIMIT: a broken tile). A summary
ranks the settings per row count over the shapes.
"""

from __future__ import annotations

import argparse
import importlib
import math
import os
import statistics
import subprocess
import sys
import time
from typing import Callable

import torch
import torch.nn.functional as F

# The repo root (spmd_infer) and kernels/ as spmd_kernels come from device_env.sh's PYTHONPATH, as for tune_fused_moe.
try:
    from spmd_infer.bench.ceilings import measure_ceilings
    from spmd_kernels.block_fp8 import dequantize_blocks, quantize_blocks

    fl = importlib.import_module("spmd_kernels.fp8_linear")  # the module: the package re-exports a same-named function
except ImportError as e:
    sys.exit(f"tune_fp8_linear.py: {e}; run `source tests/gpu/device_env.sh` in the repo root first")
# sweep_tools: tests/gpu/, the script's own folder
from sweep_tools import relative_scores

BLOCK = (128, 128)  # every float8 release's weight block (DeepSeek-V3, Qwen3-*-FP8)
# name: (N out features, K in features), one GPU's whole projection
SHAPES = {
    "llama3-8b qkv": (6144, 4096), "llama3-8b o": (4096, 4096), "llama3-8b gate_up": (28672, 4096),
    "llama3-8b down": (4096, 14336),
    "qwen3-8b qkv": (6144, 4096), "qwen3-8b gate_up": (24576, 4096), "qwen3-8b down": (4096, 12288),
    "qwen3-0.6b qkv": (4096, 1024), "qwen3-0.6b gate_up": (6144, 1024), "qwen3-0.6b down": (1024, 3072),
}
ROWS = (1, 16, 32, 64, 256, 2048, 8192)
TILES = [(16, 64, 4, 6), (16, 128, 4, 4), (16, 64, 4, 8), (32, 64, 4, 5), (64, 64, 4, 4), (64, 128, 4, 4),
         (128, 128, 8, 3), (128, 128, 8, 4), (128, 128, 4, 4)]
# Weight copies cycled per timed pass add up to at least this many bytes, 5x the H100 / H200 L2 (50 MB): a model's
# layers never find their weights in L2, and Qwen3-0.6B's float8 qkv (4 MB) alone would sit there.
ROTATE_BYTES = 256 * 2**20
# A graph holds as many passes as fill about TARGET_MS and is replayed REPLAYS times (the median counts):
# do_bench_cudagraph (sweep_tools.time_in_graph) replays 10 x 30 ms a setting, ~5 minutes over the ~700 default
# cases, where a few ms already hold hundreds of launches of these 5 us - 3 ms kernels.
TARGET_MS, REPLAYS = 3.0, 7
# Largest |out - ref| / max |ref| taken as right: bf16 output rounding is 2^-9 of a value, a wrong tile is ~1.
ERR_LIMIT = 0.02
CUBLAS = "cublas"


def time_graph(fn: Callable[[], None]) -> float:
    """Median ms of one fn() over REPLAYS replays of a CUDA graph holding as many fn() calls as fill about
    TARGET_MS (one at least): launch overhead stays out, the kernels' own gaps stay in."""
    fn()  # compiles, and sizes the allocator's blocks
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(3):
        fn()
    end.record()
    end.synchronize()
    calls = max(1, math.ceil(TARGET_MS / (start.elapsed_time(end) / 3)))
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for _ in range(calls):
            fn()
    graph.replay()  # the first replay uploads the graph
    times = []
    for _ in range(REPLAYS):
        start.record()
        graph.replay()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / calls)
    graph.reset()  # frees its memory pool now, not at the next collection
    return statistics.median(times)


def max_error(out: torch.Tensor, ref: torch.Tensor) -> float:
    """Largest |out - ref| relative to the reference's peak magnitude."""
    ref = ref.float()
    return ((out.float() - ref).abs().max() / ref.abs().max().clamp_min(1e-30)).item()


def effective(tile: tuple, swap: bool, act: str) -> tuple[tuple, bool]:
    """(tile, swap) as fp8_linear runs them: BLOCK_N clipped to the weight block's rows, the product transposed
    only for float8 activations under 64 rows a tile. Settings that run alike are timed once."""
    bm, bn, warps, stages, *splits = tile  # a fifth value: programs a tile's K is split over (0: fp8_linear.split_k)
    return (bm, min(bn, BLOCK[0]), warps, stages, *(v for v in splits if v)), swap and act != "model" and bm < 64


def settings_for(rows: int, n: int, tiles: list[tuple], swaps: list[bool], default_swap: bool,
                 act: str) -> list[tuple]:
    """The distinct (tile, swap) settings to time at `rows` against a weight of n rows, the default's first."""
    default = effective(fl.fp8_linear_config(rows, torch.device("cuda"), n), default_swap, act)
    return list(dict.fromkeys([default] + [effective(t, s, act) for s in swaps for t in tiles]))


def run_setting(x: torch.Tensor, w: torch.Tensor, s: torch.Tensor, act: str, setting: tuple) -> torch.Tensor:
    """One fp8_linear call under this (tile, swap) setting (a tile's fifth value: its K split, else split_k's)."""
    tile, fl.SWAP_AB = setting  # SWAP_AB: read by fp8_linear at each call
    return fl.fp8_linear(x, w, s, BLOCK, activations=act, config=tile[:4], splits=tile[4] if len(tile) > 4 else None)


def compile_variants(shapes: list[tuple[int, int]], rows_list: list[int], tiles: list[tuple], acts: list[str],
                     swaps: list[bool], default_swap: bool) -> None:
    """Every setting launched once per shape and row count, untimed, so that Triton's on-disk cache holds each
    variant (tile, activation path, orientation, K split) the timing run will launch: a --compile-only worker."""
    dev = torch.device("cuda")
    for n, k in shapes:
        w, s = quantize_blocks(torch.randn(n, k, device=dev) * k**-0.5, BLOCK)
        for rows in rows_list:
            x = torch.randn(rows, k, device=dev).to(torch.bfloat16)
            for act in acts:
                for setting in settings_for(rows, n, tiles, swaps, default_swap, act):
                    try:
                        run_setting(x, w, s, act, setting)
                    except Exception:  # the timing run reports it
                        pass
    torch.cuda.synchronize()


def warm_compile_cache(shapes: list[tuple[int, int]], args: argparse.Namespace) -> None:
    """Compiles the sweep's variants in args.jobs processes at once, a share of the distinct shapes each, so that
    the timing run finds them in Triton's cache: one process compiling ~200 variants one after another (a tile,
    activation path, orientation and K split per shape, 0.5-1 s each) would take most of a device call's part."""
    distinct = list(dict.fromkeys(shapes))
    jobs = min(args.jobs, len(distinct))
    began = time.perf_counter()
    procs = [subprocess.Popen([sys.executable, __file__, "--compile-only", ";".join(f"{n},{k}" for n, k in share),
                               "--rows", args.rows, "--tiles", args.tiles, "--activations", args.activations,
                               "--swap", args.swap])
             for share in (distinct[i::jobs] for i in range(jobs))]
    failed = sum(p.wait() != 0 for p in procs)
    print(f"compiled in {time.perf_counter() - began:.0f} s by {jobs} processes"
          f"{f' ({failed} failed: the timing run compiles what they left)' if failed else ''}")


def describe(setting) -> str:
    return "bf16 cuBLAS" if setting == CUBLAS else f"tile={setting[0]} swap={int(setting[1])}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shapes", default="", help="only the shapes whose name contains this")
    ap.add_argument("--rows", default=",".join(map(str, ROWS)), help="comma-separated row (token) counts")
    ap.add_argument("--tiles", default="", help="tiles to sweep instead of TILES, e.g. '16,64,4,6;128,128,8,3;"
                    "16,64,4,6,1' (a fifth value: K split over that many programs a tile, 0 or none: split_k's)")
    ap.add_argument("--activations", default="fp8", help="comma-separated kinds (fp8, model) to sweep")
    ap.add_argument("--swap", default="", help="SWAP_AB values to sweep, e.g. '0,1' (default: the module's)")
    ap.add_argument("--jobs", type=int, default=min(8, max(1, (os.cpu_count() or 2) // 2)),
                    help="processes compiling the kernel variants before the timing run (0: it compiles them)")
    ap.add_argument("--compile-only", default="", help=argparse.SUPPRESS)  # 'N,K;N,K': a warm_compile_cache worker
    args = ap.parse_args()
    if not torch.cuda.is_available():
        sys.exit("tune_fp8_linear.py needs a CUDA GPU: run it on the device machine (tests/gpu/run_fp8_linear_tune.sh)")
    rows_list = [int(r) for r in args.rows.split(",") if r]
    tiles = [tuple(int(v) for v in t.split(",")) for t in args.tiles.split(";") if t] or TILES
    acts = [a for a in args.activations.split(",") if a]
    swaps = [bool(int(s)) for s in args.swap.split(",") if s] or [fl.SWAP_AB]
    default_swap = fl.SWAP_AB if fl.SWAP_AB in swaps else swaps[0]
    shapes = {name: nk for name, nk in SHAPES.items() if args.shapes in name}
    if args.compile_only:
        compile_variants([tuple(int(v) for v in nk.split(",")) for nk in args.compile_only.split(";")], rows_list,
                         tiles, acts, swaps, default_swap)
        return
    if args.jobs:
        warm_compile_cache(list(shapes.values()), args)

    dev = torch.device("cuda")
    ceil = measure_ceilings(dev, torch.bfloat16)
    bw = ceil.bandwidth_bytes_per_s
    print(f"{torch.cuda.get_device_name()}: copy {bw / 1e12:.2f} TB/s, bf16 matmul "
          f"{ceil.matmul_flops_per_s / 1e12:.0f} TFLOP/s; weight copies cycled up to {ROTATE_BYTES / 2**20:.0f} MiB; "
          f"fp8_linear defaults {fl.CUDA_CONFIGS}, SWAP_AB={int(fl.SWAP_AB)}")
    # times[(act, rows)][setting]: ms per shape, in shape order, for the summary
    times: dict[tuple[str, int], dict] = {}
    g = torch.Generator(device=dev).manual_seed(0)
    for name, (n, k) in shapes.items():
        began = time.perf_counter()
        w0, s0 = quantize_blocks(torch.randn(n, k, device=dev, generator=g) * k**-0.5, BLOCK)
        wb0 = dequantize_blocks(w0, s0, BLOCK).to(torch.bfloat16)  # the dequantized model, for cuBLAS
        # Copies of the same values: new addresses are what keeps them out of L2.
        fp8_copies = [(w0.clone(), s0.clone()) for _ in range(max(2, math.ceil(ROTATE_BYTES / w0.nbytes)))]
        bf16_copies = [wb0.clone() for _ in range(max(2, math.ceil(ROTATE_BYTES / wb0.nbytes)))]
        for rows in rows_list:
            x = torch.randn(rows, k, device=dev, generator=g).to(torch.bfloat16)
            flop = 2 * rows * n * k
            io_bytes = rows * k * x.element_size() + rows * n * x.element_size()  # x read, y written
            fp8_bytes = w0.nbytes + s0.nbytes + io_bytes
            bf16_bytes = wb0.nbytes + io_bytes
            refs = {a: fl.fp8_linear_ref(x, w0, s0, BLOCK, activations=a) for a in {"model", *acts}}

            def run_bf16():
                for wb in bf16_copies:
                    F.linear(x, wb)

            t_bf16 = time_graph(run_bf16) / len(bf16_copies)
            err_bf16 = max_error(F.linear(x, wb0), refs["model"])
            for act in acts:
                settings = settings_for(rows, n, tiles, swaps, default_swap, act)
                default = settings[0]
                case = times.setdefault((act, rows), {CUBLAS: []})
                case[CUBLAS].append(t_bf16)
                results = []
                for setting in settings:

                    def run():
                        for w, s in fp8_copies:
                            run_setting(x, w, s, act, setting)

                    try:
                        err = max_error(run_setting(x, w0, s0, act, setting), refs[act])
                        t = time_graph(run) / len(fp8_copies)
                    except Exception as e:  # out of shared memory or registers, or no compile: not a candidate
                        print(f"  {name} rows={rows} {act} {describe(setting)} failed: {type(e).__name__}: "
                              f"{str(e)[:100]}")
                        t, err = math.inf, math.nan
                    case.setdefault(setting, []).append(t)
                    results.append((t, setting, err))
                fl.SWAP_AB = default_swap
                print(f"\n{name} [{n}, {k}] rows={rows} activations {act}: bound {fp8_bytes / bw * 1e6:.1f} us "
                      f"({fp8_bytes / 1e6:.1f} MB), {flop / 1e9:.2f} GFLOP; bf16 cuBLAS {t_bf16 * 1e3:.1f} us, "
                      f"{bf16_bytes / bw / (t_bf16 * 1e-3):.0%} of its bound, err={err_bf16:.4f}")
                shown = sorted(r for r in results if r[0] < math.inf)[:4]
                for t, setting, err in shown + [r for r in results if r[1] == default and r not in shown]:
                    print(f"  {t * 1e3:8.1f} us  {fp8_bytes / bw / (t * 1e-3):6.1%} of bound  "
                          f"{fp8_bytes / (t * 1e-3) / 1e9:5.0f} GB/s  {flop / (t * 1e-3) / 1e12:6.1f} TFLOP/s  "
                          f"{t_bf16 / t:5.2f}x bf16  {describe(setting)}  err={err:.4f}"
                          f"{' WRONG' if not err <= ERR_LIMIT else ''}{' (default)' if setting == default else ''}")
        fp8_copies.clear()  # the next shape's copies in their place
        bf16_copies.clear()
        torch.cuda.empty_cache()
        # a shape's seconds, compiling included where --jobs 0 left it to this run: what sizes a device call's part
        print(f"({name}: {time.perf_counter() - began:.0f} s)")

    # Per row count, the settings by their geometric-mean time ratio to CUDA_CONFIGS' tile over the shapes, so that
    # no single large shape decides: which tile CUDA_CONFIGS should hold for that row limit (a wide weight's default,
    # WIDE_CUDA_CONFIGS, is marked in its shape's lines above).
    print(f"\nsummary over {len(shapes)} shapes: per row count, time relative to the default's (geometric mean); "
          f"bf16 cuBLAS's is the default's speedup over it")
    for (act, rows), case in times.items():
        default = effective(fl.fp8_linear_config(rows, dev), default_swap, act)
        if not all(math.isfinite(t) for t in case[default]):
            print(f"  {act} rows={rows}: the default {describe(default)} failed on a shape")
            continue
        score = relative_scores(case, default)
        best = sorted((s for s in score if s != CUBLAS), key=score.get)[:3]
        print(f"  {act} rows={rows:5d}: default {describe(default)} {score[CUBLAS]:.2f}x vs cuBLAS; best "
              + "; ".join(f"{score[s]:.3f} {describe(s)}" for s in best))


if __name__ == "__main__":
    main()

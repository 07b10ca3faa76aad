"""GPU sweep of skinny_gemm's tiles (BLOCK_N, BLOCK_K, warps, stages) over the decode-sized projections of the
bench presets, against cuBLAS (torch.matmul) and skinny_gemm_config's rule, in achieved weight bandwidth against the
card's copy rate: the numbers behind skinny_gemm_config and behind which shapes the engine hands to the kernel.

Timed inside CUDA graphs with COPIES weight copies cycled per call, so that no matrix is served from L2 (a model's
layers never are). Session 5's first run (H200, M = 1): Triton 14.7-15.4 us on Llama-3-8B's qkv against cuBLAS 15.7,
o 10.4-11.0 against 13.5, down 29.9-30.3 against 32.4, lm_head 236 against 248; session 4's CUDA-core version had lost
on every shape (56-62% of the copy rate). Inside the model the picture differs: see run_skinny_small.sh.

usage (on a GPU machine, in the repo root, after `source tests/gpu/device_env.sh`):
  python tests/gpu/tune_skinny_gemm.py
"""

from __future__ import annotations

import itertools

import torch

from spmd_infer.bench.ceilings import measure_ceilings
from spmd_kernels import skinny_gemm
from spmd_kernels.skinny_gemm import skinny_gemm_config
# sweep_tools: tests/gpu/, the script's own folder
from sweep_tools import print_best_rows, print_ranking, relative_scores, time_in_graph

# name: (N out features, K in features) of one rank's bf16 weight
SHAPES = {
    "llama8b qkv": (6144, 4096), "llama8b o": (4096, 4096), "llama8b gate_up": (28672, 4096),
    "llama8b down": (4096, 14336), "llama8b lm_head": (128256, 4096),
    "llama8b-tp2 qkv": (3072, 4096), "llama8b-tp2 o": (4096, 2048), "llama8b-tp2 gate_up": (14336, 4096),
    "llama8b-tp2 down": (4096, 7168),
    "qwen3-8b gate_up": (24576, 4096), "qwen3-8b down": (4096, 12288), "qwen3-8b lm_head": (151936, 4096),
    "qwen3-0.6b qkv": (4096, 1024), "qwen3-0.6b o": (1024, 2048), "qwen3-0.6b gate_up": (6144, 1024),
    "qwen3-0.6b down": (1024, 3072), "qwen3-0.6b lm_head": (151936, 1024),
    "dsv2-lite q": (3072, 2048), "dsv2-lite kv_a": (576, 2048), "dsv2-lite o": (2048, 2048),
}
CONFIGS = ([(n, k, 4, s) for n, k, s in itertools.product([32, 64, 128], [128, 256, 512], [3, 4, 5, 6])]
           + [(128, k, 8, s) for k, s in itertools.product([128, 256, 512], [3, 4, 5, 6])])
COPIES = 4
RULE, CUBLAS = "rule", "cublas"


def main() -> None:
    bw = measure_ceilings(torch.device("cuda"), torch.bfloat16).bandwidth_bytes_per_s
    print(f"{torch.cuda.get_device_name()}: copy rate {bw / 1e12:.2f} TB/s; {COPIES} weight copies cycled per call")
    settings = [CUBLAS, RULE] + CONFIGS
    times: dict[object, list[float]] = {s: [] for s in settings}
    for name, (n, k) in SHAPES.items():
        ws = [(torch.randn(n, k, device="cuda") * k**-0.5).to(torch.bfloat16) for _ in range(COPIES)]
        nbytes = n * k * 2
        for m in (1, 16):
            x = torch.randn(m, k, device="cuda", dtype=torch.bfloat16)
            ref = (x.double() @ ws[0].double().t()).float()  # as the GPU kernel test: an fp64 product
            out = torch.empty(m, n, device="cuda", dtype=torch.bfloat16)
            rows = []
            for s in settings if m == 1 else [CUBLAS, RULE]:
                if s == CUBLAS:
                    fn = lambda: [torch.matmul(x, w.t(), out=out) for w in ws]  # noqa: E731
                    err = lambda: 0.0  # noqa: E731
                else:
                    cfg = None if s == RULE else s
                    fn = lambda: [skinny_gemm(x, w, config=cfg) for w in ws]  # noqa: E731
                    err = lambda: (skinny_gemm(x, ws[0], config=cfg).float() - ref).abs().max().item()  # noqa: E731
                # a BLOCK_K that does not divide K cannot run: not a candidate for this shape
                runs = s in (CUBLAS, RULE) or k % s[1] == 0
                t, e = time_in_graph(f"{name} M={m} {s}", fn, err) if runs else (float("inf"), float("nan"))
                t /= COPIES
                rows.append((t, s, e))
                if m == 1:
                    times[s].append(t)
            print(f"\n{name} M={m}: [{n}, {k}], {nbytes / 1e6:.0f} MB; rule {skinny_gemm_config(n, k)}")
            print_best_rows(rows, RULE, lambda r: f"{r[0] * 1e3:7.1f} us  {nbytes / (r[0] * 1e-3) / bw:6.1%} of copy  "
                            f"{r[1]}  err={r[2]:.4f}", top=4)
            cub = next(r for r in rows if r[1] == CUBLAS)
            print(f"  cuBLAS {cub[0] * 1e3:7.1f} us  {nbytes / (cub[0] * 1e-3) / bw:6.1%} of copy")
    score = relative_scores(times, CUBLAS)
    print("\nM = 1, time relative to cuBLAS (geometric mean over the shapes):")
    print(f"  rule: {score[RULE]:.3f}")
    print_ranking(times, score, str, top=8)


if __name__ == "__main__":
    main()

"""GPU timing of decode attention over a float8 cache, widening K/V with cvt against moving bits
(decode_attention.FP8_BITS, kernels/fp8_widen.py), with a bf16 cache beside them: whether float8 decode stops being
bound by the widening (session 10: ~46% of the copy rate in float8 bytes with cvt, whatever V's layout).

usage (on a GPU machine, in the repo root, after `source tests/gpu/device_env.sh`):
  python tests/gpu/bench_fp8_widen.py
"""

from __future__ import annotations

import torch
import triton.testing

from spmd_infer.bench.ceilings import measure_ceilings
from spmd_kernels import decode_attention as da
from spmd_kernels import paged_decode_attention, paged_decode_attention_ref
# tests/gpu/, the script's own folder
from sweep_tools import time_in_graph
from tune_decode_attention import D, SHAPES, build

CONFIGS = [(128, 4, 3), (128, 4, 2), (64, 4, 3), (64, 4, 4), (128, 8, 2)]


def main() -> None:
    bw = measure_ceilings(torch.device("cuda"), torch.bfloat16).bandwidth_bytes_per_s
    print(f"{torch.cuda.get_device_name()}: copy rate {bw / 1e12:.2f} TB/s")
    default = (da.CUDA_CONFIG, da.FP8_BITS)
    for name, (batch, hq, hkv, lens) in SHAPES.items():
        q, k, v, bt, ctx, kv_bytes = build(batch, hq, hkv, lens, kv_dtype=torch.float8_e4m3fn)
        ref = paged_decode_attention_ref(q.float(), k.float(), v.float(), bt, ctx, D**-0.5)
        out = torch.empty_like(q)
        q16, k16, v16 = build(batch, hq, hkv, lens)[:3]
        bf16 = triton.testing.do_bench_cudagraph(
            lambda: paged_decode_attention(q16, k16, v16, bt, ctx, D**-0.5, out=torch.empty_like(q16)), rep=30)
        rows = []
        for bits in (False, True):
            for config in CONFIGS:
                da.CUDA_CONFIG, da.FP8_BITS = config, bits
                fn = lambda: paged_decode_attention(q, k, v, bt, ctx, D**-0.5, out=out)  # noqa: E731
                t, err = time_in_graph(f"{name} {config} bits={bits}", fn,
                                       lambda: (out.float() - ref).abs().max().item())
                rows.append((t, (config, bits), err))
        da.CUDA_CONFIG, da.FP8_BITS = default
        print(f"\n{name}: {kv_bytes / 1e9:.3f} GB of float8 KV per layer; bf16 cache (default config) "
              f"{bf16 * 1e3:.1f} us")
        for t, (config, bits), err in sorted(rows)[:5] + [r for r in rows if r[1] == (default[0], False)]:
            print(f"  {t * 1e3:8.1f} us  {kv_bytes / (t * 1e-3) / bw:6.1%} of copy  config={config} "
                  f"{'bits' if bits else 'cvt '} err={err:.4f}")


if __name__ == "__main__":
    main()

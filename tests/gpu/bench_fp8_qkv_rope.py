"""Times Llama-3-8B's float8 qkv projection at decode alone and with the rope-and-store epilogue
(fp8_qkv_rope_store), by rows and split-K, weights rotated over copies larger than L2; prints each compiled
variant's registers and spills (session 20: the epilogue made bs64 decode slower end to end)."""

import torch

from spmd_kernels import build_cos_sin_cache
from spmd_kernels.block_fp8 import quantize_blocks
from spmd_kernels.fp8_linear import _fp8_linear_kernel, fp8_linear
from spmd_kernels.qkv_epilogue import RopeStore
from spmd_kernels.qkv_rope_store import fp8_qkv_rope_store
from spmd_kernels.rotary_store_kv import rotary_store_kv

HQ, HKV, D, K, COPIES = 32, 8, 128, 4096, 4


def timed(fn, calls=40, replays=20):
    """Microseconds a call, from a CUDA graph of `calls` calls over the weight copies (no host time in it)."""
    for i in range(COPIES):  # compile and warm outside the capture
        fn(i)
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for i in range(calls):
            fn(i % COPIES)
    graph.replay()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(replays):
        graph.replay()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) * 1000 / (calls * replays)


def _then_rotary(qkv, rope):
    """The unfused path: the projection, then rotary_store_kv over its q, k and v views."""
    q, k, v = qkv.split([HQ * D, HKV * D, HKV * D], dim=-1)
    rotary_store_kv(q.view(-1, HQ, D), k.view(-1, HKV, D), v.view(-1, HKV, D), rope.positions, rope.cos_sin, True,
                    rope.k_cache, rope.v_cache, rope.slot_mapping)


def main():
    dev = torch.device("cuda")
    n = (HQ + 2 * HKV) * D
    weights = [quantize_blocks(torch.randn(n, K, device=dev) * K**-0.5, (128, 128)) for _ in range(COPIES)]
    inv_freq = 1.0 / (500000 ** (torch.arange(0, D, 2, dtype=torch.float32, device=dev) / D))
    cos_sin = build_cos_sin_cache(inv_freq, 4096).to(dev)
    caches = [torch.zeros(2048, 16, HKV, D, dtype=torch.bfloat16, device=dev) for _ in range(2)]
    for m in (1, 16, 64):
        x = torch.randn(m, K, dtype=torch.bfloat16, device=dev)
        rope = RopeStore(torch.arange(m, device=dev) + 1000, cos_sin, torch.arange(m, device=dev) * 16, *caches,
                         HQ, HKV, D)
        for splits in (None, 1):
            plain = timed(lambda i: fp8_linear(x, *weights[i], (128, 128), splits=splits))
            fused = timed(lambda i: fp8_qkv_rope_store(x, *weights[i], (128, 128), None, rope, splits=splits))
            apart = timed(lambda i: _then_rotary(fp8_linear(x, *weights[i], (128, 128), splits=splits), rope))
            print(f"rows {m:3d} splits {splits}: plain {plain:6.1f} us, then rotary_store_kv {apart:6.1f} us, "
                  f"rope epilogue {fused:6.1f} us")
    for cache in _fp8_linear_kernel.device_caches.values():
        for key, compiled in cache[0].items():
            meta = compiled.metadata
            print(f"variant regs {compiled.n_regs} spills {compiled.n_spills} warps {meta.num_warps} "
                  f"stages {meta.num_stages} shared {meta.shared} {str(key)[-160:]}")


if __name__ == "__main__":
    main()

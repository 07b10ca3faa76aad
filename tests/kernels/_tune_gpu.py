import itertools, sys, torch, triton
sys.path.insert(0, "tests/kernels")
import conftest  # noqa
from conftest import make_paged_kv
import spmd_kernels.decode_attention as da
import spmd_kernels.prefill_attention as pa

dev, dt = "cuda", torch.bfloat16
bench = lambda fn: triton.testing.do_bench(fn, warmup=10, rep=40)
what = sys.argv[1]
if what == "decode":
    shapes = []
    for B, L in [(1, 8192), (8, 4096), (64, 2048), (256, 1024)]:
        lens = [L] * B
        kc, vc, bt = make_paged_kv(lens, 8, 128, dt, dev)
        q = torch.randn(B, 32, 128, dtype=dt, device=dev)
        shapes.append((q, kc, vc, bt, torch.tensor(lens, dtype=torch.int32, device=dev)))
    res = []
    for cfg in itertools.product([32, 64, 128], [4, 8], [2, 3, 4]):
        da.CUDA_CONFIG = cfg
        for waves, mint in [(2, 256), (4, 256), (4, 128), (8, 128)]:
            da.SPLIT_WAVES, da.MIN_SPLIT_TOKENS = waves, mint
            try:
                ts = [bench(lambda: da.paged_decode_attention(*s[:5], 0.088)) * 1e3 for s in shapes]
            except Exception as e:
                print(cfg, "fail", type(e).__name__); break
            res.append((sum(ts), cfg, waves, mint, [round(t) for t in ts]))
    res.sort()
    for r in res[:12]: print(r)
    print("baseline", [r for r in res if r[1] == (32, 4, 2) and r[2] == 2])
else:
    D = int(sys.argv[2])
    shapes = []
    for S, L in [(1, 4096), (8, 1024), (4, 512)]:
        lens = [L] * S
        kc, vc, bt = make_paged_kv(lens, 8, D, dt, dev)
        q = torch.randn(S * L, 32, D, dtype=dt, device=dev)
        cu = torch.arange(0, S + 1, dtype=torch.int32, device=dev) * L
        shapes.append((q, kc, vc, cu, torch.tensor(lens, dtype=torch.int32, device=dev), bt, L))
    res = []
    for cfg in itertools.product([64, 128], [32, 64, 128], [4, 8], [2, 3]):
        pa.CUDA_CONFIGS[(D <= 64, 2)] = cfg
        try:
            ts = [bench(lambda: pa.paged_prefill_attention(*s[:6], 0.088, max_seqlen_q=s[6])) * 1e3 for s in shapes]
        except Exception as e:
            print(cfg, "fail", type(e).__name__); continue
        res.append((sum(ts), cfg, [round(t) for t in ts]))
    res.sort()
    for r in res[:8]: print(r)
    print("baseline", [r for r in res if r[1] == (64, 64, 4, 2)])

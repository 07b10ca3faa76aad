import sys, torch, triton
sys.path.insert(0, "tests/kernels")
import conftest  # noqa  registers spmd_kernels
from conftest import make_paged_kv
from spmd_kernels import *
import torch.nn.functional as F

dev, dt = "cuda", torch.bfloat16
def bench(fn):
    return triton.testing.do_bench(fn, warmup=25, rep=100)

# decode
for B, ctx_len in [(1, 8192), (8, 4096), (64, 2048), (256, 1024)]:
    Hq, Hkv, D = 32, 8, 128
    lens = [ctx_len] * B
    kc, vc, bt = make_paged_kv(lens, Hkv, D, dt, dev)
    q = torch.randn(B, Hq, D, dtype=dt, device=dev)
    ctx = torch.tensor(lens, dtype=torch.int32, device=dev)
    out = paged_decode_attention(q, kc, vc, bt, ctx, D**-0.5)
    if B <= 8:
        ref = paged_decode_attention_ref(q, kc, vc, bt, ctx, D**-0.5)
        err = (out.float() - ref.float()).abs().max().item()
    else:
        err = float("nan")
    ms = bench(lambda: paged_decode_attention(q, kc, vc, bt, ctx, D**-0.5))
    gb = 2 * B * ctx_len * Hkv * D * 2 / 1e9
    ns = choose_num_splits(B, Hkv, bt.shape[1] * 16, q.device)
    print(f"decode B={B} ctx={ctx_len} splits={ns} {ms*1e3:.1f} us {gb/ms*1e3:.0f} GB/s maxerr={err:.2e}")

# prefill vs SDPA (flash) on contiguous
for S, L in [(1, 4096), (8, 1024)]:
    Hq, Hkv, D = 32, 8, 128
    lens = [L] * S
    kc, vc, bt = make_paged_kv(lens, Hkv, D, dt, dev)
    q = torch.randn(S * L, Hq, D, dtype=dt, device=dev)
    cu = torch.arange(0, S + 1, dtype=torch.int32, device=dev) * L
    ctx = torch.tensor(lens, dtype=torch.int32, device=dev)
    out = paged_prefill_attention(q, kc, vc, cu, ctx, bt, D**-0.5, max_seqlen_q=L)
    ref = paged_prefill_attention_ref(q, kc, vc, cu, ctx, bt, D**-0.5)
    err = (out.float() - ref.float()).abs().max().item()
    ms = bench(lambda: paged_prefill_attention(q, kc, vc, cu, ctx, bt, D**-0.5, max_seqlen_q=L))
    qs = q.view(S, L, Hq, D).transpose(1, 2)
    ks = torch.randn(S, Hkv, L, D, dtype=dt, device=dev)
    ms2 = bench(lambda: F.scaled_dot_product_attention(qs, ks, ks, is_causal=True, enable_gqa=True))
    fl = 4 * S * L * L * Hq * D / 2
    print(f"prefill S={S} L={L} {ms:.3f} ms ({fl/ms/1e9:.0f} TFLOPs) sdpa {ms2:.3f} ms maxerr={err:.2e}")

x = torch.randn(4096, 8192, dtype=dt, device=dev); w = torch.randn(8192, dtype=dt, device=dev)
ms = bench(lambda: rms_norm(x, w, 1e-6, residual=x)); print(f"rmsnorm+res 4096x8192 {ms*1e3:.0f} us {4*x.numel()*2/ms/1e6:.0f} GB/s")
x = torch.randn(4096, 2 * 14336, dtype=dt, device=dev)
ms = bench(lambda: silu_and_mul(x)); print(f"silu_and_mul {ms*1e3:.0f} us {1.5*x.numel()*2/ms/1e6:.0f} GB/s")

import pytest
import torch

from spmd_kernels import paged_prefill_attention, paged_prefill_attention_ref

# (q_len, context_len): full prefill, cached prefix, prefill chunk, single token, empty
SEQS = [(17, 17), (5, 37), (16, 40), (1, 23), (0, 9), (3, 3)]


def _run(paged_kv, seqs, Hq, Hkv, D, dtype, device, max_seqlen_q=None, block_size=16, DV=None, strided_v=False,
         **launch):
    """Kernel and reference over random paged K/V; V is D wide, or DV wide (MLA: narrower than q/k)."""
    q_lens = [s[0] for s in seqs]
    context_lens = [s[1] for s in seqs]
    k_cache, v_cache, block_tables = paged_kv(context_lens, Hkv, D, dtype, device, block_size=block_size)
    if strided_v:
        # V as MLA makes it: the tail of a wider per-head projection output (last dim contiguous).
        kv = torch.randn(*k_cache.shape[:3], 40 + DV, dtype=dtype, device=device)
        v_cache = kv[..., 40:]
    elif DV is not None:
        v_cache = torch.randn(*k_cache.shape[:3], DV, dtype=dtype, device=device)
    cu = torch.tensor([0] + q_lens, dtype=torch.int32).cumsum(0).to(torch.int32).to(device)
    q = torch.randn(sum(q_lens), Hq, D, dtype=dtype, device=device)
    ctx = torch.tensor(context_lens, dtype=torch.int32, device=device)
    scale = D**-0.5
    out = paged_prefill_attention(q, k_cache, v_cache, cu, ctx, block_tables, scale, max_seqlen_q=max_seqlen_q,
                                  **launch)
    ref = paged_prefill_attention_ref(q, k_cache, v_cache, cu, ctx, block_tables, scale)
    assert out.shape == ref.shape == (sum(q_lens), Hq, DV or D)
    return out, ref


@pytest.mark.parametrize("D", [64, 128])
@pytest.mark.parametrize("Hq,Hkv", [(2, 2), (4, 2), (4, 1)])
def test_paged_prefill_attention(D, Hq, Hkv, dtype, device, assert_close, paged_kv):
    out, ref = _run(paged_kv, SEQS, Hq, Hkv, D, dtype, device)
    assert out.dtype == dtype
    assert_close(out, ref)


# The tuning knobs (tests/gpu/tune_prefill_attention.py): other tiles, and query tiles launched last to first, over
# sequences of several query tiles each (the interpreter's default BLOCK_M is 16).
@pytest.mark.parametrize("config", [None, (32, 16, 4, 2), (16, 32, 2, 1)])
@pytest.mark.parametrize("heavy_first", [False, True])
def test_paged_prefill_attention_tuning_knobs(config, heavy_first, dtype, device, assert_close, paged_kv):
    out, ref = _run(paged_kv, [(40, 40), (7, 50), (33, 70), (0, 4)], 4, 2, 64, dtype, device, config=config,
                    heavy_first=heavy_first)
    assert_close(out, ref)


def test_paged_prefill_attention_given_max_seqlen(dtype, device, assert_close, paged_kv):
    out, ref = _run(paged_kv, [(20, 50), (2, 2)], 2, 1, 64, dtype, device, max_seqlen_q=20)
    assert_close(out, ref)


@pytest.mark.parametrize("block_size", [8, 32])
def test_paged_prefill_attention_other_block_sizes(block_size, dtype, device, assert_close, paged_kv):
    out, ref = _run(paged_kv, [(9, 30), (12, 12)], 2, 1, 64, dtype, device, block_size=block_size)
    assert_close(out, ref)


def test_paged_prefill_attention_empty(dtype, device, paged_kv):
    out, ref = _run(paged_kv, [(0, 5)], 2, 2, 64, dtype, device)
    assert out.shape == (0, 2, 64) and ref.shape == (0, 2, 64)


def test_ref_matches_causal_sdpa(device, paged_kv):
    # Full prefill: the reference equals torch's causal attention.
    n, H, D = 19, 2, 64
    k_cache, v_cache, bt = paged_kv([n], H, D, torch.float32, device)
    q = torch.randn(n, H, D, device=device)
    cu = torch.tensor([0, n], dtype=torch.int32, device=device)
    ctx = torch.tensor([n], dtype=torch.int32, device=device)
    ref = paged_prefill_attention_ref(q, k_cache, v_cache, cu, ctx, bt, D**-0.5)
    k = k_cache[bt[0, :2].long()].flatten(0, 1)[:n].transpose(0, 1)
    v = v_cache[bt[0, :2].long()].flatten(0, 1)[:n].transpose(0, 1)
    sdpa = torch.nn.functional.scaled_dot_product_attention(q.transpose(0, 1), k, v, is_causal=True)
    torch.testing.assert_close(ref, sdpa.transpose(0, 1), atol=1e-5, rtol=1e-5)


# ---- V head dim != Q/K head dim (DeepSeek MLA expanded: q/k = nope ++ rope, v narrower) --------------


@pytest.mark.parametrize("D,DV", [(64, 32), (48, 32), (32, 64), (192, 128)])
@pytest.mark.parametrize("Hq,Hkv", [(2, 2), (4, 1)])
def test_paged_prefill_attention_other_v_dim(D, DV, Hq, Hkv, dtype, device, assert_close, paged_kv):
    # SEQS: full prefill, cached prefixes, a chunk, one token, a zero-length sequence, a tiny one.
    out, ref = _run(paged_kv, SEQS, Hq, Hkv, D, dtype, device, DV=DV)
    assert out.dtype == dtype
    assert_close(out, ref)


@pytest.mark.parametrize("block_size", [1, 8, 16])
def test_paged_prefill_attention_mla_shapes(block_size, dtype, device, assert_close, paged_kv):
    # MLA-like: every head its own K/V (Hq == Hkv), q/k 192 wide (masked to 256), V a strided view, 128
    # wide; cached prefixes and several sequences, two of them empty. block_size 1 is the packed-token
    # layout of MLA's no-cache path.
    seqs = [(0, 4), (7, 30), (0, 0), (19, 19), (1, 45)]
    out, ref = _run(paged_kv, seqs, 2, 2, 192, dtype, device, max_seqlen_q=19, block_size=block_size, DV=128,
                    strided_v=True)
    assert_close(out, ref)


def test_paged_prefill_attention_other_v_dim_out_buffer(dtype, device, assert_close, paged_kv):
    # `out` given: a row slice of a larger buffer is written, the rest left alone.
    seqs = [(5, 21), (3, 3)]
    k_cache, _, bt = paged_kv([21, 3], 2, 64, dtype, device)
    v_cache = torch.randn(*k_cache.shape[:3], 32, dtype=dtype, device=device)
    cu = torch.tensor([0, 5, 8], dtype=torch.int32, device=device)
    ctx = torch.tensor([s[1] for s in seqs], dtype=torch.int32, device=device)
    q = torch.randn(8, 2, 64, dtype=dtype, device=device)
    buf = torch.zeros(10, 2, 32, dtype=dtype, device=device)
    res = paged_prefill_attention(q, k_cache, v_cache, cu, ctx, bt, 0.125, max_seqlen_q=5, out=buf[1:9])
    assert res.data_ptr() == buf[1:9].data_ptr()
    assert_close(buf[1:9], paged_prefill_attention_ref(q, k_cache, v_cache, cu, ctx, bt, 0.125))
    assert not buf[0].any() and not buf[9].any()


def test_paged_prefill_attention_other_v_dim_empty(dtype, device, paged_kv):
    out, ref = _run(paged_kv, [(0, 5)], 2, 2, 64, dtype, device, DV=32)
    assert out.shape == ref.shape == (0, 2, 32)

import pytest
import torch

from spmd_kernels import mla_decode, mla_decode_ref


def _inputs(context_lens, H, L, R, dtype, device, paged_kv, block_size=16):
    cache, _, block_tables = paged_kv(context_lens, 1, L + R, dtype, device, block_size=block_size)
    q_latent = torch.randn(len(context_lens), H, L, dtype=dtype, device=device)
    q_pe = torch.randn(len(context_lens), H, R, dtype=dtype, device=device)
    ctx = torch.tensor(context_lens, dtype=torch.int32, device=device)
    return q_latent, q_pe, cache, block_tables, ctx


@pytest.mark.parametrize("H,L,R", [(4, 32, 16), (20, 48, 8)])
@pytest.mark.parametrize("num_splits", [1, 3, None])
def test_mla_decode(H, L, R, num_splits, dtype, device, assert_close, paged_kv):
    context_lens = [1, 17, 45]
    q_latent, q_pe, cache, bt, ctx = _inputs(context_lens, H, L, R, dtype, device, paged_kv)
    scale = (L + R) ** -0.5
    out = mla_decode(q_latent, q_pe, cache, bt, ctx, scale, num_splits=num_splits)
    assert out.shape == (3, H, L) and out.dtype == dtype
    assert_close(out, mla_decode_ref(q_latent, q_pe, cache, bt, ctx, scale))


@pytest.mark.parametrize("num_splits", [1, 4])
def test_mla_decode_realistic(num_splits, dtype, device, assert_close, paged_kv):
    # DeepSeek-V2/V3 sizes (kv_lora_rank 512, rope 64), 16 heads per rank, short contexts.
    context_lens = [5, 38]
    q_latent, q_pe, cache, bt, ctx = _inputs(context_lens, 16, 512, 64, dtype, device, paged_kv, block_size=32)
    scale = 192**-0.5
    out = mla_decode(q_latent, q_pe, cache, bt, ctx, scale, num_splits=num_splits)
    assert_close(out, mla_decode_ref(q_latent, q_pe, cache, bt, ctx, scale))


@pytest.mark.parametrize("num_splits", [1, 2])
def test_mla_decode_when_a_later_key_dominates(num_splits, dtype, device, assert_close, paged_kv):
    # A key late in the sequence whose score beats every earlier one by far (by 2^200 in head 0): the running maximum
    # must move and the accumulators be rescaled then (a kernel that moved it lazily, only on large jumps, was
    # timed in session 14 and dropped; unmoved, the weights would overflow even fp32).
    context_lens = [100, 37]
    L = 32
    q_latent, q_pe, cache, bt, ctx = _inputs(context_lens, 4, L, 16, dtype, device, paged_kv)
    for b, pos in ((0, 90), (1, 30)):
        block, slot = bt[b, pos // 16], pos % 16
        cache[block, slot, 0, :L] = 30 * q_latent[b, 0]
    out = mla_decode(q_latent, q_pe, cache, bt, ctx, (L + 16) ** -0.5, num_splits=num_splits)
    assert_close(out, mla_decode_ref(q_latent, q_pe, cache, bt, ctx, (L + 16) ** -0.5))


@pytest.mark.parametrize("num_splits", [2, 8])
def test_mla_decode_many_splits(num_splits, dtype, device, assert_close, paged_kv):
    # More splits than tiles for the short sequences: empty splits must not poison the reduction.
    context_lens = [3, 70, 33, 16]
    q_latent, q_pe, cache, bt, ctx = _inputs(context_lens, 2, 32, 16, dtype, device, paged_kv, block_size=8)
    out = mla_decode(q_latent, q_pe, cache, bt, ctx, 0.2, num_splits=num_splits)
    assert_close(out, mla_decode_ref(q_latent, q_pe, cache, bt, ctx, 0.2))


@pytest.mark.parametrize("num_splits", [1, 3])
def test_mla_decode_in_a_given_program_order(num_splits, dtype, device, assert_close, paged_kv):
    # As paged_decode_attention: a one-split launch starts its rows' programs in `order` (longest context first);
    # each row's output is its own whatever the order, and launches of more splits ignore it.
    context_lens = [5, 70, 33, 16, 70]
    q_latent, q_pe, cache, bt, ctx = _inputs(context_lens, 4, 32, 16, dtype, device, paged_kv)
    order = torch.argsort(ctx, descending=True, stable=True).int()
    out = mla_decode(q_latent, q_pe, cache, bt, ctx, 0.2, num_splits=num_splits, order=order)
    assert_close(out, mla_decode_ref(q_latent, q_pe, cache, bt, ctx, 0.2))


def test_mla_decode_empty_batch(dtype, device, paged_kv):
    _, q_pe, cache, _, _ = _inputs([5], 4, 32, 16, dtype, device, paged_kv)
    q_latent = torch.empty(0, 4, 32, dtype=dtype, device=device)
    out = mla_decode(q_latent, q_pe[:0], cache, torch.empty(0, 4, dtype=torch.int32, device=device),
                     torch.empty(0, dtype=torch.int32, device=device), 0.1)
    assert out.shape == (0, 4, 32)


def test_mla_decode_out_arg(device, paged_kv):
    q_latent, q_pe, cache, bt, ctx = _inputs([20, 9], 4, 32, 16, torch.float32, device, paged_kv)
    out = torch.full_like(q_latent, float("nan"))
    res = mla_decode(q_latent, q_pe, cache, bt, ctx, 0.15, num_splits=2, out=out)
    assert res is out
    torch.testing.assert_close(out, mla_decode_ref(q_latent, q_pe, cache, bt, ctx, 0.15), atol=1e-4, rtol=1e-4)


def test_ref_matches_unabsorbed_mla(device, paged_kv):
    # The absorbed form equals ordinary MLA attention: k = [c_kv W_UK, k_pe], v = c_kv W_UV, with
    # q_latent = q_nope W_UK (per head) and the output projected back through W_UV.
    n, H, L, R, Dn, Dv = 29, 3, 32, 16, 24, 20
    _, q_pe, cache, bt, ctx = _inputs([n], H, L, R, torch.float32, device, paged_kv)
    w_uk = torch.randn(H, Dn, L, dtype=torch.float32, device=device) * L**-0.5
    w_uv = torch.randn(H, Dv, L, dtype=torch.float32, device=device) * L**-0.5
    q_nope = torch.randn(1, H, Dn, dtype=torch.float32, device=device)
    scale = (Dn + R) ** -0.5
    q_latent = torch.einsum("bhd,hdl->bhl", q_nope, w_uk)
    out = torch.einsum("bhl,hvl->bhv", mla_decode_ref(q_latent, q_pe, cache, bt, ctx, scale), w_uv)
    tokens = cache[bt[0, :2].long()].flatten(0, 1)[:n, 0]  # [n, L + R]
    c_kv, k_pe = tokens[:, :L], tokens[:, L:]
    k = torch.cat([torch.einsum("nl,hdl->hnd", c_kv, w_uk), k_pe.expand(H, n, R)], dim=-1)
    v = torch.einsum("nl,hvl->hnv", c_kv, w_uv)
    q = torch.cat([q_nope[0], q_pe[0]], dim=-1)[:, None]  # [H, 1, Dn + R]
    sdpa = torch.nn.functional.scaled_dot_product_attention(q, k, v, scale=scale)[:, 0]
    torch.testing.assert_close(out[0], sdpa, atol=1e-5, rtol=1e-5)

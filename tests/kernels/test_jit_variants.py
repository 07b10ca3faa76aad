"""Shapes that change from step to step (block-table width, split count, routed rows, batch size) reuse one compiled
variant per kernel, so nothing compiles mid-run after warmup. Needs CUDA: the interpreter compiles nothing."""

import pytest
import torch

from spmd_kernels import (fused_moe, greedy_argmax, gumbel_sample, mla_decode, paged_decode_attention,
                          paged_prefill_attention)
from spmd_kernels.decode_attention import _decode_reduce_kernel, _decode_split_kernel
from spmd_kernels.fused_moe import _moe_down_kernel, _moe_gate_up_kernel
from spmd_kernels.jit_variants import compiled_variants, variants_of
from spmd_kernels.mla_decode import _mla_decode_split_kernel
from spmd_kernels.prefill_attention import _prefill_kernel
from spmd_kernels.sampling import _gumbel_argmax_kernel

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="compiled variants exist on CUDA only")
DT = torch.bfloat16


def _added(kernels, calls):
    """Variants the kernels gained over calls[1:], after calls[0] compiled the first one."""
    calls[0]()
    before = [variants_of(k) for k in kernels]
    for call in calls[1:]:
        call()
    torch.cuda.synchronize()
    return [variants_of(k) - b for k, b in zip(kernels, before)]


def test_decode_attention_one_variant_for_any_width_and_split_count(paged_kv):
    def call(context_lens, splits, extra_cols):
        k, v, bt = paged_kv(context_lens, 2, 128, DT, "cuda")
        bt = torch.cat([bt, bt.new_zeros(bt.shape[0], extra_cols)], dim=1)  # widths 1, 16, odd...
        q = torch.randn(len(context_lens), 8, 128, dtype=DT, device="cuda")
        ctx = torch.tensor(context_lens, dtype=torch.int32, device="cuda")
        return lambda: paged_decode_attention(q, k, v, bt, ctx, 0.1, num_splits=splits)

    # Split counts with the same power-of-two ceiling (5..8) share the reduction's variant too.
    calls = [call([40, 7], 5, 0), call([200], 6, 13), call([3, 90, 17], 7, 1), call([33], 8, 30)]
    assert _added([_decode_split_kernel, _decode_reduce_kernel], calls) == [0, 0]


def test_mla_decode_one_variant_for_any_width_and_split_count(paged_kv):
    def call(context_lens, splits):
        cache, _, bt = paged_kv(context_lens, 1, 576, DT, "cuda")
        B = len(context_lens)
        ql = torch.randn(B, 16, 512, dtype=DT, device="cuda")
        qpe = torch.randn(B, 16, 64, dtype=DT, device="cuda")
        ctx = torch.tensor(context_lens, dtype=torch.int32, device="cuda")
        return lambda: mla_decode(ql, qpe, cache, bt, ctx, 0.1, num_splits=splits)

    calls = [call([40, 7], 3), call([300], 4), call([5, 64, 19], 2)]
    assert _added([_mla_decode_split_kernel], calls) == [0]


def test_prefill_attention_one_variant_for_any_width(paged_kv):
    def call(seqs):  # (new tokens, cached prefix) per sequence
        ctx_lens = [n + p for n, p in seqs]
        k, v, bt = paged_kv(ctx_lens, 2, 128, DT, "cuda")
        q = torch.randn(sum(n for n, _ in seqs), 8, 128, dtype=DT, device="cuda")
        cu = torch.tensor([0] + list(torch.tensor([n for n, _ in seqs]).cumsum(0)), dtype=torch.int32, device="cuda")
        ctx = torch.tensor(ctx_lens, dtype=torch.int32, device="cuda")
        return lambda: paged_prefill_attention(q, k, v, cu, ctx, bt, 0.1)

    calls = [call([(40, 0), (7, 9)]), call([(300, 0)]), call([(5, 250), (64, 0), (19, 3)])]
    assert _added([_prefill_kernel], calls) == [0]


def test_fused_moe_one_variant_per_tile_config():
    E, H, inter, k = 8, 256, 128, 2
    w13 = torch.randn(E, 2 * inter, H, dtype=DT, device="cuda") * H**-0.5
    w2 = torch.randn(E, H, inter, dtype=DT, device="cuda") * inter**-0.5

    def call(T):
        x = torch.randn(T, H, dtype=DT, device="cuda")
        ids = torch.rand(T, E, device="cuda").argsort(dim=1)[:, :k]
        w = torch.rand(T, k, device="cuda")
        return lambda: fused_moe(x, w13, w2, w, ids)

    # 3, 7, 13 and 16 tokens all take the small-tile config (<= 4 routed rows per expert).
    calls = [call(3), call(7), call(13), call(16)]
    assert _added([_moe_gate_up_kernel, _moe_down_kernel], calls) == [0, 0]


@pytest.mark.parametrize("greedy", [True, False])
def test_sampling_one_variant_for_any_batch_size(greedy):
    # The vocabulary's chunk count follows the batch size (32 chunks at 1 row, 5 at 64 for a 128k vocabulary);
    # session 8's benchmark caught a compile in a timed decode case when it was a compile-time constant.
    def call(S):
        logits = torch.randn(S, 128256, dtype=DT, device="cuda")
        temperature = torch.full((S,), 0.7, device="cuda")
        streams = torch.arange(S, dtype=torch.int64, device="cuda")
        return (lambda: greedy_argmax(logits)) if greedy else (lambda: gumbel_sample(logits, temperature, streams))

    calls = [call(1), call(3), call(16), call(64), call(200)]
    assert _added([_gumbel_argmax_kernel], calls) == [0]


def test_compiled_variants_counts_our_kernels():
    from spmd_kernels import rms_norm
    from spmd_kernels.rmsnorm import _rms_norm_kernel

    x = torch.randn(3, 1000, dtype=DT, device="cuda")
    rms_norm(x, torch.ones(1000, dtype=DT, device="cuda"), 1e-6)
    counts = compiled_variants()
    assert counts["_rms_norm_kernel"] == variants_of(_rms_norm_kernel) > 0
    assert all(n > 0 for n in counts.values())

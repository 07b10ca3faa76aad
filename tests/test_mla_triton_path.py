"""LatentAttention's Triton path equals its torch path in cached prefill, decode and warmup.

Both paths get the same inputs and the same NaN-filled latent cache (unwritten slots must never leak into
an output); the reference runs on the CPU in fp32. On CUDA the kernel path runs in fp32 and bf16 (and a
graphed decode); without CUDA it runs in Triton's interpreter in fp32 (bf16 dots are wrong there).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from spmd_infer.engine.batch_inputs import longest_first
from spmd_infer.forward_batch import ForwardBatch
from spmd_infer.layers import mla
from spmd_infer.layers.mla import LatentAttention

CUDA = torch.cuda.is_available()
needs_cuda = pytest.mark.skipif(not CUDA, reason="needs CUDA")

HEADS, RANK, NOPE, ROPE, V = 4, 512, 128, 64, 128  # DeepSeek-V2 head shapes, 4 local heads
SCALE = (NOPE + ROPE) ** -0.5
TOL = {torch.float32: (2e-4, 2e-4), torch.bfloat16: (5e-2, 5e-2)}
DEVICE = "cuda" if CUDA else "cpu"
BF16 = pytest.param(torch.bfloat16, id="bf16", marks=needs_cuda)


def kernel_path(attn: LatentAttention, *args) -> torch.Tensor:
    """The Triton path (the module takes it for CUDA inputs; on the CPU, called directly: interpreter)."""
    return attn(*args) if CUDA else attn._forward_kernels(*args)


class Pair:
    """The same layer twice: `ref` on CPU in fp32 (torch path), `dut` on DEVICE in `dtype` (kernel path)."""

    def __init__(self, dtype, block_size=16, num_blocks=40, cache=True):
        self.dtype, self.bs = dtype, block_size
        self.ref = LatentAttention(HEADS, RANK, NOPE, ROPE, V, SCALE)
        self.dut = LatentAttention(HEADS, RANK, NOPE, ROPE, V, SCALE)
        self.w = (torch.randn(HEADS * (NOPE + V), RANK) * RANK**-0.5).to(dtype)
        if cache:
            nan = torch.full((num_blocks, block_size, 1, RANK + ROPE), float("nan"))
            self.ref.bind_kv_cache([nan.clone()])
            self.dut.bind_kv_cache([nan.to(dtype).to(DEVICE)])

    def inputs(self, t):
        """q_nope, q_pe, latent, k_pe as the model makes them (strided views of fused projections)."""
        q = torch.randn(t, HEADS, NOPE + ROPE).to(self.dtype)
        kv = torch.randn(t, RANK + ROPE).to(self.dtype)
        return q, kv

    def step(self, seqs, tables, is_prefill, q=None, kv=None):
        """seqs: [(q_len, context_len)]; tables: per-sequence physical block lists. Returns (dut, ref) outputs."""
        t = sum(n for n, _ in seqs)
        if q is None:
            q, kv = self.inputs(t)
        out = {}
        for side, attn, dev, dtype in (("ref", self.ref, "cpu", torch.float32), ("dut", self.dut, DEVICE, self.dtype)):
            fb = make_batch(seqs, tables, self.bs, is_prefill, dev, cache=attn.cache is not None)
            qd, kvd = q.to(dtype).to(dev), kv.to(dtype).to(dev)
            q_nope, q_pe = qd.split([NOPE, ROPE], dim=-1)
            latent, k_pe = kvd.split([RANK, ROPE], dim=-1)
            args = (q_nope, q_pe, latent.contiguous(), k_pe, self.w.to(dtype).to(dev), fb)
            out[side] = (kernel_path(attn, *args) if side == "dut" else attn(*args))
        return out["dut"], out["ref"]

    def check(self, dut, ref):
        atol, rtol = TOL[self.dtype]
        assert dut.shape == ref.shape and dut.dtype == self.dtype
        assert torch.isfinite(dut.float()).all()
        torch.testing.assert_close(dut.float().cpu(), ref, atol=atol, rtol=rtol)

    def check_cache(self):
        torch.testing.assert_close(self.dut.cache.float().cpu(), self.ref.cache.to(self.dtype).float(),
                                   atol=0, rtol=0, equal_nan=True)


def make_batch(seqs, tables, bs, is_prefill, device, cache=True) -> ForwardBatch:
    q_lens = [n for n, _ in seqs]
    ctx = [c for _, c in seqs]
    t = sum(q_lens)
    cu = [0]
    for n in q_lens:
        cu.append(cu[-1] + n)
    slots, width = [], max(len(b) for b in tables) if cache else 0
    for (n, c), blocks in zip(seqs, tables):
        slots += [blocks[p // bs] * bs + p % bs for p in range(c - n, c)] if cache else []

    def tensor(x, dtype):
        return torch.tensor(x, dtype=dtype, device=device)

    padded = [b + [-1] * (width - len(b)) for b in tables]
    return ForwardBatch(
        input_ids=tensor([0] * t, torch.int64), positions=tensor([0] * t, torch.int64), is_prefill=is_prefill,
        cu_seqlens_q=tensor(cu, torch.int32), context_lens=tensor(ctx, torch.int32),
        slot_mapping=tensor(slots, torch.int64) if cache else None,
        block_tables=tensor(padded, torch.int32) if cache else None,
        logits_indices=tensor([], torch.int64), dp_meta=None, num_seqs=len(seqs), max_query_len=max(q_lens),
        max_context_len=max(ctx),
        # Decode rows longest context first, as the engine passes them (a one-split MLA launch follows it).
        decode_order=None if is_prefill else tensor(longest_first(np.array(ctx)), torch.int32),
        # the host arrays the engine packs the batch from (MLA plans prefill groups from them, without a sync)
        host_tables=(np.array(cu, np.int32), np.array(ctx, np.int32), np.array(padded, np.int32)) if cache else None)


# Sequence A (40-token prompt), B (shares A's first block: a prefix-cache hit, then 21 tokens of its own),
# C (5 tokens), D (33 tokens, prefilled in two chunks). Block size 16; blocks scattered over the cache.
TABLES = [[7, 2, 30], [7, 11, 25], [4], [19, 0, 33]]


def _prefill_then_decode(pair: Pair):
    # Step 1: full prefills of A and C, D's first chunk (20 of 33 tokens).
    d, r = pair.step([(40, 40), (5, 5), (20, 20)], [TABLES[0], TABLES[2], TABLES[3]], True)
    pair.check(d, r)
    # Step 2: B (16 cached tokens of A's block + 21 new), D's second chunk over its cached 20, and a
    # sequence with no new tokens; B reads block 7 that A wrote in step 1.
    d, r = pair.step([(21, 37), (13, 33), (0, 5)], [TABLES[1], TABLES[3], TABLES[2]], True)
    pair.check(d, r)
    # Step 3: decode one token for each of the four.
    d, r = pair.step([(1, 41), (1, 38), (1, 6), (1, 34)], TABLES, False)
    pair.check(d, r)
    pair.check_cache()


@pytest.mark.parametrize("dtype", [pytest.param(torch.float32, id="fp32"), BF16])
def test_cached_prefill_and_decode_match_torch_path(dtype):
    torch.manual_seed(0)
    _prefill_then_decode(Pair(dtype))


def test_cached_prefill_in_groups(monkeypatch):
    # A one-block budget: every sequence's context is expanded in a group of its own.
    monkeypatch.setattr(mla, "_EXPAND_TOKENS", 16)
    torch.manual_seed(1)
    _prefill_then_decode(Pair(torch.float32))


@pytest.mark.parametrize("budget", [16, 48, 8192])
def test_prefill_groups_planned_from_host_arrays_equal_the_device_copys(budget):
    """The plan from the host arrays (no sync) is the plan from copying the device tensors back, group by group."""
    seqs = [(40, 40), (21, 37), (5, 5), (17, 33)]
    from_host = make_batch(seqs, TABLES, 16, True, DEVICE)
    copied_back = make_batch(seqs, TABLES, 16, True, DEVICE)
    copied_back.host_tables = None
    planned = [mla._plan_groups(b, 16, budget) for b in (from_host, copied_back)]
    assert len(planned[0]) == len(planned[1]) >= (2 if budget < 64 else 1)
    for g, h in zip(*planned):
        assert (g.s0, g.s1, g.q0, g.q1, g.max_q) == (h.s0, h.s1, h.q0, h.q1, h.max_q)
        for name in ("blocks", "block_tables", "cu_seqlens_q", "context_lens"):
            a, b = getattr(g, name), getattr(h, name)
            assert a.device == b.device and a.dtype == b.dtype and torch.equal(a, b), name
        # A group's context lengths in a buffer of their own, on a GPU 16-byte aligned wherever the group starts (the
        # kernel is specialized on aligned pointers: a slice of the batch's compiled a new variant mid-run).
        assert torch.equal(g.context_lens, from_host.context_lens[g.s0:g.s1])
        assert g.context_lens.data_ptr() % 16 == 0 or not CUDA
    # A and B share block 7 (a prefix-cache hit): expanded once when planned together.
    if budget == 8192:
        assert planned[0][0].blocks.tolist().count(7) == 1


@pytest.mark.parametrize("block_size", [1, 64])
def test_other_block_sizes(block_size):
    torch.manual_seed(2)
    pair = Pair(torch.float32, block_size=block_size, num_blocks=80)
    tables = [list(range(0, 40, 1))[: -(-37 // block_size)], list(range(40, 80))[: -(-9 // block_size)]]
    d, r = pair.step([(30, 30), (9, 9)], tables, True)
    pair.check(d, r)
    d, r = pair.step([(7, 37), (0, 9)], tables, True)
    pair.check(d, r)
    d, r = pair.step([(1, 38), (1, 10)], [t + [t[-1] + 1] for t in tables], False)  # B's next block, if it needs one
    pair.check(d, r)


@pytest.mark.parametrize("dtype", [pytest.param(torch.float32, id="fp32"), BF16])
def test_no_cache_warmup_matches_torch_path(dtype):
    # Warmup / DP-attention dummy batches: no cache, each sequence attends to its own new tokens.
    torch.manual_seed(3)
    pair = Pair(dtype, cache=False)
    seqs = [(37, 37), (1, 1), (0, 0), (70, 70)]
    d, r = pair.step(seqs, [[]] * 4, True)
    pair.check(d, r)


@needs_cuda
def test_decode_in_cuda_graph_matches_eager():
    """The decode step replays from a CUDA graph over static buffers laid out as DecodeGraphs' batch_view
    (padding rows: slot -1, context 1, block table zeros)."""
    torch.manual_seed(4)
    pair = Pair(torch.bfloat16)
    _prefill_then_decode(pair)  # fills the cache
    attn, bucket, n = pair.dut, 8, 4
    w = pair.w.to(DEVICE)
    seqs = [(1, 42), (1, 39), (1, 7), (1, 35)]
    fb = make_batch(seqs, TABLES, pair.bs, False, DEVICE)
    static = ForwardBatch(
        input_ids=torch.zeros(bucket, dtype=torch.int64, device=DEVICE),
        positions=torch.zeros(bucket, dtype=torch.int64, device=DEVICE), is_prefill=False,
        cu_seqlens_q=torch.arange(bucket + 1, dtype=torch.int32, device=DEVICE),
        context_lens=torch.ones(bucket, dtype=torch.int32, device=DEVICE),
        slot_mapping=torch.full((bucket,), -1, dtype=torch.int64, device=DEVICE),
        block_tables=torch.zeros(bucket, 64, dtype=torch.int32, device=DEVICE),
        logits_indices=torch.arange(bucket, device=DEVICE), dp_meta=None, num_seqs=bucket, max_query_len=1,
        max_context_len=0)
    q = torch.zeros(bucket, HEADS, NOPE + ROPE, dtype=torch.bfloat16, device=DEVICE)
    kv = torch.zeros(bucket, RANK + ROPE, dtype=torch.bfloat16, device=DEVICE)

    def run():
        q_nope, q_pe = q.split([NOPE, ROPE], dim=-1)
        latent, k_pe = kv.split([RANK, ROPE], dim=-1)
        return attn(q_nope, q_pe, latent.contiguous(), k_pe, w, static).flatten(1)

    run()  # warm the kernels up eagerly, as DecodeGraphs.capture does
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = run()

    cache_before = attn.cache.clone()
    q_in, kv_in = torch.randn(n, HEADS, NOPE + ROPE).bfloat16(), torch.randn(n, RANK + ROPE).bfloat16()
    q[:n].copy_(q_in)
    kv[:n].copy_(kv_in)
    static.slot_mapping[:n].copy_(fb.slot_mapping)
    static.context_lens[:n].copy_(fb.context_lens)
    static.block_tables[:n, : fb.block_tables.shape[1]].copy_(fb.block_tables.clamp_min(0))
    graph.replay()
    graphed = out[:n].clone()
    cache_graphed = attn.cache.clone()

    attn.cache.copy_(cache_before)  # the same step again, eagerly
    q_nope, q_pe = q_in.to(DEVICE).split([NOPE, ROPE], dim=-1)
    latent, k_pe = kv_in.to(DEVICE).split([RANK, ROPE], dim=-1)
    eager = attn(q_nope, q_pe, latent.contiguous(), k_pe, w, fb).flatten(1)
    # Not bit-equal: the graph's wider block table and bucket pick another split count for mla_decode.
    torch.testing.assert_close(graphed, eager, atol=TOL[torch.bfloat16][0], rtol=TOL[torch.bfloat16][1])
    torch.testing.assert_close(cache_graphed, attn.cache, atol=0, rtol=0, equal_nan=True)


def test_latent_attention_is_graph_safe():
    attn = LatentAttention(HEADS, RANK, NOPE, ROPE, V, SCALE)
    assert all(getattr(m, "cuda_graph_safe", True) for m in attn.modules())


class _Handover:
    """An AttentionSplit (forward_batch.py) as a prefill graph's recorder acts: static buffers of `bucket` rows, NaN
    past the step's own (a bucket's padding, which attention must never read), and the prefill kept for later."""

    def __init__(self, rows: int, bucket: int):
        self.rows, self.bucket, self.buffers = rows, bucket, {}

    def _static(self, role, row_shape, dtype) -> torch.Tensor:
        if role not in self.buffers:
            self.buffers[role] = torch.full((self.bucket, *row_shape), float("nan"), dtype=dtype, device=DEVICE)
        return self.buffers[role]

    def q_input(self, row_shape, dtype):
        return self._static("q", row_shape, dtype)[: self.rows]

    def __call__(self, prefill, inputs, out_row_shape, out_dtype):
        self.inputs = {}
        for role, x in inputs.items():
            self.inputs[role] = buffer = self._static(role, x.shape[1:], x.dtype)
            self.copied = x.data_ptr() != buffer.data_ptr()
            buffer[: self.rows].copy_(x)
        self.prefill = prefill
        return self._static("out", out_row_shape, out_dtype)[: self.rows]


def _handed_over(pair: Pair, seqs, tables, is_prefill: bool, bucket: int):
    """One step through a prefill graph's hand-over: recorded as a prefill batch (the latents stored, q formed in the
    static input), attention replayed with the step's own batch and phase; against the torch path's step."""
    rows = sum(n for n, _ in seqs)
    q, kv = pair.inputs(rows)
    args = {}
    for side, device in (("ref", "cpu"), ("dut", DEVICE)):
        q_nope, q_pe = q.to(device).split([NOPE, ROPE], dim=-1)
        latent, k_pe = kv.to(device).split([RANK, ROPE], dim=-1)
        args[side] = (q_nope, q_pe, latent.contiguous(), k_pe, pair.w.to(device))
    ref = pair.ref(*args["ref"], make_batch(seqs, tables, pair.bs, is_prefill, "cpu"))  # the torch path
    recorded = make_batch(seqs, tables, pair.bs, True, DEVICE)  # the pieces are recorded as a prefill
    recorded.attention_split = split = _Handover(rows=rows, bucket=bucket)
    out = pair.dut._forward_kernels(*args["dut"], recorded)
    assert not split.copied and set(split.inputs) == {"q"}  # q was formed in the static input itself
    assert torch.isnan(out).all()  # the hand-over computes nothing: attention runs at the replay
    pair.check_cache()  # ... but the step's latents are stored (inside the piece)
    step = make_batch(seqs, tables, pair.bs, is_prefill, DEVICE)
    replayed = split.prefill(**split.inputs, batch=step, out=split.buffers["out"])
    assert replayed.data_ptr() == split.buffers["out"].data_ptr()
    pair.check(replayed[:rows], ref)
    assert torch.isnan(replayed[rows:]).all()  # padding rows: left alone


def test_attention_handed_over_to_a_graph_split_equals_the_eager_step():
    """What a prefill graph's capture takes from MLA, replayed later over the bucket's rows, is the eager step: a
    prefill over cached prefixes and a chunk, and (DP attention's steps that another rank prefills) a decode."""
    torch.manual_seed(5)
    pair = Pair(torch.float32)
    d, r = pair.step([(40, 40), (5, 5), (20, 20)], [TABLES[0], TABLES[2], TABLES[3]], True)
    pair.check(d, r)
    _handed_over(pair, [(21, 37), (13, 33), (0, 5)], [TABLES[1], TABLES[3], TABLES[2]], True, bucket=48)
    _handed_over(pair, [(1, 41), (1, 38), (1, 6), (1, 34)], TABLES, False, bucket=16)


@pytest.mark.parametrize("name", ["dsv2lora", "dsv3"])
def test_positioned_store_equals_the_norm_rotaries_and_store(name, monkeypatch):
    """DeepseekV2/V3Attention with the latent's norm, both rotaries and the cache store in one kernel
    (mla.ROPE_STORE, kernels/mla_rope_store.py) against the three steps (YaRN's scaled table; V2's interleaved pairs,
    V3's halves): the same cache and outputs over cached prefills and a decode. On CUDA the same bits; on the CPU
    the fused layer runs the kernels in the interpreter against the torch path."""
    from support.tiny_models import _configs

    from spmd_infer.models.deepseek_v2 import DeepseekV2Attention, DeepseekV3Attention
    from spmd_infer.parallel.comm import Shard

    config = _configs()[name]
    monkeypatch.setattr(mla, "ROPE_STORE_ON_CPU", True)
    torch.manual_seed(6)
    layers = [(DeepseekV3Attention if name == "dsv3" else DeepseekV2Attention)(config, Shard()) for _ in range(2)]
    for p in layers[0].parameters():
        p.data.normal_(1.0 if p.dim() == 1 else 0.0, 0.3)
    layers[1].load_state_dict(layers[0].state_dict())
    entry = config.kv_lora_rank + config.qk_rope_head_dim
    for layer in layers:
        layer.to(DEVICE)
        layer.attn.bind_kv_cache([torch.full((40, 16, 1, entry), float("nan"), device=DEVICE)])
    steps = [([(40, 40), (5, 5), (20, 20)], [TABLES[0], TABLES[2], TABLES[3]], True),
             ([(21, 37), (13, 33), (0, 5)], [TABLES[1], TABLES[3], TABLES[2]], True),
             ([(1, 41), (1, 38), (1, 6), (1, 34)], TABLES, False)]
    for seqs, tables, is_prefill in steps:
        batch = make_batch(seqs, tables, 16, is_prefill, DEVICE)
        positions = torch.tensor([p for n, c in seqs for p in range(c - n, c)], device=DEVICE)
        hidden = torch.randn(positions.shape[0], config.hidden_size, device=DEVICE)
        outs = []
        for fused, layer in zip((True, False), layers):
            monkeypatch.setattr(mla, "ROPE_STORE", fused)
            assert layer.attn.stores_positioned(hidden, batch) == fused
            outs.append(layer(positions, hidden, batch))
        if CUDA:
            assert torch.equal(outs[0], outs[1])
        else:
            torch.testing.assert_close(outs[0], outs[1], atol=2e-4, rtol=2e-4)
    torch.testing.assert_close(layers[0].attn.cache, layers[1].attn.cache, atol=0 if CUDA else 1e-5, rtol=0 if CUDA
                               else 1e-5, equal_nan=True)

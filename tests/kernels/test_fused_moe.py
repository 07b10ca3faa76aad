import importlib
import os

import pytest
import torch
import torch.nn.functional as F

from spmd_kernels import fused_moe, fused_moe_ref
from spmd_kernels import moe_align_block_size, moe_align_block_size_ref
from spmd_kernels.block_fp8 import dequantize_blocks, quantize_blocks


def _inputs(T, E_local, k, H, inter, dtype, device, first_expert=0, num_experts=None, out_of_range=True):
    num_experts = num_experts or E_local
    x = torch.randn(T, H, dtype=dtype, device=device)
    w13 = (torch.randn(E_local, 2 * inter, H, device=device) * H**-0.5).to(dtype)
    w2 = (torch.randn(E_local, H, inter, device=device) * inter**-0.5).to(dtype)
    # Distinct experts per token (like top-k), drawn from all num_experts; some land on other ranks.
    ids = torch.rand(T, num_experts, device=device).argsort(dim=1)[:, :k]
    if out_of_range and T > 0:
        ids[0, 0] = num_experts + 3  # out of every rank's range
    weights = torch.rand(T, k, device=device, dtype=torch.float32)
    return x, w13, w2, weights, ids


@pytest.mark.parametrize("T", [0, 1, 5, 33])
@pytest.mark.parametrize("E_local,first_expert,num_experts", [(1, 0, 1), (4, 4, 12), (8, 0, 8)])
@pytest.mark.parametrize("k", [1, 2])
def test_fused_moe(T, E_local, first_expert, num_experts, k, dtype, device, assert_close):
    if k > num_experts:
        k = num_experts
    H, inter = 48, 40
    x, w13, w2, weights, ids = _inputs(T, E_local, k, H, inter, dtype, device, first_expert, num_experts)
    out = fused_moe(x, w13, w2, weights, ids, first_expert=first_expert)
    ref = fused_moe_ref(x, w13, w2, weights, ids, first_expert=first_expert)
    assert out.shape == (T, H) and out.dtype == dtype
    assert_close(out, ref)


@pytest.mark.parametrize("down_tile", [(16, 16, 4, 1), (64, 64, 4, 2)], ids=["narrow", "wide"])
def test_fused_moe_down_kernel_takes_its_own_tile(down_tile, dtype, device, assert_close, monkeypatch):
    """DOWN_TILES: the down kernel's (BLOCK_N, BLOCK_K, warps, stages), set apart from gate / up's for every kind
    (narrower or wider than H and I here, K not a multiple of it), gives the reference's result."""
    fm = importlib.import_module("spmd_kernels.fused_moe")
    monkeypatch.setattr(fm, "DOWN_TILES", {kind: down_tile for kind in fm.DOWN_TILES})
    launched, down_kernel = [], fm._moe_down_kernel

    class RecordingLaunch:  # the real kernel, its launch options noted
        def __getitem__(self, grid):
            def launch(*args, **options):
                launched.append(tuple(options[o] for o in ("BLOCK_N", "BLOCK_K", "num_warps", "num_stages")))
                return down_kernel[grid](*args, **options)
            return launch

    monkeypatch.setattr(fm, "_moe_down_kernel", RecordingLaunch())
    T, E, k, H, inter = 9, 4, 2, 48, 40
    x, w13, w2, weights, ids = _inputs(T, E, k, H, inter, dtype, device)
    assert_close(fused_moe(x, w13, w2, weights, ids), fused_moe_ref(x, w13, w2, weights, ids))
    assert launched == [down_tile]


@pytest.mark.parametrize("gated", [False, True], ids=["shared", "gated-shared"])
@pytest.mark.parametrize("T,E_local,first_expert,num_experts", [(0, 4, 0, 4), (1, 4, 0, 4), (9, 4, 4, 12),
                                                                (5, 4, 8, 8), (3, 0, 0, 4)])
def test_fused_moe_adds_the_shared_experts_output(T, E_local, first_expert, num_experts, gated, dtype, device,
                                                  assert_close):
    """Shared experts' output joins each token's routed sum in the last kernel, scaled per token by sigmoid(x .
    gate) where a gate is given (Qwen2-MoE): as the reference; also where none of the pairs is this rank's and
    where this rank holds no experts (the sum is the shared output alone), and for no tokens."""
    H, inter, k = 48, 40, 2
    x, w13, w2, weights, ids = _inputs(T, E_local, k, H, inter, dtype, device, first_expert, num_experts)
    shared = torch.randn(T, H, device=device).to(dtype)
    gate = (torch.randn(H, device=device) * H ** -0.5).to(dtype) if gated else None
    out = fused_moe(x, w13, w2, weights, ids, first_expert=first_expert, add=shared, add_gate=gate)
    ref = fused_moe_ref(x, w13, w2, weights, ids, first_expert=first_expert, add=shared, add_gate=gate)
    assert out.shape == (T, H) and out.dtype == dtype
    assert_close(out, ref)
    scale = torch.sigmoid(x.float() @ gate.float())[:, None] if gated else 1.0
    routed = fused_moe_ref(x, w13, w2, weights, ids, first_expert=first_expert).float()
    assert_close(out, (routed + scale * shared.float()).to(dtype))  # what the layers added after it before


@pytest.mark.parametrize("T,slices,valid_rows", [(0, 2, False), (1, 1, False), (6, 2, True), (33, 4, False)])
def test_fused_moe_runs_a_shared_mlp_as_more_experts(T, slices, valid_rows, dtype, device, assert_close,
                                                     monkeypatch):
    """shared_w13 / shared_w2 (a shared MLP's weights as its linear layers hold them) are `slices` more local
    experts of I features each, which every token's last slots route to: the sum equals the reference's loop over
    them as experts, and the routed experts plus the MLP written out in torch; padding rows stay zero and only
    computed products are read."""
    fm = importlib.import_module("spmd_kernels.fused_moe")
    monkeypatch.setattr(fm, "_unfilled", lambda shape, dtype, dev: torch.full(shape, float("nan"), dtype=dtype,
                                                                             device=dev))
    E, k, H, inter = 4, 2, 48, 40
    x, w13, w2, weights, ids = _inputs(T, E, k, H, inter, dtype, device, out_of_range=False)
    shared_w13 = (torch.randn(2 * slices * inter, H, device=device) * H**-0.5).to(dtype)
    shared_w2 = (torch.randn(H, slices * inter, device=device) * (slices * inter)**-0.5).to(dtype)
    shared_weight = torch.rand(T, 1, device=device)
    all_ids = torch.cat([ids, torch.arange(E, E + slices, device=device).expand(T, slices)], 1)
    all_weights = torch.cat([weights, shared_weight.expand(T, slices)], 1)
    valid = None
    if valid_rows:
        valid = torch.ones(T, dtype=torch.bool, device=device)
        valid[2] = False
        x[2] = float("nan")
    out = fused_moe(x, w13, w2, all_weights, all_ids, valid=valid, shared_w13=shared_w13, shared_w2=shared_w2)
    ref = fused_moe_ref(x, w13, w2, all_weights, all_ids, valid=valid, shared_w13=shared_w13, shared_w2=shared_w2)
    assert out.shape == (T, H) and out.dtype == dtype
    assert_close(out, ref)
    if valid is not None:
        assert (out[2] == 0).all()
        x, out, ref, weights, ids, shared_weight = (t[valid] for t in (x, out, ref, weights, ids, shared_weight))
    gate, up = F.linear(x.float(), shared_w13.float()).chunk(2, dim=-1)
    mlp = F.linear(F.silu(gate) * up, shared_w2.float())
    routed = fused_moe_ref(x, w13, w2, weights, ids).float()
    assert_close(ref, (routed + shared_weight * mlp).to(dtype))  # the reference's slices are the whole MLP


def test_fused_moe_shared_slices_must_cut_the_mlp_into_whole_experts(device):
    x, w13, w2, weights, ids = _inputs(3, 2, 1, 48, 40, torch.float32, device)
    with pytest.raises(AssertionError):  # 60 features: not a multiple of the experts' 40
        fused_moe(x, w13, w2, weights, ids, shared_w13=torch.zeros(120, 48, device=device),
                  shared_w2=torch.zeros(48, 60, device=device))


def test_fused_moe_gates_the_shared_output_by_x_not_its_float8_rounding(device):
    """With float8 activations the experts read x rounded to float8; the shared expert's gate reads x itself."""
    T, E, H, inter, k, block = 6, 2, 64, 64, 1, (32, 32)
    x, w13, w2, weights, ids = _inputs(T, E, k, H, inter, torch.float32, device, out_of_range=False)
    q13, q2, scales = _float8_experts(w13.float(), w2.float(), block)
    shared = torch.randn(T, H, device=device)
    gate = torch.randn(H, device=device)
    args = (x, q13, q2, weights, ids)
    out = fused_moe(*args, activations="fp8", add=shared, add_gate=gate, **scales)
    routed = fused_moe(*args, activations="fp8", **scales)
    want = routed + torch.sigmoid(x @ gate)[:, None] * shared
    torch.testing.assert_close(out, want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("k", [1, 2])
def test_fused_moe_valid_mask(k, dtype, device, assert_close):
    T, E, H, inter = 9, 4, 40, 24
    x, w13, w2, weights, ids = _inputs(T, E, k, H, inter, dtype, device)
    x[3] = float("nan")  # a CUDA-graph padding row with garbage: must not be computed
    valid = torch.ones(T, dtype=torch.bool, device=device)
    valid[3] = valid[7] = False
    out = fused_moe(x, w13, w2, weights, ids, valid=valid)
    ref = fused_moe_ref(x, w13, w2, weights, ids, valid=valid)
    assert (out[3] == 0).all() and (out[7] == 0).all()
    assert_close(out, ref)


@pytest.mark.parametrize("k", [1, 3])
def test_fused_moe_never_reads_rows_it_did_not_compute(k, device, monkeypatch):
    """The [T*k, H] products are not zero-filled: NaN in every row not computed here (other ranks' experts,
    invalid tokens) must not reach the output."""
    fm = importlib.import_module("spmd_kernels.fused_moe")
    monkeypatch.setattr(fm, "_unfilled", lambda shape, dtype, dev: torch.full(shape, float("nan"), dtype=dtype,
                                                                             device=dev))
    T, E, H, inter, first = 11, 4, 40, 24, 4
    x, w13, w2, weights, ids = _inputs(T, E, k, H, inter, torch.float32, device, first, 12)
    valid = torch.ones(T, dtype=torch.bool, device=device)
    valid[2] = False
    out = fused_moe(x, w13, w2, weights, ids, first_expert=first, valid=valid)
    assert not out.isnan().any() and (out[2] == 0).all()
    torch.testing.assert_close(out, fused_moe_ref(x, w13, w2, weights, ids, first_expert=first, valid=valid),
                               atol=1e-4, rtol=1e-4)


def test_fused_moe_large_k_int32_ids(device):
    # k = 4 of 6 experts, int32 ids, H and I spanning several K tiles, a non-contiguous weights view.
    T, E, k, H, inter = 21, 6, 4, 72, 100
    x, w13, w2, _, ids = _inputs(T, E, k, H, inter, torch.float32, device, out_of_range=False)
    weights = torch.rand(k, T, device=device).t()
    out = fused_moe(x, w13, w2, weights, ids.to(torch.int32))
    torch.testing.assert_close(out, fused_moe_ref(x, w13, w2, weights, ids), atol=1e-4, rtol=1e-4)


def test_fused_moe_matches_module_loop(device):
    # Same result as FusedMoE.forward's loop over experts (spmd_infer/layers/moe.py).
    T, E, k, H, inter, first = 13, 4, 2, 32, 48, 4
    x, w13, w2, weights, ids = _inputs(T, E, k, H, inter, torch.float32, device, first, 12)
    expected = torch.zeros_like(x)
    local = ids - first
    for e in range(E):
        tok, slot = torch.where(local == e)
        gu = F.linear(x[tok], w13[e])
        y = F.linear(F.silu(gu[:, :inter]) * gu[:, inter:], w2[e]) * weights[tok, slot, None]
        expected.index_add_(0, tok, y)
    torch.testing.assert_close(fused_moe(x, w13, w2, weights, ids, first_expert=first), expected,
                               atol=1e-4, rtol=1e-4)


def _float8_experts(w13, w2, block):
    (q13, s13), (q2, s2) = quantize_blocks(w13, block), quantize_blocks(w2, block)
    return q13, q2, dict(w13_scale=s13, w2_scale=s2, scale_block=block)


# (T, E_local, first, num_experts, k, H, I, block): hidden sizes off the block grid (ceil scales), blocks wider
# than the interpreter's 32-wide tiles (several k-steps a scale), tokens past the routed experts, batch 0.
SCALED_CASES = [
    (7, 4, 0, 4, 2, 64, 64, (32, 32)),
    (33, 4, 4, 12, 2, 80, 64, (32, 32)),
    (9, 3, 0, 3, 3, 96, 128, (64, 64)),
    (5, 2, 0, 2, 1, 100, 64, (64, 32)),
    (0, 2, 0, 2, 1, 64, 64, (32, 32)),
]


@pytest.mark.parametrize("activations", ["model", "fp8"])
@pytest.mark.parametrize("T,E,first,num_experts,k,H,inter,block", SCALED_CASES)
def test_fused_moe_float8_block_scaled(T, E, first, num_experts, k, H, inter, block, activations, dtype, device,
                                       assert_close):
    """Float8 experts with a scale per block (DeepSeek-V3's format) equal the reference on their dequantized
    values; blocks of very different ranges, so a scale applied to the wrong block shows. With float8 activations
    (x and h in float8, a scale per token per block width) they equal the reference rounding x and h the same
    way."""
    x, w13, w2, weights, ids = _inputs(T, E, k, H, inter, dtype, device, first, num_experts)
    ranges = torch.logspace(-1, 0.5, 4, device=device)  # 0.1 .. 3.2
    w13 = w13.float() * ranges.repeat_interleave(-(-H // 4))[:H]
    w2 = w2.float() * ranges.repeat_interleave(-(-inter // 4))[:inter]
    q13, q2, scales = _float8_experts(w13, w2, block)
    out = fused_moe(x, q13, q2, weights, ids, first_expert=first, activations=activations, **scales)
    ref = fused_moe_ref(x, q13, q2, weights, ids, first_expert=first, activations=activations, **scales)
    plain = fused_moe_ref(x, dequantize_blocks(q13, scales["w13_scale"], block),
                          dequantize_blocks(q2, scales["w2_scale"], block), weights, ids, first_expert=first)
    assert out.shape == (T, H) and out.dtype == dtype
    if not T:
        return
    tol = _scaled_activation_tolerance(activations, ref)
    if tol:
        torch.testing.assert_close(out.float(), ref.float(), rtol=0, atol=tol)
    else:
        assert_close(out, ref)
    if activations == "model":
        assert_close(ref, plain)  # the reference is the dequantized model's
    else:  # within float8's rounding of the activations (2^-4 of a value) of the dequantized model
        assert (ref.float() - plain.float()).abs().max() <= 0.15 * plain.float().abs().max()


@pytest.mark.parametrize("swap", [True, False])
@pytest.mark.parametrize("block_m", [16, 32])  # the small and medium tiles' rows
@pytest.mark.parametrize("T,E,first,num_experts,k,H,inter,block", SCALED_CASES)
def test_fused_moe_float8_products_either_way(T, E, first, num_experts, k, H, inter, block, block_m, swap, dtype,
                                              device, monkeypatch):
    """SPMD_MOE_FP8_SWAP (SWAP_AB, on by default): with float8 activations under 64 rows a tile, both kernels compute
    each product transposed (weights x rows, for sm_90's float8 wgmma); =0 computes them as written. Either way they
    give the reference's result."""
    fm = importlib.import_module("spmd_kernels.fused_moe")
    monkeypatch.setattr(fm, "SWAP_AB", swap)
    if device == "cpu":  # the interpreter's launch takes 16-row tiles; the medium tile's 32 as well
        monkeypatch.setattr(fm, "_launch_config", lambda *args, **kwargs: (block_m, 32, 32, 4, 1))
    elif block_m != 16:
        pytest.skip("on CUDA the rows pick the tile")
    x, w13, w2, weights, ids = _inputs(T, E, k, H, inter, dtype, device, first, num_experts)
    q13, q2, scales = _float8_experts(w13.float() * 3, w2, block)
    out = fused_moe(x, q13, q2, weights, ids, first_expert=first, activations="fp8", **scales)
    ref = fused_moe_ref(x, q13, q2, weights, ids, first_expert=first, activations="fp8", **scales)
    assert out.shape == (T, H) and out.dtype == dtype
    if T:
        torch.testing.assert_close(out.float(), ref.float(), rtol=0,
                                   atol=_scaled_activation_tolerance("fp8", ref))


def _scaled_activation_tolerance(activations, ref):
    """Absolute tolerance of the kernel against its reference, a share of the largest output (0: the dtype's usual
    one). An h value whose fp32 sum lands within the kernel's and torch's accumulation-order difference of a
    rounding midpoint rounds the other way: float8, one float8 step of that value, up to 32 / 448 (7%) of its
    group's largest h, which after the down projection has reached 1.2% of these tests' largest output (H200,
    products transposed; a scale applied to the wrong block is tens of percent); bf16 activations, one bf16 step,
    which these tests' wide weight ranges make larger than the usual absolute tolerance of a small output."""
    peak = ref.float().abs().max().item()
    if activations == "fp8":
        return 3e-2 * peak
    return torch.finfo(ref.dtype).eps * peak if ref.dtype == torch.bfloat16 else 0.0


@pytest.mark.parametrize("activations", ["model", "fp8"])
def test_fused_moe_float8_valid_mask_and_unfilled_rows(activations, device, monkeypatch):
    fm = importlib.import_module("spmd_kernels.fused_moe")
    monkeypatch.setattr(fm, "_unfilled", lambda shape, dtype, dev: torch.full(shape, float("nan"), dtype=dtype,
                                                                             device=dev))
    T, E, k, H, inter, block = 10, 4, 2, 64, 64, (32, 32)
    x, w13, w2, weights, ids = _inputs(T, E, k, H, inter, torch.float32, device, 4, 12)
    q13, q2, scales = _float8_experts(w13, w2, block)
    valid = torch.ones(T, dtype=torch.bool, device=device)
    valid[1] = False
    x[1] = float("nan")
    out = fused_moe(x, q13, q2, weights, ids, first_expert=4, valid=valid, activations=activations, **scales)
    assert not out.isnan().any() and (out[1] == 0).all()
    ref = fused_moe_ref(x, q13, q2, weights, ids, first_expert=4, valid=valid, activations=activations, **scales)
    torch.testing.assert_close(out, ref, atol=_scaled_activation_tolerance(activations, ref) or 1e-4,
                               rtol=1e-4)


def test_fused_moe_float8_needs_gate_and_up_in_separate_blocks(device):
    x, w13, w2, weights, ids = _inputs(3, 2, 1, 64, 48, torch.float32, device)
    q13, q2, scales = _float8_experts(w13, w2, (32, 32))  # I = 48: the gate / up boundary inside a block
    with pytest.raises(AssertionError):
        fused_moe(x, q13, q2, weights, ids, **scales)


@pytest.mark.parametrize("align", [moe_align_block_size, moe_align_block_size_ref], ids=["triton", "ref"])
def test_moe_align_block_size(align, device):
    T, k, E, bm, first = 11, 2, 3, 4, 2
    ids = torch.randint(0, 7, (T, k), device=device)
    valid = torch.rand(T, device=device) > 0.2
    sorted_ids, block_expert, num_padded = align(ids, bm, E, first, valid)
    n = T * k
    assert sorted_ids.numel() == block_expert.numel() * bm
    assert block_expert.numel() <= -(-(n + E * (bm - 1)) // bm)  # the worst case, in blocks
    local = (ids - first).flatten()
    keep = (local >= 0) & (local < E) & valid.repeat_interleave(k)
    total = int(num_padded)
    assert total % bm == 0 and (block_expert[total // bm:] == -1).all()
    assert (block_expert[: total // bm] >= 0).all() and (block_expert[: total // bm].diff() >= 0).all()
    real = sorted_ids[:total]
    # Every kept slot appears exactly once, in a block of its own expert; nothing else appears.
    assert sorted(real[real < n].tolist()) == torch.nonzero(keep).flatten().tolist()
    row_expert = block_expert.repeat_interleave(bm)[:total]
    assert (local[real[real < n].long()] == row_expert[real < n]).all()
    assert (sorted_ids[total:] == n).all()


# (T, k, local experts, block_m, first expert, experts in all): one chunk and many (the kernel's chunk is 16384 //
# next_pow2(E) pairs), block_m above and below the per-expert counts, a rank holding the middle experts, 160 experts;
# decode batches (one program: up to max(16, 16384 // next_pow2(E)) pairs, bs40 x 6 near its limit at 64 experts),
# Qwen1.5-MoE's 60 experts.
ALIGN_CASES = [(11, 2, 3, 4, 2, 7), (300, 6, 64, 16, 0, 64), (1500, 6, 16, 64, 16, 64), (700, 8, 128, 16, 0, 128),
               (97, 8, 160, 16, 0, 160), (5, 1, 4, 16, 0, 4), (1, 4, 60, 16, 0, 60), (5, 6, 64, 16, 0, 64),
               (2, 8, 256, 16, 0, 256), (3, 6, 16, 16, 16, 64), (40, 6, 64, 16, 0, 64)]


@pytest.mark.parametrize("T,k,E,bm,first,num_experts", ALIGN_CASES)
@pytest.mark.parametrize("with_valid", [False, True])
@pytest.mark.parametrize("one_program", [True, False], ids=["small-in-one-program", "three-kernels"])
def test_moe_align_block_size_equals_reference(T, k, E, bm, first, num_experts, with_valid, one_program, device,
                                               monkeypatch):
    """The counting-sort kernels give the stable torch reference's result element for element, through the
    one-program kernel where the pairs are few enough (SPMD_MOE_ALIGN_ONE_PROGRAM) and through the three kernels."""
    align = importlib.import_module("spmd_kernels.moe_align")
    monkeypatch.setattr(align, "ONE_PROGRAM", one_program)
    if align.fits_one_program(T * k, E):
        monkeypatch.setattr(align, "_count_kernel", None)  # (the three kernels' path would fail on it)
    g = torch.Generator(device="cpu").manual_seed(T * k + E)
    ids = torch.rand(T, num_experts, generator=g).argsort(dim=1)[:, :k].to(device)
    ids[0, 0] = num_experts + 5  # no rank's expert
    valid = (torch.rand(T, generator=g) > 0.25).to(device) if with_valid else None
    got = moe_align_block_size(ids, bm, E, first, valid)
    want = moe_align_block_size_ref(ids, bm, E, first, valid)
    for name, a, b in zip(("sorted_ids", "block_expert", "num_padded"), got, want):
        assert a.dtype == b.dtype == torch.int32 and torch.equal(a, b), name


@pytest.mark.parametrize("T,E", [(0, 4), (3, 0)])
def test_moe_align_block_size_empty(T, E, device):
    ids = torch.zeros(T, 2, dtype=torch.int64, device=device)
    for a, b in zip(moe_align_block_size(ids, 16, E), moe_align_block_size_ref(ids, 16, E)):
        assert torch.equal(a, b)



def test_float8_tiles_follow_the_rows_a_local_expert_expects():
    """Float8 experts pick tiles by T * k / num_experts, the rows a local expert gets under even routing; bf16's
    tiles keep the estimate they were tuned against, T * k / E_local."""
    fm = importlib.import_module("spmd_kernels.fused_moe")
    # DeepSeek-V2-Lite at ep4 decoding 4 x 64 tokens: 1536 pairs, 16 of 64 experts here, 24 rows each.
    assert fm.config_kind(1536, 16, fp8=True, num_experts=64) == "medium"
    assert fm.config_kind(1536, 16, fp8=True) == "large"  # without the total: 96 "rows"
    assert fm.config_kind(1536, 16) == "medium" and fm.config_kind(4096 * 6, 16) == "large"
    assert fm.config_kind(384, 64, fp8=True, num_experts=64) == "small"  # one GPU, bs64: 6 rows
    assert fm.config_kind(8192 * 6, 64, fp8=True, num_experts=64) == "large"  # an 8192-token prefill chunk


@pytest.mark.parametrize("kind", ["model", "fp8"])
def test_activations_switch_picks_them_when_the_caller_does_not(device, monkeypatch, kind):
    """SPMD_FP8_ACT (DEFAULT_ACTIVATIONS, "fp8" unless set): float8 experts left to choose (activations=None,
    as the engine calls them) take that kind at every batch size."""
    fm = importlib.import_module("spmd_kernels.fused_moe")
    assert fm.DEFAULT_ACTIVATIONS == "fp8" or "SPMD_FP8_ACT" in os.environ
    monkeypatch.setattr(fm, "DEFAULT_ACTIVATIONS", kind)
    x, w13, w2, weights, ids = _inputs(6, 2, 1, 64, 64, torch.float32, device)
    q13, q2, scales = _float8_experts(w13, w2, (32, 32))
    out = fused_moe(x, q13, q2, weights, ids, **scales)
    assert torch.equal(out, fused_moe(x, q13, q2, weights, ids, activations=kind, **scales))
    other = "fp8" if kind == "model" else "model"
    assert not torch.equal(out, fused_moe(x, q13, q2, weights, ids, activations=other, **scales))


def test_float8_activations_fall_back_where_a_scale_group_spans_block_rows(device):
    """Blocks narrower in rows than in columns (a shard edge every 32 features, 64-wide column groups) cannot take
    float8 activations (h is scaled a column group at a time by the program writing it): fused_moe runs them with
    activations in the model's dtype, as fp8_activations_fit says (the resume manifest records the same)."""
    fm = importlib.import_module("spmd_kernels.fused_moe")
    x, w13, w2, weights, ids = _inputs(5, 2, 1, 128, 64, torch.float32, device)
    q13, q2, scales = _float8_experts(w13, w2, (32, 64))
    assert not fm.fp8_activations_fit((32, 64)) and fm.fp8_activations_fit((64, 32))
    assert torch.equal(fused_moe(x, q13, q2, weights, ids, activations="fp8", **scales),
                       fused_moe(x, q13, q2, weights, ids, activations="model", **scales))


def test_unknown_activations_kind_is_an_error_naming_the_choices(device):
    x, w13, w2, weights, ids = _inputs(4, 2, 1, 64, 64, torch.float32, device)
    q13, q2, scales = _float8_experts(w13, w2, (32, 32))
    with pytest.raises(ValueError, match="choose one of model, fp8"):
        fused_moe(x, q13, q2, weights, ids, activations="int8", **scales)

"""Gumbel-max sampling with counter-based noise (hash of row stream and token id) fused with temperature scaling, a
per-row value threshold (top-k / top-p / min-p) and argmax, the greedy argmax alone, both split over vocabulary chunks
so that one row fills the GPU, and the threshold of a row whose kept set runs past its candidates (tail_floor: top-p's
search, min-p's pass), one row a program so that a row's result is the same bits in any batch (the thresholds from
the candidates: filter_thresholds.py)."""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from triton.language.extra import libdevice

from .decode_attention import _num_sms
from .pdl import pdl_args, pdl_enter

_MASK32 = 0xFFFFFFFF


@triton.jit
def _mix32(x):
    """lowbias32 on uint32 (wrapping multiplies), as spmd_infer.layers.sampler._mix32."""
    x = x ^ (x >> 16)
    x = x * tl.full(x.shape, 0x7FEB352D, tl.uint32)
    x = x ^ (x >> 15)
    x = x * tl.full(x.shape, 0x846CA68B, tl.uint32)
    return x ^ (x >> 16)


# The chunk count follows the batch size: as a compile-time constant it compiled a new variant for every batch size
# a run reached, in the middle of the run; it only strides the partial results.
@triton.jit(do_not_specialize=["num_chunks"])
def _gumbel_argmax_kernel(
    logits_ptr,
    temperature_ptr,
    streams_ptr,
    threshold_ptr,
    part_val_ptr,
    part_idx_ptr,
    vocab,
    chunk,  # tokens per program, a multiple of BLOCK_V
    stride_l,
    num_chunks,  # programs per row: the partial results' row stride
    BLOCK_V: tl.constexpr,
    LIBDEVICE_LOG: tl.constexpr,  # CUDA: libdevice logf, bit-equal to torch.log on the GPU
    GREEDY_ONLY: tl.constexpr,  # every row greedy: temperature_ptr and streams_ptr are not read
    HAS_THRESHOLD: tl.constexpr,  # sampled rows keep only scaled values >= threshold_ptr[row] (-inf: all)
    PDL: tl.constexpr,
):
    pdl_enter(PDL)
    row = tl.program_id(0)
    c = tl.program_id(1)
    if GREEDY_ONLY:
        sampled = False
        inv = 1.0
        stream = tl.zeros([], tl.uint32)
    else:
        temp = tl.load(temperature_ptr + row)
        sampled = temp > 0.0  # temperature 0: greedy argmax of the raw logits
        inv = tl.where(sampled, temp, 1.0)
        stream = tl.load(streams_ptr + row).to(tl.uint32)
        if HAS_THRESHOLD:
            thr = tl.load(threshold_ptr + row)
    start = c * chunk
    end = tl.minimum(start + chunk, vocab)
    offs = tl.arange(0, BLOCK_V)
    row_ptr = logits_ptr + row.to(tl.int64) * stride_l
    best = tl.full([BLOCK_V], float("-inf"), tl.float32)
    best_idx = tl.zeros([BLOCK_V], tl.int32) + start
    for v0 in range(start, end, BLOCK_V):
        ids = v0 + offs
        mask = ids < end
        x = tl.load(row_ptr + ids, mask=mask, other=float("-inf")).to(tl.float32)
        if sampled:
            bits = _mix32(_mix32(stream ^ ids.to(tl.uint32)))
            u = ((bits >> 8).to(tl.float32) + 0.5) * 5.9604644775390625e-08  # / 2**24, exact
            if LIBDEVICE_LOG:
                g = -libdevice.log(-libdevice.log(u))
            else:
                g = -tl.log(-tl.log(u))
            x = tl.math.div_rn(x, inv)  # IEEE division, as torch's logits / temperature
            if HAS_THRESHOLD:
                x = tl.where(x >= thr, x, float("-inf"))  # filtered out before the noise: -inf + g stays -inf
            x = x + g
        x = tl.where(mask, x, float("-inf"))
        take = x > best  # strict: the earlier token keeps a tie within a lane
        best_idx = tl.where(take, ids, best_idx)
        best = tl.where(take, x, best)
    m = tl.max(best, axis=0)
    idx = tl.min(tl.where(best == m, best_idx, 2147483647), axis=0)  # first token holding the max
    tl.store(part_val_ptr + row * num_chunks + c, m)
    tl.store(part_idx_ptr + row * num_chunks + c, idx.to(tl.int64))


# CUDA: vocab chunks per row until rows * chunks >= CHUNK_WAVES * num_SMs, each >= MIN_CHUNK tokens.
CHUNK_WAVES = 2
MIN_CHUNK = 4096
CUDA_BLOCK_V = 1024


def gumbel_sample(
    logits: torch.Tensor,
    temperature: torch.Tensor,
    streams: torch.Tensor,
    threshold: torch.Tensor | None = None,
    num_chunks: int | None = None,
) -> torch.Tensor:
    """Token ids [S] int64: argmax(kept(logits / temperature) + gumbel_noise(streams)) where temperature > 0,
    argmax(logits) elsewhere, without materialising the [S, V] noise.

    logits [S, V] (any float dtype, read as float32); temperature [S] float32; streams [S] int64 row streams
    (< 2**32); threshold [S] float32 or None: kept(x) is x where x >= the row's threshold, -inf elsewhere (-inf or
    None: every token kept; greedy rows ignore it). The noise of token v in a row is -log(-log(u)),
    u = ((mix32(mix32(stream ^ v)) >> 8) + 0.5) / 2**24, exactly as spmd_infer.layers.sampler.gumbel_noise. Ties go
    to the lowest token id (torch.argmax). num_chunks splits each row's vocabulary over programs (None: from S and V
    on CUDA, 1 on CPU).
    """
    S = logits.shape[0]
    assert temperature.shape == (S,) and streams.shape == (S,)
    if threshold is not None:
        assert threshold.shape == (S,)
        threshold = threshold.to(torch.float32).contiguous()
    return _chunked_argmax(logits, temperature.to(torch.float32).contiguous(), streams.to(torch.int64).contiguous(),
                           threshold, num_chunks)


def greedy_argmax(logits: torch.Tensor, num_chunks: int | None = None) -> torch.Tensor:
    """logits.argmax(dim=-1) for logits [S, V] (ties to the lowest token id), with each row's vocabulary split over
    num_chunks programs (None: from S and V on CUDA, 1 on CPU). torch.argmax gives a row one thread block: at batch
    1 that is one SM reading Llama-3's 128k logits, 36 us of a 4.7 ms decode step on an H200."""
    return _chunked_argmax(logits, None, None, None, num_chunks)


def _chunked_argmax(logits: torch.Tensor, temperature: torch.Tensor | None, streams: torch.Tensor | None,
                    threshold: torch.Tensor | None, num_chunks: int | None) -> torch.Tensor:
    """gumbel_sample's and greedy_argmax's launch (temperature None: every row greedy)."""
    S, V = logits.shape
    out_dtype = torch.int64
    if S == 0:
        return torch.empty(0, dtype=out_dtype, device=logits.device)
    assert V > 0
    if logits.stride(-1) != 1:
        logits = logits.contiguous()
    cuda = logits.device.type == "cuda"
    block_v = CUDA_BLOCK_V if cuda else min(triton.next_power_of_2(V), 256)
    if num_chunks is None:
        num_chunks = 1
        if cuda:
            num_chunks = min(triton.cdiv(CHUNK_WAVES * _num_sms(logits.device), S), triton.cdiv(V, MIN_CHUNK))
    num_chunks = max(int(num_chunks), 1)
    chunk = triton.cdiv(triton.cdiv(V, num_chunks), block_v) * block_v
    num_chunks = triton.cdiv(V, chunk)  # no empty chunks
    part_val = torch.empty((S, num_chunks), dtype=torch.float32, device=logits.device)
    part_idx = torch.empty((S, num_chunks), dtype=out_dtype, device=logits.device)
    greedy_only = temperature is None
    has_threshold = threshold is not None
    _gumbel_argmax_kernel[(S, num_chunks)](
        logits, logits if greedy_only else temperature, logits if greedy_only else streams,
        threshold if has_threshold else logits,
        part_val, part_idx, V, chunk, logits.stride(0), num_chunks, BLOCK_V=block_v, LIBDEVICE_LOG=cuda,
        GREEDY_ONLY=greedy_only, HAS_THRESHOLD=has_threshold, num_warps=4,
        **pdl_args(logits.device),
    )
    if num_chunks == 1:
        return part_idx[:, 0]
    # Chunks are in token order and torch.argmax returns the first maximum: lowest id wins ties.
    return part_idx.gather(1, part_val.argmax(dim=1, keepdim=True)).squeeze(1)


@triton.jit
def _scaled_exp(row_ptr, ids, inside, inv, m, LIBDEVICE_EXP: tl.constexpr):
    """A tile's scaled logits x = logit / inv (IEEE division, as torch's) and exp(x - m), 0 outside the row."""
    x = tl.math.div_rn(tl.load(row_ptr + ids, mask=inside, other=0.0).to(tl.float32), inv)
    if LIBDEVICE_EXP:  # CUDA: libdevice expf, as torch.exp on the GPU (tl.exp is ex2.approx)
        e = libdevice.exp(x - m)
    else:
        e = tl.exp(x - m)
    return x, tl.where(inside, e, 0.0)


# The sampler's sums (kernels/filter_thresholds.py, tail_floor) run one program a row, whatever S: a row's terms in
# BLOCK-wide lanes over the vocabulary in order, then across the lanes, an order fixed by V and BLOCK alone, so a
# row's sum is the same bits in any batch (the sampler's thresholds, and so its tokens, must not depend on the
# batch). Splitting a row over programs, as the argmax does, would make the order follow the split, which follows S.
CUDA_EXP_SUM_BLOCK = 1024
REF_EXP_SUM_BLOCK = 1024


def masked_exp_sum_ref(logits: torch.Tensor, temperature: torch.Tensor, floor: torch.Tensor,
                       row_max: torch.Tensor) -> torch.Tensor:
    """[S] float32: each row's sum of exp(x - row_max) over its scaled logits x = logits / t (t = temperature where
    > 0, else 1) with x >= floor: the reference of candidate_thresholds' exp sum. Batch-invariant too: lane sums over
    REF_EXP_SUM_BLOCK-wide tiles, then across lanes (torch's plain row sum splits a lone long row over CPU threads,
    and so sums it in another order than the same row in a batch). Equal to the kernel's up to float32 rounding, not
    bit for bit."""
    S, V = logits.shape
    scaled = logits.float() / torch.where(temperature > 0, temperature, 1.0).unsqueeze(1)
    terms = torch.where(scaled >= floor.unsqueeze(1), torch.exp(scaled - row_max.unsqueeze(1)), 0.0)
    terms = torch.nn.functional.pad(terms, (0, -V % REF_EXP_SUM_BLOCK))
    return terms.view(S, -1, REF_EXP_SUM_BLOCK).sum(dim=1).sum(dim=1)


MINUS_INF_KEY = -2139095041  # the ordered integer key of float32 -inf (bits 0xFF800000)
_MINUS_INF_KEY = tl.constexpr(MINUS_INF_KEY)


# A row whose kept set runs past its sorted candidates (rows without top_k: top_p and / or min_p). Its top-p floor is
# found by a search over the float32 values' ordered integer keys: each pass over the row sums the mass strictly
# above SPLITS values spread over the interval left, so the interval shrinks (SPLITS + 1)-fold a pass: 2**32 keys in 9
# passes (a binary search took 32, and on an H200 256 flat rows cost more than sorting them). Its min-p floor is one
# more pass, a masked minimum. One program a row as in the exp sum (the same order in any batch); rows that need no
# search return at once.
@triton.jit(do_not_specialize=["vocab", "stride_l"])
def _tail_floor_kernel(
    logits_ptr,
    temperature_ptr,
    top_p_ptr,
    min_p_ptr,
    row_max_ptr,
    exp_sum_ptr,
    search_ptr,
    tau_ptr,
    vocab,
    stride_l,
    BLOCK: tl.constexpr,
    SPLITS: tl.constexpr,
    PASSES: tl.constexpr,
    NEED_MIN_P: tl.constexpr,  # some row has min_p > 0 (else the min-p pass is left out)
    LIBDEVICE_EXP: tl.constexpr,
    PDL: tl.constexpr,
):
    pdl_enter(PDL)
    row = tl.program_id(0)
    if tl.load(search_ptr + row) == 0:
        return
    temp = tl.load(temperature_ptr + row)
    inv = tl.where(temp > 0.0, temp, 1.0)
    m = tl.load(row_max_ptr + row)
    z = tl.load(exp_sum_ptr + row)
    top_p = tl.load(top_p_ptr + row)
    offs = tl.arange(0, BLOCK)
    row_ptr = logits_ptr + row.to(tl.int64) * stride_l
    floor_min_p = float("-inf")
    if NEED_MIN_P:
        # The least value min-p keeps, by candidate_thresholds' own test (p >= min_p * the first's p).
        bound = tl.load(min_p_ptr + row) * tl.math.div_rn(1.0, z)
        least = tl.full([BLOCK], float("inf"), tl.float32)
        for v0 in range(0, vocab, BLOCK):
            ids = v0 + offs
            inside = ids < vocab
            x, e = _scaled_exp(row_ptr, ids, inside, inv, m, LIBDEVICE_EXP)
            least = tl.minimum(least, tl.where(inside & (tl.math.div_rn(e, z) >= bound), x, float("inf")))
        least_row = tl.min(least, axis=0)
        floor_min_p = tl.where(least_row < float("inf"), least_row, float("-inf"))  # none kept: no bound (-inf row)
    budget = top_p * z  # mass < top_p, times the denominator
    # Keys: a float's bits as int32, the negative ones' magnitude bits flipped, so that keys order as the floats do.
    hi_bits = tl.load(tau_ptr + row).to(tl.int32, bitcast=True)
    hi = tl.where(hi_bits < 0, hi_bits ^ 0x7FFFFFFF, hi_bits).to(tl.int64)  # kept: its mass above is < top_p
    lo = tl.full([], _MINUS_INF_KEY, tl.int64)  # below every kept value
    split = tl.arange(0, SPLITS).to(tl.int64) + 1
    # Invariant: the answer's key is in (lo, hi]: hi's value is kept, lo's is not. top_p 1 is off: no search.
    passes = tl.where(top_p < 1.0, PASSES, 0)
    for _ in range(0, passes):
        keys = lo + (hi - lo) * split // (SPLITS + 1)  # ascending, inside [lo, hi)
        keys32 = keys.to(tl.int32)
        t = tl.where(keys32 < 0, keys32 ^ 0x7FFFFFFF, keys32).to(tl.float32, bitcast=True)
        acc = tl.zeros([SPLITS, BLOCK], tl.float32)
        for v0 in range(0, vocab, BLOCK):
            ids = v0 + offs
            inside = ids < vocab
            x, e = _scaled_exp(row_ptr, ids, inside, inv, m, LIBDEVICE_EXP)
            acc += tl.where(x[None, :] > t[:, None], e[None, :], 0.0)
        kept = tl.sum(acc, axis=1) < budget  # at split j: every token at or above t_j is kept (monotone in j)
        hi_next = tl.min(tl.where(kept, keys, hi), axis=0)
        lo = tl.max(tl.where(kept, lo, keys), axis=0)
        hi = hi_next
    hi32 = hi.to(tl.int32)
    floor_top_p = tl.where(top_p < 1.0, tl.where(hi32 < 0, hi32 ^ 0x7FFFFFFF, hi32).to(tl.float32, bitcast=True),
                           float("-inf"))
    tl.store(tau_ptr + row, tl.maximum(floor_top_p, floor_min_p))


TAIL_SPLITS = 16
TAIL_PASSES = 9  # a pass leaves at most L / 17 + 1 of L keys: 2**32 down to one in 9
# A program a row, so one row's search runs on one SM: wide tiles over 16 warps keep it busy (tune_tail_floor.py,
# H200, 128k vocabulary, flat rows: 256 x 4 warps 1293 us at one row, 2467 at 256 rows; 1024 x 16 519 and 1066;
# 1024 x 32 and 2048 x 16 within 5% of it). Fixed, never from the batch: a row's sums keep one order in any batch.
TAIL_BLOCK = 1024
TAIL_WARPS = 16


def tail_floor(logits: torch.Tensor, temperature: torch.Tensor, top_p: torch.Tensor, min_p: torch.Tensor,
               row_max: torch.Tensor, exp_sum: torch.Tensor, search: torch.Tensor, tau: torch.Tensor,
               need_min_p: bool = True) -> None:
    """In place on tau [S] float32, for the rows where search [S] (int) is nonzero (rows that keep every sorted
    candidate: their kept set may run past them): the least scaled logit x (as candidate_thresholds scales them) that
    both rules keep, the larger of
    - top-p's (top_p < 1; else no bound): the least x whose tokens strictly above hold a mass below top_p, i.e.
      exp-sum over x' > x of exp(x' - row_max) < top_p * exp_sum, found by a search; tau's value there on entry must
      be a value it keeps (an upper bound). Where every finite token is kept it is -FLT_MAX, which keeps them too;
    - min-p's (need_min_p): the least x with exp(x - row_max) / exp_sum >= min_p / exp_sum (-inf when min_p is 0).
    The same bits for a row in any batch (one program a row)."""
    S, V = logits.shape
    if S == 0:
        return
    assert tau.dtype == torch.float32 and tau.is_contiguous()
    if logits.stride(-1) != 1:
        logits = logits.contiguous()
    cuda = logits.device.type == "cuda"
    f32 = [a.to(torch.float32).contiguous() for a in (temperature, top_p, min_p, row_max, exp_sum)]
    _tail_floor_kernel[(S,)](logits, *f32, search.to(torch.int32).contiguous(), tau, V, logits.stride(0),
                             BLOCK=TAIL_BLOCK if cuda else 256, SPLITS=TAIL_SPLITS, PASSES=TAIL_PASSES,
                             NEED_MIN_P=need_min_p, LIBDEVICE_EXP=cuda, num_warps=TAIL_WARPS if cuda else 4,
                             **pdl_args(logits.device))


def _float_keys(x: torch.Tensor) -> torch.Tensor:
    bits = x.contiguous().view(torch.int32).to(torch.int64)
    return torch.where(bits < 0, bits ^ 0x7FFFFFFF, bits)


def _key_floats(keys: torch.Tensor) -> torch.Tensor:
    bits = torch.where(keys < 0, keys ^ 0x7FFFFFFF, keys).to(torch.int32)
    return bits.view(torch.float32)


def tail_floor_ref(logits: torch.Tensor, temperature: torch.Tensor, top_p: torch.Tensor, min_p: torch.Tensor,
                   row_max: torch.Tensor, exp_sum: torch.Tensor, search: torch.Tensor, tau: torch.Tensor,
                   need_min_p: bool = True) -> None:
    """Plain-PyTorch :func:`tail_floor`: top-p's floor by a binary search (the answer is one value, however it is
    searched) on every row, the masses summed as masked_exp_sum_ref sums; min-p's as a masked minimum; kept where
    search is nonzero."""
    S, V = logits.shape
    x = logits.float() / torch.where(temperature > 0, temperature, 1.0).unsqueeze(1)
    terms = torch.exp(x - row_max.unsqueeze(1))
    budget = top_p * exp_sum
    hi = _float_keys(tau)
    lo = torch.full_like(hi, MINUS_INF_KEY)
    for _ in range(32):
        mid = lo + (hi - lo) // 2
        above = torch.where(x > _key_floats(mid).unsqueeze(1), terms, 0.0)
        above = torch.nn.functional.pad(above, (0, -V % REF_EXP_SUM_BLOCK))
        kept = above.view(S, -1, REF_EXP_SUM_BLOCK).sum(dim=1).sum(dim=1) < budget
        hi = torch.where(kept, mid, hi)
        lo = torch.where(kept, lo, mid)
    floor = torch.where(top_p < 1.0, _key_floats(hi), float("-inf"))
    if need_min_p:
        keeps = terms / exp_sum.unsqueeze(1) >= (min_p * (1.0 / exp_sum)).unsqueeze(1)
        least = torch.where(keeps, x, float("inf")).min(dim=1).values
        floor = torch.maximum(floor, torch.where(least < float("inf"), least, float("-inf")))
    tau.copy_(torch.where(search != 0, floor, tau))


# torch.cumsum is not batch-invariant on CUDA: a lone row goes to CUB's device scan, and several rows to a tree scan
# over tiles whose width follows both the row count and the row length (ATen's get_log_num_threads_x_inner_scan).
# candidate_thresholds scans a row in CUDA_CUMSUM_BLOCK-wide tiles from its start, each tile's scan carried by the
# previous tile's last sum: the order of a position's sum depends on the position alone, not on S or the row length.
CUDA_CUMSUM_BLOCK = 1024


def row_cumsum_ref(x: torch.Tensor) -> torch.Tensor:
    """Inclusive prefix sums along each row in float32, as candidate_thresholds' mass scan (on the CPU a row is
    summed in order, accumulated in float64); equal to the kernel's up to float32 rounding."""
    return x.float().cumsum(dim=-1)


def _mix32_ref(x: torch.Tensor) -> torch.Tensor:
    x = x ^ (x >> 16)
    x = (x * 0x7FEB352D) & _MASK32
    x = x ^ (x >> 15)
    x = (x * 0x846CA68B) & _MASK32
    return x ^ (x >> 16)


def gumbel_noise_ref(streams: torch.Tensor, vocab: int) -> torch.Tensor:
    """[S, V] standard Gumbel noise (a copy of spmd_infer.layers.sampler.gumbel_noise)."""
    ids = torch.arange(vocab, device=streams.device, dtype=torch.int64)
    bits = _mix32_ref(_mix32_ref(streams.to(torch.int64).unsqueeze(1) ^ ids.unsqueeze(0)))
    u = ((bits >> 8).to(torch.float32) + 0.5) / 2.0**24
    return -torch.log(-torch.log(u))


def gumbel_sample_ref(
    logits: torch.Tensor,
    temperature: torch.Tensor,
    streams: torch.Tensor,
    threshold: torch.Tensor | None = None,
    num_chunks: int | None = None,
) -> torch.Tensor:
    """Plain-PyTorch reference for :func:`gumbel_sample`."""
    logits = logits.float()
    greedy = logits.argmax(dim=-1)
    scaled = logits / torch.where(temperature > 0, temperature, 1.0).unsqueeze(1)
    if threshold is not None:
        scaled = torch.where(scaled >= threshold.unsqueeze(1), scaled, float("-inf"))
    drawn = (scaled + gumbel_noise_ref(streams, logits.shape[-1])).argmax(dim=-1)
    return torch.where(temperature > 0, drawn, greedy)

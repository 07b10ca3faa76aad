import pytest
import torch

from spmd_kernels import (
    greedy_argmax,
    gumbel_sample,
    gumbel_sample_ref,
    masked_exp_sum_ref,
    tail_floor,
    tail_floor_ref,
)
from spmd_kernels.sampling import gumbel_noise_ref


def _inputs(S, V, device, greedy_rows=()):
    logits = torch.randn(S, V, device=device) * 3
    if V > 4:
        logits[:, 1::5] = float("-inf")  # masked tokens (penalties, bad words)
    temperature = torch.rand(S, device=device) * 1.5 + 0.1
    for r in greedy_rows:
        temperature[r] = 0.0
    streams = torch.randint(0, 2**32, (S,), dtype=torch.int64, device=device)
    return logits, temperature, streams


@pytest.mark.parametrize("S,V", [(1, 1), (3, 7), (16, 1000), (5, 3001)])
@pytest.mark.parametrize("num_chunks", [1, 3, None])
def test_gumbel_sample(S, V, num_chunks, device):
    logits, temperature, streams = _inputs(S, V, device, greedy_rows=(0,) if S > 2 else ())
    ids = gumbel_sample(logits, temperature, streams, num_chunks=num_chunks)
    assert ids.shape == (S,) and ids.dtype == torch.int64
    assert torch.equal(ids, gumbel_sample_ref(logits, temperature, streams))


@pytest.mark.parametrize("S,V", [(1, 1), (1, 3001), (4, 1000), (2, 5000)])
@pytest.mark.parametrize("num_chunks", [1, 4, None])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_greedy_argmax(S, V, num_chunks, dtype, device):
    logits = (torch.randn(S, V, device=device) * 3).to(dtype)
    if V > 4:
        logits[:, 1::5] = float("-inf")
    if V > 2000:  # a tie across chunks: the lower token id wins, as in torch.argmax
        top = logits.float().max() + 1
        logits[:, 1900] = top
        logits[:, V - 3] = top
    ids = greedy_argmax(logits, num_chunks=num_chunks)
    assert ids.shape == (S,) and ids.dtype == torch.int64
    assert torch.equal(ids, logits.argmax(dim=-1))
    assert greedy_argmax(logits[:0]).shape == (0,)


def test_gumbel_sample_matches_sampler(device):
    # The same tokens as spmd_infer.layers.sampler's temperature path (gumbel_noise + argmax).
    from spmd_infer.layers.sampler import gumbel_noise, row_stream

    S, V = 12, 2048
    logits, temperature, _ = _inputs(S, V, device, greedy_rows=(3, 7))
    streams = torch.tensor([row_stream(1234 + r, 5 * r) for r in range(S)], dtype=torch.int64, device=device)
    assert torch.equal(gumbel_noise_ref(streams, V), gumbel_noise(streams, V))
    expected = torch.where(temperature > 0,
                           (logits / torch.where(temperature > 0, temperature, 1.0)[:, None]
                            + gumbel_noise(streams, V)).argmax(-1),
                           logits.argmax(-1))
    assert torch.equal(gumbel_sample(logits, temperature, streams, num_chunks=2), expected)


def test_gumbel_sample_ties_and_all_masked(device):
    # Greedy rows with tied maxima take the lowest id; an all -inf row gives token 0, like argmax.
    logits = torch.zeros(3, 600, device=device)
    logits[0, [17, 300, 599]] = 5.0
    logits[1] = float("-inf")
    logits[2, [450, 451]] = 2.0
    temperature = torch.zeros(3, device=device)
    streams = torch.zeros(3, dtype=torch.int64, device=device)
    for chunks in (1, 4):
        ids = gumbel_sample(logits, temperature, streams, num_chunks=chunks)
        assert ids.tolist() == [17, 0, 450]


def test_gumbel_sample_empty(device):
    ids = gumbel_sample(torch.empty(0, 10, device=device), torch.empty(0, device=device),
                        torch.empty(0, dtype=torch.int64, device=device))
    assert ids.shape == (0,) and ids.dtype == torch.int64



def _scaled(logits, temperature):
    return logits.float() / torch.where(temperature > 0, temperature, 1.0)[:, None]


@pytest.mark.parametrize("S,V", [(1, 1), (3, 7), (16, 1000), (5, 3001)])
@pytest.mark.parametrize("num_chunks", [1, 3, None])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_gumbel_sample_threshold(S, V, num_chunks, dtype, device):
    # Sampled rows keep only scaled values >= their threshold (itself kept: thresholds are values of the row);
    # -inf keeps every token; greedy rows (0, and 2 when S > 2) ignore theirs.
    torch.manual_seed(S * 7 + V)
    logits, temperature, streams = _inputs(S, V, device, greedy_rows=(0, 2) if S > 2 else ())
    logits = logits.to(dtype)
    scaled = _scaled(logits, temperature)
    ranked = scaled.sort(dim=1, descending=True).values
    threshold = ranked[torch.arange(S), torch.tensor([(3 * r) % V for r in range(S)])].contiguous()
    threshold[3::4] = float("-inf")
    # Odd rows: the least value above the unfiltered draw's, so that the threshold must move that draw.
    free = gumbel_sample(logits, temperature, streams, num_chunks=num_chunks)
    free_value = scaled.gather(1, free[:, None])
    above = torch.where(scaled > free_value, scaled, float("inf")).min(dim=1).values
    moved = (torch.arange(S, device=device) % 2 == 1) & (above < float("inf")) & (temperature > 0)
    threshold = torch.where(moved, above, threshold)
    ids = gumbel_sample(logits, temperature, streams, threshold, num_chunks=num_chunks)
    assert ids.shape == (S,) and ids.dtype == torch.int64
    assert torch.equal(ids, gumbel_sample_ref(logits, temperature, streams, threshold))
    picked = scaled.gather(1, ids[:, None]).squeeze(1)
    sampled = temperature > 0
    assert (picked[sampled] >= threshold[sampled]).all()
    assert (ids[moved] != free[moved]).all()
    assert torch.equal(ids[~sampled], logits.float().argmax(dim=-1)[~sampled])
    assert torch.equal(ids[threshold == float("-inf")], free[threshold == float("-inf")])


def test_gumbel_sample_threshold_drops_tokens(device):
    # The row's max as threshold leaves the tied maxima alone: the draw is one of them, whatever the noise.
    logits = torch.zeros(64, 500, device=device)
    logits[:, [3, 250, 499]] = 2.0
    temperature = torch.ones(64, device=device)
    streams = torch.arange(64, dtype=torch.int64, device=device)
    for chunks in (1, 4):
        ids = gumbel_sample(logits, temperature, streams, torch.full((64,), 2.0, device=device), num_chunks=chunks)
        assert set(ids.tolist()) == {3, 250, 499}
        free = gumbel_sample(logits, temperature, streams, torch.full((64,), float("-inf"), device=device),
                             num_chunks=chunks)
        assert torch.equal(free, gumbel_sample(logits, temperature, streams, num_chunks=chunks))
        assert len(set(free.tolist()) - {3, 250, 499}) > 0


def test_gumbel_sample_threshold_empty(device):
    ids = gumbel_sample(torch.empty(0, 10, device=device), torch.empty(0, device=device),
                        torch.empty(0, dtype=torch.int64, device=device), torch.empty(0, device=device))
    assert ids.shape == (0,) and ids.dtype == torch.int64


def _top_p_case(S, V, dtype, device, seed=0):
    """Flat rows (their top-p sets hold most of the row), masked tokens, one greedy-temperature row; each row's
    upper bound the largest value, which the rule always keeps."""
    g = torch.Generator().manual_seed(seed)
    logits = (torch.randn(S, V, generator=g) * 0.5).to(dtype).to(device)
    if V > 4:
        logits[:, 3::7] = float("-inf")
    temperature = (torch.rand(S, generator=g) + 0.5).to(device)
    temperature[0] = 0.0  # scaled as by 1
    top_p = (torch.rand(S, generator=g) * 0.9 + 0.05).to(device)
    scaled = logits.float() / torch.where(temperature > 0, temperature, 1.0).unsqueeze(1)
    row_max = scaled.max(dim=1).values
    floor = torch.full((S,), float("-inf"), device=device)
    exp_sum = masked_exp_sum_ref(logits, temperature, floor, row_max)
    return logits, temperature, top_p, row_max, exp_sum, scaled


def _rule_floor(x, top_p, min_p):
    """The least finite value a flat row keeps under top-p (mass strictly above < top_p) and min-p (p >= min_p *
    max p), written out in float64."""
    prob = torch.exp(x - x.max())
    prob = prob / prob.sum()
    kept = torch.isfinite(x)
    if top_p < 1:
        kept &= torch.stack([prob[x > v].sum() for v in x]) < top_p
    if min_p > 0:
        kept &= prob >= min_p * prob.max()
    return float(x[kept].min())


@pytest.mark.parametrize("S,V", [(1, 5), (3, 7), (4, 1000), (2, 3001)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("with_min_p", [False, True])
def test_tail_floor(S, V, dtype, with_min_p, device):
    logits, temperature, top_p, row_max, exp_sum, scaled = _top_p_case(S, V, dtype, device)
    min_p = torch.zeros(S, device=device)
    if with_min_p:
        min_p = torch.tensor([0.3, 0.05, 0.0, 0.5][:S] + [0.1] * (S - 4), device=device)
        top_p[S // 2:] = 1.0  # min-p alone on some rows
    search = torch.ones(S, dtype=torch.int32, device=device)
    if S > 2:
        search[1] = 0  # a row that needs no search keeps its value
    start = row_max.clone()
    tau, ref = start.clone(), start.clone()
    tail_floor(logits, temperature, top_p, min_p, row_max, exp_sum, search, tau, with_min_p)
    tail_floor_ref(logits, temperature, top_p, min_p, row_max, exp_sum, search, ref, with_min_p)
    assert torch.equal(tau, ref)
    if S > 2:
        assert tau[1] == start[1]
    for r in range(S):
        if search[r] and (top_p[r] < 1 or min_p[r] > 0):
            assert float(tau[r]) == _rule_floor(scaled[r].double().cpu(), float(top_p[r]), float(min_p[r]))


def test_tail_floor_batch_invariant(device):
    logits, temperature, top_p, row_max, exp_sum, _ = _top_p_case(6, 2000, torch.float32, device, seed=1)
    min_p = torch.tensor([0.0, 0.2, 0.0, 0.05, 0.4, 0.0], device=device)
    search = torch.ones(6, dtype=torch.int32, device=device)
    tau = row_max.clone()
    tail_floor(logits, temperature, top_p, min_p, row_max, exp_sum, search, tau)
    for r in range(6):
        alone = row_max[r:r + 1].clone()
        rows = slice(r, r + 1)
        tail_floor(logits[rows], temperature[rows], top_p[rows], min_p[rows], row_max[rows], exp_sum[rows],
                   search[rows], alone)
        assert torch.equal(alone, tau[rows])

import pytest
import torch

from spmd_kernels import greedy_argmax, gumbel_sample, gumbel_sample_ref
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


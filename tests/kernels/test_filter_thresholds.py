"""candidate_thresholds (the sampler's top-k / top-p / min-p threshold from a row's sorted candidates, one launch)
against its torch reference, its exp sum against a plain float64 sum, and its batch and candidate-count invariance."""

import pytest
import torch

from spmd_kernels import candidate_thresholds, candidate_thresholds_ref


def _case(S, V, K, dtype, device, seed):
    """Rows of random logits with masked tokens and every filter setting the sampler passes: top_k off (0, -1, past
    the vocabulary), inside the candidates; top_p off (1) or on; min_p off or on. K 0: whole sorted rows."""
    g = torch.Generator().manual_seed(seed)
    logits = (torch.randn(S, V, generator=g) * 3).to(dtype)
    if V > 4:
        logits[:, 1::5] = float("-inf")  # masked tokens (bad words, min_tokens)
    temperature = torch.rand(S, generator=g) * 1.5 + 0.2
    k_choices = torch.tensor([0, -1, 1, 5, 20, V, V + 3])
    top_k = k_choices[torch.randint(0, len(k_choices), (S,), generator=g)]
    if K:
        top_k = torch.where(top_k > K, torch.tensor(K), top_k)  # the topk group's rows: k within the candidates
    top_p = torch.where(torch.rand(S, generator=g) < 0.3, 1.0, torch.rand(S, generator=g) * 0.95 + 0.02)
    min_p = torch.where(torch.rand(S, generator=g) < 0.5, 0.0, torch.rand(S, generator=g) * 0.2)
    cand = logits.topk(min(K, V), dim=-1).values if K else logits.sort(dim=-1, descending=True).values
    return [t.to(device) for t in (logits, cand, temperature, top_k, top_p.float(), min_p.float())]


FLAGS = [(True, True), (True, False), (False, True), (False, False)]


@pytest.mark.parametrize("S,V,K", [(1, 1, 1), (3, 7, 5), (5, 300, 0), (4, 1000, 20), (6, 3001, 1024), (2, 2000, 0)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("need_top_p,need_min_p", FLAGS)
def test_candidate_thresholds(S, V, K, dtype, need_top_p, need_min_p, device):
    args = _case(S, V, K, dtype, device, seed=S * 31 + V + K)
    tau, count, row_max, z = candidate_thresholds(*args, need_top_p, need_min_p)
    tau_r, count_r, max_r, z_r = candidate_thresholds_ref(*args, need_top_p, need_min_p)
    assert tau.dtype == row_max.dtype == z.dtype == torch.float32 and count.dtype == torch.int32
    assert torch.equal(count, count_r) and torch.equal(tau, tau_r) and torch.equal(row_max, max_r)
    if need_top_p or need_min_p:
        torch.testing.assert_close(z, z_r, rtol=1e-5, atol=0)
        # The exp sum itself, plainly in float64: over the scaled row's top-k set (ties past the candidates too).
        logits, cand, temperature, top_k = args[:4]
        scaled = logits.double() / temperature.double().unsqueeze(1)
        kth = (cand.double() / temperature.double().unsqueeze(1)).gather(
            1, (top_k.clamp(1, cand.shape[1]) - 1).unsqueeze(1))
        on = ((top_k > 0) & (top_k < V)).unsqueeze(1)
        within = ~on | (logits.float() / temperature.unsqueeze(1) >= kth.float())
        plain = torch.where(within, (scaled - row_max.double().unsqueeze(1)).exp(), 0.0).sum(dim=1)
        torch.testing.assert_close(z.double(), plain, rtol=1e-5, atol=0)


def test_thresholds_keep_the_rules_prefix(device):
    # Spelled out on one row: top_k 3 of distinct values keeps three; top_p keeps until the mass before reaches it.
    logits = torch.tensor([[4.0, 3.0, 2.0, 1.0, 0.0, -1.0]], device=device)
    one = torch.ones(1, device=device)
    args = lambda k, p, mp: (logits, logits, one, torch.tensor([k], device=device),  # noqa: E731
                             torch.tensor([p], device=device), torch.tensor([mp], device=device), True, True)
    tau, count, _, _ = candidate_thresholds(*args(3, 1.0, 0.0))
    assert count.item() == 3 and tau.item() == 2.0
    probs = logits.double().softmax(dim=1)[0]
    tau, count, _, _ = candidate_thresholds(*args(0, float(probs[0] + probs[1]) - 1e-6, 0.0))
    assert count.item() == 2 and tau.item() == 3.0  # the third's mass before is past top_p
    tau, count, _, _ = candidate_thresholds(*args(0, 1.0, float(probs[2] / probs[0]) - 1e-6))
    assert count.item() == 3 and tau.item() == 2.0  # min_p: p >= min_p * max p
    tau, count, _, _ = candidate_thresholds(*args(0, 1e-9, 0.0))
    assert count.item() == 1 and tau.item() == 4.0  # the most probable always stays


def test_all_masked_row_and_empty_batch(device):
    logits = torch.full((1, 50), float("-inf"), device=device)
    args = (logits, logits[:, :10], torch.ones(1, device=device), torch.tensor([5], device=device),
            torch.tensor([0.5], device=device), torch.tensor([0.1], device=device), True, True)
    tau, count, _, _ = candidate_thresholds(*args)
    assert tau.item() == float("-inf") and count.item() >= 1
    empty = [a[:0] if torch.is_tensor(a) else a for a in args]
    assert all(t.shape == (0,) for t in candidate_thresholds(*empty))


def test_batch_and_candidate_count_invariant(device):
    # A row's threshold is the same bits alone, in a batch in another order, and with more candidates than its
    # own top_k needs (a group's candidate count is its largest top_k).
    S, V = 7, 2500
    logits, cand, temperature, top_k, top_p, min_p = _case(S, V, 64, torch.float32, device, seed=9)
    top_k = torch.where(top_k > 20, torch.tensor(20, device=device), top_k)
    full = candidate_thresholds(logits, cand, temperature, top_k, top_p, min_p, True, True)
    for r in range(S):
        rows = slice(r, r + 1)
        alone = candidate_thresholds(logits[rows], cand[rows], temperature[rows], top_k[rows], top_p[rows],
                                     min_p[rows], True, True)
        assert all(torch.equal(a, f[rows]) for a, f in zip(alone, full))
    order = torch.randperm(S, device=device)
    shuffled = candidate_thresholds(logits[order], cand[order], temperature[order], top_k[order], top_p[order],
                                    min_p[order], True, True)
    assert all(torch.equal(a, f[order]) for a, f in zip(shuffled, full))
    wide = logits.topk(300, dim=-1).values
    more = candidate_thresholds(logits, wide, temperature, top_k, top_p, min_p, True, True)
    inside = full[1] < cand.shape[1]  # rows whose kept prefix ends inside the 64
    assert inside.sum() >= S // 2
    assert torch.equal(more[0][inside], full[0][inside]) and torch.equal(more[1][inside], full[1][inside])

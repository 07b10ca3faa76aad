"""The sampler's top-k / top-p / min-p as a per-row threshold against the rules computed plainly per row (float64
probabilities, masses by brute force), tie rules on logits with many exact ties, and batch invariance."""

from __future__ import annotations

import pytest
import torch

from spmd_infer.layers.sampler import TOPK_CANDIDATES, SamplingTensors, filter_thresholds, gumbel_noise, sample
from spmd_infer.sampling_params import SamplingParams

V = 3000  # above TOPK_CANDIDATES, so that a top_k past it still filters
P = SamplingParams
HAS_CUDA = torch.cuda.is_available()
# (device, kernels): the thresholds' torch references, or the Triton kernels (on the CPU under the interpreter,
# which tests/conftest.py turns on only where CUDA is absent).
PATHS = [("cpu", False)] + ([("cuda", False), ("cuda", True)] if HAS_CUDA else [("cpu", True)])
DEVICES = ["cpu"] + (["cuda"] if HAS_CUDA else [])  # CUDA: the fused kernel with thresholds

MIXED = [
    P(temperature=0.9, top_k=20),
    P(temperature=0.6, top_k=20, top_p=0.95),  # Qwen3's defaults: the topk group
    P(temperature=0.6, top_p=0.9),  # Llama-3's: top_p alone, its set inside the candidates
    P(temperature=1.0, min_p=0.05),
    P(temperature=0.0, top_k=5, top_p=0.5),  # greedy: filters ignored
    P(temperature=1.3, top_k=TOPK_CANDIDATES + 500, top_p=0.8),  # top_k past the candidates: the sort group
    P(temperature=0.7, top_k=TOPK_CANDIDATES, min_p=0.02),
    P(temperature=1.1),  # no filter
    P(temperature=0.8, top_k=50, top_p=0.7, min_p=0.1),
    P(temperature=1.0, top_k=1),
    P(temperature=1.0, top_p=1e-6),
    P(temperature=2.0, top_k=V + 5, min_p=0.3),  # top_k past the vocabulary: off
    P(temperature=0.5, top_k=-1, top_p=0.3),  # vLLM's top_k -1 (off): top_p alone
    P(temperature=1.0, top_k=V - 1),
    P(temperature=5.0, top_p=0.9),  # flat: its top-p set runs past the candidates (the bisection)
    P(temperature=8.0, top_p=0.99),
    P(temperature=8.0, min_p=0.05),  # flat: its min-p set runs past the candidates (tail_floor's min-p pass)
    P(temperature=5.0, top_p=0.9, min_p=0.02),  # flat, both rules past the candidates: the larger floor
    P(temperature=6.0, top_p=0.95, min_p=0.6),  # flat top-p past the candidates, min-p's set inside them
]


def _logits(kind: str, S: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(S, V, generator=g) * 3
    if kind == "ties":  # multiples of 0.25: long runs of exactly tied values, at every rank
        x = (x * 4).round() / 4
    if kind == "fp16":
        x = x.half()
    x[:, 7::11] = float("-inf")  # masked tokens (bad words, min_tokens)
    return x


def _kept_reference(row: torch.Tensor, p: SamplingParams) -> tuple[torch.Tensor, float]:
    """The rules written out for one row: (kept mask [V], distance of the nearest decision to its bound)."""
    x = row.float() / p.temperature  # the sampler's float32 scaled values: the same ties
    within = torch.ones(V, dtype=torch.bool)
    if 0 < p.top_k < V:
        within = x >= x.sort(descending=True).values[p.top_k - 1]
    prob = torch.zeros(V, dtype=torch.float64)
    prob[within] = x[within].double().softmax(dim=0)
    keep = within.clone()
    margin = float("inf")
    if p.min_p > 0:
        bound = p.min_p * prob.max()
        keep &= prob >= bound
        margin = min(margin, ((prob[within] - bound).abs() / prob.max()).min().item())
    if p.top_p < 1:
        larger = x[None, :] > x[:, None]  # [v, u]: u strictly more probable than v
        mass = (larger.double() * prob[None, :]).sum(dim=1)
        keep &= mass < p.top_p
        inexact = within & (mass > 0)  # the most probable tokens' 0 is exact in float32 too
        margin = min(margin, (mass[inexact] - p.top_p).abs().min().item())
    return keep, margin


def _tensors(params, positions=None, device="cpu"):
    positions = positions if positions is not None else [3] * len(params)
    return SamplingTensors.build(params, keys=[1000 + 17 * i for i in range(len(params))], positions=positions,
                                 device=torch.device(device))


def _expected_tokens(logits, params, t):
    """argmax over each row's kept tokens of scaled + noise; greedy rows: argmax of the raw logits."""
    noise = gumbel_noise(t.streams, V).cpu()  # on the device's own log, as the fused kernel's noise
    out = []
    for r, p in enumerate(params):
        if p.greedy:
            out.append(int(logits[r].float().argmax()))
            continue
        keep, margin = _kept_reference(logits[r], p)
        assert margin > 1e-5, f"row {r}: a decision too close to its bound for float32 (test data)"
        scaled = logits[r].float() / p.temperature
        out.append(int(torch.where(keep, scaled + noise[r], float("-inf")).argmax()))
    return out


@pytest.mark.parametrize("device,kernels", PATHS)
@pytest.mark.parametrize("kind", ["random", "ties", "fp16"])
def test_thresholds_keep_what_the_rules_keep(kind, device, kernels):
    logits = _logits(kind, len(MIXED), seed=6)
    tau = filter_thresholds(logits.to(device), _tensors(MIXED, device=device), kernels=kernels).cpu()
    checked = 0
    for r, p in enumerate(MIXED):
        filtered = not p.greedy and (p.top_k > 0 or p.top_p < 1 or p.min_p > 0)
        if not filtered:
            assert tau[r] == float("-inf")
            continue
        keep, margin = _kept_reference(logits[r], p)
        assert margin > 1e-5, f"row {r}: a decision too close to its bound for float32 (test data)"
        kept = logits[r].float() / p.temperature >= tau[r]
        assert torch.equal(kept, keep), (r, p, int(kept.sum()), int(keep.sum()))
        checked += 1
    assert checked == 17
    # The flat rows' sets hold more than the candidates: their thresholds came from tail_floor.
    assert all(int(_kept_reference(logits[r], MIXED[r])[0].sum()) > TOPK_CANDIDATES for r in (14, 15, 16, 17))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("kind", ["random", "ties", "fp16"])
def test_sample_draws_the_rules_argmax(kind, device):
    logits = _logits(kind, len(MIXED), seed=2)
    for step in range(3):
        t = _tensors(MIXED, positions=[step] * len(MIXED), device=device)
        assert sample(logits.to(device), t).tolist() == _expected_tokens(logits, MIXED, t)


@pytest.mark.parametrize("device,kernels", PATHS)
@pytest.mark.parametrize("kind", ["random", "ties"])
def test_each_row_alone_draws_what_it_draws_in_the_batch(kind, device, kernels):
    # A row's group (topk or sort) and its threshold follow its own parameters; the candidates' count (the batch's
    # largest top_k), the other rows and their order change nothing, to the bit.
    logits = _logits(kind, len(MIXED), seed=3).to(device)
    t = _tensors(MIXED, device=device)
    tau = filter_thresholds(logits, t, kernels=kernels)
    tokens = sample(logits, t)
    keys = [1000 + 17 * i for i in range(len(MIXED))]
    for r, p in enumerate(MIXED):
        alone = SamplingTensors.build([p], keys=[keys[r]], positions=[3], device=torch.device(device))
        if alone.need_top_k or alone.need_top_p or alone.need_min_p:
            assert torch.equal(filter_thresholds(logits[r:r + 1], alone, kernels=kernels), tau[r:r + 1]), r
        assert sample(logits[r:r + 1], alone).tolist() == tokens[r:r + 1].tolist(), r
    order = list(reversed(range(len(MIXED))))
    shuffled = SamplingTensors.build([MIXED[i] for i in order], keys=[keys[i] for i in order],
                                     positions=[3] * len(MIXED), device=torch.device(device))
    assert torch.equal(filter_thresholds(logits[order], shuffled, kernels=kernels), tau[order])
    assert sample(logits[order], shuffled).tolist() == tokens[order].tolist()


def test_row_groups_follow_each_rows_parameters():
    t = _tensors(MIXED)
    assert t.topk_rows.tolist() == [0, 1, 6, 8, 9]
    assert t.tail_rows.tolist() == [2, 3, 10, 12, 14, 15, 16, 17, 18]
    assert t.sort_rows.tolist() == [5, 11, 13]
    assert t.topk_kmax == TOPK_CANDIDATES
    assert _tensors([P(temperature=0.0, top_k=3)]).all_greedy


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("params", [P(temperature=1.0, top_k=1), P(temperature=0.7, top_p=1e-6),
                                    P(temperature=1.5, top_k=40, top_p=1e-6), P(temperature=1.0, min_p=1.0)])
def test_narrowest_filters_draw_the_argmax(params, device):
    logits = _logits("random", 16, seed=4).to(device)
    for step in range(4):
        t = _tensors([params] * 16, positions=[step] * 16, device=device)
        assert torch.equal(sample(logits, t), logits.argmax(dim=-1))


def test_tied_maxima_stay_together():
    # Four tokens tied at the max, each 1/4 of the mass: the mass strictly above any of them is 0, so top_p 0.3
    # keeps all four (a sorted-order rule kept two, picked by the sort) and top_k 1 keeps all four too.
    logits = torch.full((1, V), -30.0)
    ties = [5, 900, 1800, 2999]
    logits[0, ties] = 4.0
    for params in (P(temperature=1.0, top_p=0.3), P(temperature=1.0, top_k=1), P(temperature=1.0, top_k=3)):
        t = _tensors([params])
        assert filter_thresholds(logits, t).item() == 4.0
        drawn = {sample(logits, _tensors([params], positions=[s])).item() for s in range(64)}
        assert drawn == set(ties)


def test_top_p_tie_group_at_the_bound():
    # Masses 0.4 | 0.2 0.2 | 0.1 0.1: a tie group stays whole when the mass above it is below top_p, although the
    # mass before its second member in sorted order is not (top_p 0.5: a sorted-order rule kept two tokens).
    probs = torch.tensor([0.4, 0.2, 0.2, 0.1, 0.1])
    logits = torch.full((1, V), float("-inf"))
    logits[0, :5] = probs.log()
    for top_p, kept in ((0.5, 3), (0.65, 3), (0.35, 1), (0.85, 5)):
        tau = filter_thresholds(logits, _tensors([P(temperature=1.0, top_p=top_p)]))
        assert int((logits[0] >= tau).sum()) == kept, top_p


def test_all_masked_row_keeps_every_token():
    logits = torch.full((2, V), float("-inf"))
    logits[1, 10] = 0.0
    t = _tensors([P(temperature=1.0, top_p=0.9, min_p=0.1)] * 2)
    tau = filter_thresholds(logits, t)
    assert tau[0] == float("-inf") and tau[1] == 0.0
    assert sample(logits, t).tolist() == [0, 10]


def test_startup_batches_compile_every_threshold_variant():
    # The threshold kernels specialise on whether a step has top_p / min_p rows: the startup pass over the sampler
    # (engine/sampler_warmup.py) must meet every pair, or a job's first such step compiles mid-run.
    from spmd_infer.engine.sampler_warmup import BATCHES

    candidates, tail = set(), set()
    for batch in BATCHES:
        t = _tensors(batch)
        if t.topk_rows.numel() + t.tail_rows.numel() + t.sort_rows.numel():
            candidates.add((t.need_top_p, t.need_min_p))
        if t.tail_rows.numel():
            tail.add(t.need_min_p)
    assert candidates == {(False, False), (False, True), (True, False), (True, True)}
    assert tail == {False, True}

import pytest
import torch

from spmd_kernels import apply_penalties, apply_penalties_ref
from spmd_kernels.penalties import PROMPT_BIT


def _counts(R, V, device, seed=0):
    """Count rows: about a fifth of tokens in the prompt, a tenth in the output (1-3 times), some in both."""
    g = torch.Generator().manual_seed(seed)
    prompt = torch.rand(R, V, generator=g) < 0.2
    out = torch.where(torch.rand(R, V, generator=g) < 0.1, torch.randint(1, 4, (R, V), generator=g), 0)
    return (prompt.to(torch.int32) * PROMPT_BIT + out.to(torch.int32)).to(device)


def _plain_rules(logits, rows, counts, repetition, presence, frequency):
    """The rules one token at a time: transformers' repetition penalty on prompt and output tokens, then OpenAI's
    presence and frequency penalties on the output (vLLM's order)."""
    out = logits.clone()
    for s, row in enumerate(rows.tolist()):
        if row < 0:
            continue
        for v in range(logits.shape[1]):
            c = int(counts[row, v])
            n = c & (PROMPT_BIT - 1)
            x = out[s, v]
            if c:
                x = x / repetition[s] if x > 0 else x * repetition[s]
            if n:
                x = x - (presence[s] + frequency[s] * n)
            out[s, v] = x
    return out


def _inputs(S, V, R, device):
    logits = torch.randn(S, V, device=device) * 3
    if V > 4:
        logits[:, 2::7] = float("-inf")  # banned tokens stay banned
    rows = torch.randint(0, R, (S,), device=device)
    if S > 1:
        rows[1] = -1  # a sequence without penalties in a batch with some
    repetition = torch.rand(S, device=device) + 0.6
    presence = torch.rand(S, device=device) * 4 - 2
    frequency = torch.rand(S, device=device) * 4 - 2
    return logits, rows, repetition, presence, frequency


@pytest.mark.parametrize("S,V,R", [(1, 1, 1), (3, 7, 2), (5, 300, 8), (2, 3001, 3)])
def test_apply_penalties(S, V, R, device):
    logits, rows, repetition, presence, frequency = _inputs(S, V, R, device)
    counts = _counts(R, V + 5, device)  # the table may be wider than the logits
    ref = logits.clone()
    apply_penalties_ref(ref, rows, counts, repetition, presence, frequency)
    got = logits.clone()
    apply_penalties(got, rows, counts, repetition, presence, frequency)
    assert torch.equal(got, ref)
    if V <= 300:
        assert torch.equal(ref.cpu(), _plain_rules(logits.cpu(), rows.cpu(), counts.cpu(), repetition.cpu(),
                                                   presence.cpu(), frequency.cpu()))
    if S > 1:
        assert torch.equal(got[1], logits[1]), "a row without penalties is untouched"


def test_apply_penalties_neutral_values_and_empty(device):
    logits, rows, _, _, _ = _inputs(4, 50, 2, device)
    counts = _counts(2, 50, device)
    ones, zeros = torch.ones(4, device=device), torch.zeros(4, device=device)
    got = logits.clone()
    apply_penalties(got, rows, counts, ones, zeros, zeros)
    assert torch.equal(got, logits)
    empty = torch.empty(0, 50, device=device)
    apply_penalties(empty, rows[:0], counts, ones[:0], zeros[:0], zeros[:0])

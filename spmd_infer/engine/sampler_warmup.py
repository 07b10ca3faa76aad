"""Every sampling path run once at startup on dummy logits: its Triton kernels compile, and its memory peak counts.

A job meets a path first whenever a request first asks for it (a top-p row, a penalty, logits upcast to float32 for
a penalty): a kernel compiled then stalls that step for seconds, and in a DP job every other rank with it. The
logits here have the LM head's layout (a view of its padded, all-gathered width) and both dtypes the sampler sees
(the model's, and float32 once penalties apply), so the variants compiled are the ones the steps use.

It also runs the heaviest path at the largest batch, max_num_seqs rows (a full sort of every row, with a penalty
count table of that many rows alive), inside the warmup whose memory peak the KV cache is sized around: the
sampler's temporaries (at 256 rows and a 152k vocabulary, half a GiB for the sort) and the penalty table (155 MB)
then have their room, rather than borrowing from the share cache.gpu_memory_utilization leaves free.
"""

from __future__ import annotations

import torch

from ..data.request import Request
from ..layers.embed_head import ParallelLMHead
from ..layers.sampler import SamplingTensors, sample
from ..sampling_params import SamplingParams
from .penalty_state import PenaltyState
from .sequence import Sequence

# Batches that together compile every variant: greedy alone, unfiltered alone, and the threshold kernels' flag pairs
# (candidate_thresholds and tail_floor specialise on whether any row of the step has top_p / min_p): top-k alone,
# top-k with top-p (Qwen3's defaults), top-p alone (Llama-3's), min-p alone, and every kind at once (top-k
# candidates, the tail past them, and a full sort for a top_k past TOPK_CANDIDATES).
P = SamplingParams
BATCHES = [
    [P(temperature=0.0)],
    [P(temperature=1.0)],
    [P(temperature=1.0, top_k=20)],
    [P(temperature=1.0, top_k=20, top_p=0.9)],
    [P(temperature=1.0, top_p=0.9)],
    [P(temperature=1.0, min_p=0.05)],
    [P(temperature=0.0), P(temperature=1.0), P(temperature=1.0, top_k=20, top_p=0.9, min_p=0.05),
     P(temperature=1.0, top_p=0.9), P(temperature=1.0, top_p=0.9, min_p=0.05),
     P(temperature=1.0, top_k=2000, top_p=0.9, min_p=0.05)],
]
# The heaviest row: penalized, and its whole row sorted (top_k past the candidates).
PENALIZED = P(temperature=1.0, top_k=2000, top_p=0.9, min_p=0.05, repetition_penalty=1.1, presence_penalty=0.1,
              frequency_penalty=0.1)


@torch.inference_mode()
def warm_sampler(model: torch.nn.Module, vocab_size: int, dtype: torch.dtype, device: torch.device,
                 max_rows: int) -> None:
    """Sample dummy logits through each path, then the heaviest at max_rows rows (the engine calls it on CUDA, in
    its warmup: the CPU has nothing to compile or measure)."""
    head = next((m for m in model.modules() if isinstance(m, ParallelLMHead)), None)
    width = head.rows_per_rank * head.shard.size if head is not None else vocab_size
    rows = max(max_rows, max(len(b) for b in BATCHES))
    head_logits = torch.randn(rows, width, device=device).to(dtype)[:, :vocab_size]
    upcast = head_logits.float()  # as penalties make them
    for logits in (head_logits, upcast):
        for kinds in BATCHES:
            n = len(kinds)
            sample(logits[:n], SamplingTensors.build(kinds, [0] * n, [0] * n, device))
    # The largest step: every row penalized and fully sorted, on float32 logits.
    seqs = [Sequence(Request(index=-1 - i, id=f"sampler-warmup-{i}", prompt_token_ids=[0, 1, 1], sampling=PENALIZED))
            for i in range(rows)]
    penalties = PenaltyState(device)
    step = penalties.prepare(seqs, vocab_size)
    penalties.apply(upcast, step)
    params = [PENALIZED] * rows
    penalties.record(step, sample(upcast, SamplingTensors.build(params, [0] * rows, [0] * rows, device)))

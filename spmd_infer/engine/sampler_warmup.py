"""Every sampling path run once at startup on dummy logits, so its Triton kernels compile before the first real step.

A job meets a path first whenever a request first asks for it (a top-p row, a penalty, logits upcast to float32 for
a penalty): a kernel compiled then stalls that step for seconds, and in a DP job every other rank with it. The
logits here have the LM head's layout (a view of its padded, all-gathered width) and both dtypes the sampler sees
(the model's, and float32 once penalties apply), so the variants compiled are the ones the steps use.
"""

from __future__ import annotations

import torch

from ..data.request import Request
from ..layers.embed_head import ParallelLMHead
from ..layers.sampler import SamplingTensors, sample
from ..sampling_params import SamplingParams
from .penalty_state import PenaltyState
from .sequence import Sequence

# One row of each kind the sampler tells apart: greedy, unfiltered, top-k candidates, a full sort.
ROWS = [SamplingParams(temperature=0.0), SamplingParams(temperature=1.0),
        SamplingParams(temperature=1.0, top_k=20, top_p=0.9, min_p=0.05), SamplingParams(temperature=1.0, top_p=0.9)]
PENALIZED = SamplingParams(temperature=0.0, repetition_penalty=1.1, presence_penalty=0.1, frequency_penalty=0.1)


@torch.inference_mode()
def warm_sampler(model: torch.nn.Module, vocab_size: int, dtype: torch.dtype, device: torch.device) -> None:
    """Sample dummy logits through each path (the engine calls it on CUDA: the CPU has nothing to compile)."""
    head = next((m for m in model.modules() if isinstance(m, ParallelLMHead)), None)
    width = head.rows_per_rank * head.shard.size if head is not None else vocab_size
    head_logits = torch.randn(len(ROWS), width, device=device).to(dtype)[:, :vocab_size]
    for logits in (head_logits, head_logits.float()):  # as the head gives them, and upcast for penalties
        for rows in (ROWS[:1], ROWS[1:2], ROWS):  # all greedy, no filter, filters
            n = len(rows)
            sample(logits[:n], SamplingTensors.build(rows, [0] * n, [0] * n, device))
    seq = Sequence(Request(index=-1, id="sampler-warmup", prompt_token_ids=[0, 1, 1], sampling=PENALIZED))
    penalties = PenaltyState(device)
    logits = head_logits[:1].float()
    step = penalties.prepare([seq], vocab_size)
    penalties.apply(logits, step)
    penalties.record(step, sample(logits, SamplingTensors.build([PENALIZED], [0], [0], device)))

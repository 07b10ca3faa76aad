"""A launched step whose sampled tokens are still on the device (runtime.overlap_steps; prefills too with
runtime.overlap_prefill).

The next step reads them on the device (its input ids), and the host copy arrives in the background:
the host settles them one step late, while the GPU runs the step after.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch

from .scheduler import ScheduledBatch


@dataclass
class InFlight:
    batch: ScheduledBatch
    positions: list[int]
    """Each sequence's placeholder index in its token_ids (RequestSource.advance)."""
    device_tokens: torch.Tensor
    """[S] int64, one token per sampled sequence of the batch (batch.sampled_seqs), in batch order."""
    host_tokens: torch.Tensor
    """Their host copy: pinned and filled asynchronously on CUDA; the tokens themselves on the CPU."""
    ready: Optional[torch.cuda.Event]

    @classmethod
    def launch(cls, batch: ScheduledBatch, device_tokens: torch.Tensor, positions: list[int]) -> "InFlight":
        ready = None
        host = device_tokens
        if device_tokens.is_cuda:
            host = torch.empty(device_tokens.shape, dtype=device_tokens.dtype, pin_memory=True)
            host.copy_(device_tokens, non_blocking=True)
            ready = torch.cuda.Event()
            ready.record()
        return cls(batch, positions, device_tokens, host, ready)

    def tokens(self) -> list[int]:
        """Waits only for this step's copy (the GPU may already run the next step)."""
        if self.ready is not None:
            self.ready.synchronize()
        return self.host_tokens.tolist()

    def feedback(self, batch: ScheduledBatch) -> tuple[torch.Tensor, np.ndarray]:
        """For `batch`'s rows: where each one's input token sits in this step's device tokens (-1: known on the
        host). A decode's row is its sequence; a prefill's sequences are waiting ones, never sampled in flight."""
        row_of = {id(seq): i for i, seq in enumerate(self.batch.sampled_seqs)}
        return self.device_tokens, np.fromiter((row_of.get(id(seq), -1) for seq in batch.seqs), dtype=np.int64,
                                               count=len(batch.seqs))

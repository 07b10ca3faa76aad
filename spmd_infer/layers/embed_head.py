"""Vocab-parallel token embedding and LM head: each rank holds a contiguous slice of the vocabulary."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..parallel.comm import Shard, all_gather_last_dim, all_reduce
from .linear import linear
from .weights import CheckpointTensor, copy_checked


class VocabParallelEmbedding(nn.Module):
    def __init__(self, vocab_size: int, hidden_size: int, shard: Shard):
        super().__init__()
        self.vocab_size = vocab_size
        self.shard = shard
        # Pad so every rank holds the same number of rows; padded rows are zero and never looked up.
        self.rows_per_rank = -(-vocab_size // shard.size)
        self.vocab_start = shard.rank * self.rows_per_rank
        self.vocab_end = min(self.vocab_start + self.rows_per_rank, vocab_size)
        self.weight = nn.Parameter(torch.zeros(self.rows_per_rank, hidden_size), requires_grad=False)
        self.weight.weight_loader = self.weight_loader

    def weight_loader(self, param: nn.Parameter, src: CheckpointTensor, shard_id=None) -> None:
        n = self.vocab_end - self.vocab_start
        copy_checked(param.data[:n], src.narrow(0, self.vocab_start, n), src.name)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        if self.shard.size == 1:
            return F.embedding(input_ids, self.weight)
        mine = (input_ids >= self.vocab_start) & (input_ids < self.vocab_end)
        local = torch.where(mine, input_ids - self.vocab_start, 0)
        y = F.embedding(local, self.weight) * mine.unsqueeze(-1).to(self.weight.dtype)
        return all_reduce(y, self.shard)


class ParallelLMHead(VocabParallelEmbedding):
    """Logits for this rank's vocab slice, all-gathered so every rank of the shard sees the full row."""

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        logits = linear(hidden, self.weight)
        logits = all_gather_last_dim(logits, self.shard)
        return logits[..., : self.vocab_size]

"""CUDA graphs for decode steps: one graph per batch-size bucket, captured through the step function.

A decode step of B sequences replays the graph of the smallest bucket >= B, with the batch copied into
static input buffers and padding rows that own no cache slot. With DP attention every DP rank replays
the bucket chosen from the largest batch over DP ranks (the collectives inside the graph need the same
shapes everywhere); in decoupled mode each rank picks its own.
"""

from __future__ import annotations

import bisect
import logging
from dataclasses import dataclass
from typing import Optional

import torch

from ..forward_batch import ForwardBatch
from ..parallel.dp_meta import DPMeta

log = logging.getLogger(__name__)


def graph_buckets(max_num_seqs: int) -> list[int]:
    """1, 2, 4, 8, then every 16 up to max_num_seqs (vLLM's spacing): padding stays under 16 rows."""
    sizes = [b for b in (1, 2, 4, 8) if b < max_num_seqs] + list(range(16, max_num_seqs, 16)) + [max_num_seqs]
    return sorted(set(sizes))


def pick_bucket(buckets: list[int], num_seqs: int) -> Optional[int]:
    i = bisect.bisect_left(buckets, num_seqs)
    return buckets[i] if i < len(buckets) else None


@dataclass
class StaticInputs:
    """Device buffers the graphs read; a replay writes the step's batch into their first rows."""

    input_ids: torch.Tensor
    positions: torch.Tensor
    slot_mapping: torch.Tensor
    context_lens: torch.Tensor
    block_tables: torch.Tensor
    cu_seqlens_q: torch.Tensor
    logits_indices: torch.Tensor
    token_valid: torch.Tensor

    @classmethod
    def allocate(cls, max_bs: int, max_blocks: int, device: torch.device) -> "StaticInputs":
        def z(*shape, dtype):
            return torch.zeros(shape, dtype=dtype, device=device)

        return cls(input_ids=z(max_bs, dtype=torch.int64), positions=z(max_bs, dtype=torch.int64),
                   slot_mapping=z(max_bs, dtype=torch.int64), context_lens=z(max_bs, dtype=torch.int32),
                   block_tables=z(max_bs, max_blocks, dtype=torch.int32),
                   cu_seqlens_q=torch.arange(max_bs + 1, dtype=torch.int32, device=device),
                   logits_indices=torch.arange(max_bs, dtype=torch.int64, device=device),
                   token_valid=z(max_bs, dtype=torch.bool))


class DecodeGraphs:
    def __init__(self, buckets: list[int], max_blocks_per_seq: int, device: torch.device):
        self.buckets = buckets
        self.device = device
        self.inputs = StaticInputs.allocate(max(buckets), max_blocks_per_seq, device)
        self.graphs: dict[int, torch.cuda.CUDAGraph] = {}
        self.outputs: dict[int, torch.Tensor] = {}
        self.pool = None

    @property
    def max_batch(self) -> int:
        return max(self.buckets)

    def bucket_for(self, num_seqs: int) -> Optional[int]:
        return pick_bucket(self.buckets, max(num_seqs, 1))

    def load_padding(self, bucket: int, meta: DPMeta) -> ForwardBatch:
        """An idle DP rank's share of a graphed step: every row is padding."""
        self._all_padding(bucket)
        return self.batch_view(bucket, meta)

    def _all_padding(self, bucket: int) -> None:
        self.inputs.slot_mapping[:bucket].fill_(-1)
        self.inputs.context_lens[:bucket].fill_(1)
        self.inputs.token_valid[:bucket].fill_(False)

    def load(self, fb: ForwardBatch, bucket: int) -> ForwardBatch:
        """Copy an eager decode batch into the static buffers; rows past it are padding (no slot)."""
        s, n = self.inputs, fb.num_tokens
        s.input_ids[:n].copy_(fb.input_ids)
        s.positions[:n].copy_(fb.positions)
        s.slot_mapping[:n].copy_(fb.slot_mapping)
        s.slot_mapping[n:bucket].fill_(-1)
        s.token_valid[:n].fill_(True)
        s.token_valid[n:bucket].fill_(False)
        s.context_lens[:n].copy_(fb.context_lens)
        s.context_lens[n:bucket].fill_(1)  # padding rows attend to one (garbage) cache entry, never stored
        width = fb.block_tables.shape[1]
        s.block_tables[:n, :width].copy_(fb.block_tables.clamp_min(0))
        s.block_tables[n:bucket].zero_()
        return self.batch_view(bucket, fb.dp_meta)

    def batch_view(self, bucket: int, meta: DPMeta) -> ForwardBatch:
        s = self.inputs
        return ForwardBatch(
            input_ids=s.input_ids[:bucket], positions=s.positions[:bucket], is_prefill=False,
            cu_seqlens_q=s.cu_seqlens_q[: bucket + 1], context_lens=s.context_lens[:bucket],
            slot_mapping=s.slot_mapping[:bucket], block_tables=s.block_tables[:bucket],
            logits_indices=s.logits_indices[:bucket], dp_meta=meta, num_seqs=bucket, max_query_len=1,
            max_context_len=0, dp_num_tokens=[bucket] * meta.dp, token_valid=s.token_valid[:bucket])

    def capture(self, bucket: int, run, meta: DPMeta) -> None:
        """`run(fb)` is the model's forward + logits; warmed once eagerly, then recorded."""
        fb = self.batch_view(bucket, meta)
        self._all_padding(bucket)
        run(fb)
        torch.cuda.synchronize(self.device)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self.pool):
            out = run(fb)
        if self.pool is None:
            self.pool = graph.pool()  # every bucket shares one memory pool, captured largest first
        self.graphs[bucket] = graph
        self.outputs[bucket] = out

    def replay(self, bucket: int, num_rows: int) -> torch.Tensor:
        self.graphs[bucket].replay()
        return self.outputs[bucket][:num_rows]

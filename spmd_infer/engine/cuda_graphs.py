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

import numpy as np
import torch

from ..forward_batch import ForwardBatch
from ..host_memory import staged
from ..parallel.dp_meta import DPMeta
from .batch_inputs import HostInputs, longest_first

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
    """Device buffers the graphs read; a replay writes the step's batch into their first rows.

    ids, positions and slots are rows of one int64 buffer; context lengths and the attention order lead one int32
    buffer with the block tables, so loading a step is three host-to-device copies and one compare.
    """

    ints: torch.Tensor  # [3, max_bs] int64: input ids, positions, cache slots (-1: padding)
    lens_order: torch.Tensor  # [2, max_bs] int32: context lengths, then the rows longest first (decode attention)
    block_tables: torch.Tensor  # [max_bs, max_blocks] int32
    cu_seqlens_q: torch.Tensor
    logits_indices: torch.Tensor
    token_valid: torch.Tensor  # [max_bs] bool, slot >= 0 (the MoE skips padding rows)

    @classmethod
    def allocate(cls, max_bs: int, max_blocks: int, device: torch.device) -> "StaticInputs":
        ints32 = torch.zeros(max_bs * (2 + max_blocks), dtype=torch.int32, device=device)
        return cls(ints=torch.zeros((3, max_bs), dtype=torch.int64, device=device),
                   lens_order=ints32[:2 * max_bs].view(2, max_bs),
                   block_tables=ints32[2 * max_bs:].view(max_bs, max_blocks),
                   cu_seqlens_q=torch.arange(max_bs + 1, dtype=torch.int32, device=device),
                   logits_indices=torch.arange(max_bs, dtype=torch.int64, device=device),
                   token_valid=torch.zeros(max_bs, dtype=torch.bool, device=device))

    @property
    def input_ids(self) -> torch.Tensor:
        return self.ints[0]

    @property
    def positions(self) -> torch.Tensor:
        return self.ints[1]

    @property
    def slot_mapping(self) -> torch.Tensor:
        return self.ints[2]

    @property
    def context_lens(self) -> torch.Tensor:
        return self.lens_order[0]

    @property
    def decode_order(self) -> torch.Tensor:
        return self.lens_order[1]


class DecodeGraphs:
    def __init__(self, buckets: list[int], max_blocks_per_seq: int, device: torch.device):
        self.buckets = buckets
        self.device = device
        self.inputs = StaticInputs.allocate(max(buckets), max_blocks_per_seq, device)
        # Host images of the static buffers, rewritten each step (copied through pinned staging, so the
        # next step may overwrite them at once).
        self._ints = np.zeros((3, max(buckets)), dtype=np.int64)
        self._lens_order = np.ones((2, max(buckets)), dtype=np.int32)
        self._tables = np.zeros((max(buckets), max_blocks_per_seq), dtype=np.int32)
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
        self.inputs.decode_order[:bucket].copy_(self.inputs.cu_seqlens_q[:bucket])  # 0, 1, ...: any order will do
        self.inputs.token_valid[:bucket].fill_(False)

    def load(self, host: HostInputs, bucket: int, meta: DPMeta) -> ForwardBatch:
        """Copy a packed decode batch into the static buffers; rows past it are padding (no slot)."""
        n, width = host.num_tokens, host.block_tables.shape[1]
        ints, (ctx, order), tables = self._ints, self._lens_order, self._tables
        ints[0, :n], ints[1, :n], ints[2, :n] = host.input_ids, host.positions, host.slot_mapping
        ints[:, n:bucket] = 0
        ints[2, n:bucket] = -1
        ctx[:n] = host.context_lens
        ctx[n:bucket] = 1  # padding rows attend to one (garbage) cache entry, never stored
        order[:bucket] = longest_first(ctx[:bucket])
        # Only the columns in use: kernels never read a row past its context (padding rows read block 0),
        # and with a long max_model_len the full table would be megabytes per step.
        np.maximum(host.block_tables, 0, out=tables[:n, :width])
        tables[n:bucket, :width] = 0
        s = self.inputs
        dev = self.device
        s.ints.copy_(staged(ints, dev), non_blocking=True)
        s.lens_order.copy_(staged(self._lens_order, dev), non_blocking=True)  # 8 bytes a row: whole, in one copy
        s.block_tables[:bucket, :width].copy_(staged(tables[:bucket, :width], dev), non_blocking=True)
        torch.ge(s.slot_mapping, 0, out=s.token_valid)
        return self.batch_view(bucket, meta)

    def batch_view(self, bucket: int, meta: DPMeta) -> ForwardBatch:
        s = self.inputs
        return ForwardBatch(
            input_ids=s.input_ids[:bucket], positions=s.positions[:bucket], is_prefill=False,
            cu_seqlens_q=s.cu_seqlens_q[: bucket + 1], context_lens=s.context_lens[:bucket],
            slot_mapping=s.slot_mapping[:bucket], block_tables=s.block_tables[:bucket],
            decode_order=s.decode_order[:bucket],
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

"""ForwardBatch: the tensors one forward step needs (tokens, positions, paged-attention metadata, DPMeta)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional, Protocol

import torch

from .parallel.dp_meta import DPMeta


class AttentionSplit(Protocol):
    """Where a prefill graph's capture pauses for attention (engine/prefill_graphs.py)."""

    def q_input(self, row_shape: tuple[int, ...], dtype: torch.dtype) -> Optional[torch.Tensor]:
        """A buffer of q's shape ([tokens, *row_shape]) for the kernel that forms q to write into (attention's
        static input, so no copy ends the piece), or None: q stays where it is."""

    def __call__(self, attend: Callable[..., torch.Tensor], inputs: dict[str, torch.Tensor],
                 out_row_shape: tuple[int, ...], out_dtype: torch.dtype) -> torch.Tensor:
        """An attention layer's attention, `attend(**inputs, batch=step, out=buffer)`, deferred to the replay (for the
        replaying step's phase: its prefill, or a decode under DP attention): its tensor inputs (by role: "q" is the
        one q_input serves) are handed over in static buffers, and the returned buffer of [tokens, *out_row_shape] is
        where the replayed attention writes its output."""


@dataclass
class ForwardBatch:
    input_ids: torch.Tensor  # [T] int64, the tokens of every sequence packed back to back
    positions: torch.Tensor  # [T] int64 absolute positions
    is_prefill: bool
    cu_seqlens_q: torch.Tensor  # [B+1] int32: sequence i's queries are [cu[i], cu[i+1])
    context_lens: torch.Tensor  # [B] int32: KV length of sequence i after this step (cached + new)
    slot_mapping: Optional[torch.Tensor]  # [T] int64 cache slot per token; None when no KV cache exists
    block_tables: Optional[torch.Tensor]  # [B, max_blocks] int32, -1 padded; None without a KV cache
    logits_indices: torch.Tensor  # [S] int64 rows of the hidden states to turn into logits (sampled seqs)
    dp_meta: DPMeta  # every DP rank's row for this step; the forward cannot run without it
    dp_num_tokens: list[int] = field(default_factory=list)  # tokens in every DP rank's forward (DP attention)
    token_valid: Optional[torch.Tensor] = None  # [T] bool in decode and prefill graphs: False on padding rows (MoE)
    decode_order: Optional[torch.Tensor] = None  # [B] int32 at decode: the rows longest context first (attention)
    num_seqs: int = 0
    max_query_len: int = 0
    max_context_len: int = 0
    prompt_rows: Optional[torch.Tensor] = None  # [R] int64 hidden rows whose logits score the next prompt token
    prompt_targets: Optional[torch.Tensor] = None  # [R] int64 those tokens (sampling.prompt_logprobs)
    prompt_top_k: int = 0
    prompt_counts: list = field(default_factory=list)  # (batch index, first entry, rows) per scoring sequence
    prompt_scores: Optional[tuple] = None
    """Filled by the forward when prompt_rows is set: (top-k ids, their log-probabilities, the targets'), as lists."""
    host_tables: Optional[tuple] = None
    """(cu_seqlens_q, context_lens, block_tables) as numpy arrays, the host copies the device tensors came from: a
    layer that plans the step on the host reads these rather than copying the tensors back, a sync that would stall
    an overlapped step (MLA's prefill groups). None where the batch was not packed on the host (graphs, dummies)."""
    attention_split: Optional["AttentionSplit"] = field(default=None, repr=False)
    """Set while prefill graphs are captured (engine/prefill_graphs.py): each attention layer (paged or latent) hands
    it its prefill instead of running it, which ends the graph being recorded there (attention is launched eagerly
    between a bucket's graphs)."""
    step_cache: dict = field(default_factory=dict, repr=False)
    """Values that every layer of this step would compute alike, computed by the first (MLA's prefill plan)."""

    @property
    def num_tokens(self) -> int:
        return int(self.input_ids.shape[0])

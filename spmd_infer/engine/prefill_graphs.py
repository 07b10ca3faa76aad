"""CUDA graphs for prefill steps: each token-count bucket's forward recorded as graphs between its attention layers.

An eager prefill step of a small model is bound by the host, not the GPU: Qwen3-0.6B's 8192-token step launches
~250 kernels, whose Python and launch time (19-26 ms on an H200 host) exceeds their 14.7 ms on the GPU
(tests/gpu/run_step_parts.sh, session 27). Of those kernels only attention depends on how the tokens split into
sequences (its grid, cu_seqlens, block tables); the rest depends on the token count alone. So every bucket's
forward is captured piecewise: a graph from the embedding to the first attention, one between each two, one from
the last to the final norm. A step of T tokens pads to the smallest bucket >= T (padding rows own no cache slot:
nothing stored, nothing read by attention) and replays the pieces, launching each attention eagerly in between
with the step's own metadata: ~L+1 replays and L launches instead of ~9 launches a layer.

Attention's inputs cross a piece boundary, so each layer's q lands in one static buffer inside the piece before
it (written there by the kernel that positions or forms q, or else copied; k and v too where the rotary kernel did
not store them), and attention writes one static output buffer the next piece reads: the pieces of every layer and
bucket share those buffers rather than the graph pool keeping every layer's q alive. The pieces share the decode
graphs' memory pool (the two are never replayed at the same time). Paged GQA attention hands over q (and k, v) and
MLA its q (q_nope ++ q_pe; the latents are stored inside the piece): each layer's prefill goes through
ForwardBatch.attention_split.

MoE layers (Qwen3-MoE, Mixtral, DeepSeek) mask the padding rows from their experts (token_valid). Under DP attention
the MLP's token exchange spans every DP rank, so in a step that any DP rank prefills all of them replay one bucket,
sized for the rank with the most tokens and decided from DPMeta alone (identical everywhere): a rank that decodes in
that step runs its decode attention between the pieces (every other layer treats a token alike in either phase), an
idle one replays padding rows only. Before, such mixed steps ran eagerly on every rank, decode graphs included.
runtime.prefill_graphs.
"""

from __future__ import annotations

import bisect
import os
from typing import Callable, Optional

import torch

from ..forward_batch import ForwardBatch
from ..parallel.dp_meta import DPMeta, Field, Phase, make_row
from .capture_vote import CaptureStranded

# MoE layers in prefill graphs: the routing and fused_moe their decode graphs capture too, padding rows masked from the
# experts as there (token_valid). Checked on an H200 in session 28 (tests/gpu/run_prefill_graphs_moe.sh, _mla.sh): the
# tiny Qwen3-MoE, Mixtral, DeepSeek-V2 and V3 jobs token for token as eager, Qwen3-MoE's transformers check row for
# row as eager's; TTFT at 8 x 64 Qwen3-30B-A3B 50.4 -> 20.1 ms, DeepSeek-V2-Lite 49.4 -> 15.5 ms. 0 keeps them eager.
PREFILL_GRAPHS_MOE = os.environ.get("SPMD_PREFILL_GRAPHS_MOE", "1") == "1"

# Token counts of the buckets below the step budget: padding stays under half a bucket (a third from 1024 up).
BUCKET_STEPS = (16, 32, 64, 128, 256, 512, 768, 1024, 1536, 2048, 3072, 4096, 6144, 8192, 12288, 16384)


# A prefill step is host-bound while its kernels take less GPU time than the host takes to launch them: 0.6-0.9 ms
# a layer of Python and launches (Qwen3-0.6B's eager 8192-token step, 19-26 ms over 28 layers on an H200 host,
# tests/gpu/run_step_parts.sh) against a layer's GEMMs, 2 x weights x tokens FLOPs at ~600 TFLOP/s. Below this
# product of a layer's weight elements (on this rank) and the step's tokens the GPU would wait for the host, so a
# graph pays; above it the GPU sets the pace, a graph gains nothing and its pool would hold a large step's
# activations besides the eager ones (Llama-3-8B's 16384-token steps, measured while q was still copied between
# pieces: MFU 81.7% eager, 78.9% through graphs, run_prefill_graphs.sh). Qwen3-0.6B (15.7M weights a layer) takes
# every bucket up to 8192 tokens; Qwen3-1.7B (50M) up to 4096; Llama-3-8B (218M) up to 1024.
HOST_BOUND_LAYER_WORK = 2.5e11


def prefill_buckets(max_tokens: int, layer_weights: float = 0.0) -> list[int]:
    """Buckets up to the step's token budget (the budget itself the largest), those of host-bound steps only: at most
    HOST_BOUND_LAYER_WORK / layer_weights tokens."""
    buckets = {b for b in BUCKET_STEPS if b < max_tokens} | {max_tokens}
    return sorted(b for b in buckets if b * layer_weights <= HOST_BOUND_LAYER_WORK)


def prefill_bucket(buckets: list[int], num_tokens: int) -> Optional[int]:
    """The smallest bucket that holds num_tokens, or None past the largest."""
    i = bisect.bisect_left(buckets, max(num_tokens, 1))
    return buckets[i] if i < len(buckets) else None


def capture_meta(num_tokens: int, dp: int = 1) -> DPMeta:
    """The DPMeta a bucket is recorded with: every DP rank prefilling the bucket's rows (the layers read none of it;
    under DP attention the MLP's exchange reads ForwardBatch.dp_num_tokens, [bucket] * dp)."""
    row = make_row(num_tokens=num_tokens, phase=Phase.PREFILL)
    return DPMeta(rows=row.unsqueeze(0).repeat(dp, 1), dp_rank=0)


AttentionSegment = Callable[[ForwardBatch], object]


class CaptureAbandoned(RuntimeError):
    """Prefill graph capture stopped on every rank: this rank's error, or another rank's (capture_in_agreement)."""


def capture_in_agreement(buckets: list[int], capture: Callable[[int], None], all_ok: Callable[[bool], bool]) -> None:
    """`capture(bucket)` for each bucket, largest first. After each, every rank says whether its own succeeded
    (`all_ok`: a collective over every rank, True when all did), and all stop at the first failure anywhere: a rank
    that went on to the next bucket would wait in its warm-up forward's collectives for one that had stopped. A
    failed rank whose vote finds the others stranded in such a collective (capture_vote.py) fails the job."""
    for bucket in sorted(buckets, reverse=True):
        error = None
        try:
            capture(bucket)
        except (RuntimeError, torch.OutOfMemoryError) as e:  # CUDA errors are RuntimeErrors
            error = e
        reason = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}" if error else None
        try:
            agreed = all_ok(error is None)
        except CaptureStranded as stranded:
            raise CaptureStranded(f"capturing the {bucket}-token prefill CUDA graphs failed on this rank ({reason}), "
                                  f"and {stranded}") from error
        if not agreed:
            raise CaptureAbandoned(reason or "another rank's capture failed") from error


class PrefillGraphs:
    """Every bucket's pieces and attention segments, the static inputs they read, and their outputs."""

    def __init__(self, buckets: list[int], device: torch.device, pool=None, mask_padding: bool = False, dp: int = 1):
        """`mask_padding`: the model has MoE layers, which read which rows are padding (token_valid). `dp`: the DP
        ranks whose tokens every MLP exchanges under DP attention (1 otherwise), which replay one bucket together."""
        self.buckets = buckets
        self.device = device
        self.dp = dp
        self.max_tokens = max(buckets)
        # Steps replayed, by this rank's phase in them (decode and idle: DP attention's steps another rank prefills).
        self.replays = {"prefill": 0, "decode": 0, "idle": 0}
        mask_padding = mask_padding or dp > 1  # as decode graphs do: the exchange marks each rank's padding rows
        # Input ids, positions and cache slots (-1: padding, stored nowhere) of the bucket's rows.
        self.ints = torch.zeros((3, self.max_tokens), dtype=torch.int64, device=device)
        self.ints[2].fill_(-1)
        # slot >= 0: the rows an MoE layer may route (None for dense models, which read no such mask)
        self.valid = torch.zeros(self.max_tokens, dtype=torch.bool, device=device) if mask_padding else None
        self.buffers: dict[tuple, torch.Tensor] = {}  # attention's static inputs and output, by role and shape
        self.pieces: dict[int, list[torch.cuda.CUDAGraph]] = {}
        self.segments: dict[int, list[AttentionSegment]] = {}
        self.outputs: dict[int, torch.Tensor] = {}
        self.pool = pool if pool is not None else torch.cuda.graph_pool_handle()
        self._stream: Optional[torch.cuda.Stream] = None

    def bucket_for(self, fb: ForwardBatch) -> Optional[int]:
        """The bucket a prefill batch replays, or None (eager): no KV cache yet (warmup, an idle rank's dummy), or
        more tokens than the largest bucket; under DP attention the step's shared bucket (a decode batch's too)."""
        if self.dp > 1:
            return self.shared_bucket(fb.dp_meta)
        if not fb.is_prefill or fb.slot_mapping is None:
            return None
        return prefill_bucket(self.buckets, fb.num_tokens)

    def shared_bucket(self, meta: DPMeta) -> Optional[int]:
        """Under DP attention, the bucket every DP rank replays this step (one that decodes, its decode attention
        between the pieces; an idle one, padding rows only), or None: every rank runs eagerly (decode graphs where all
        decode). From DPMeta alone, so alike on every rank: a step that some rank prefills, sized for the rank with
        the most tokens."""
        if Phase.PREFILL not in meta.column(Field.PHASE):
            return None
        return prefill_bucket(self.buckets, meta.max_tokens)

    # ---- capture ------------------------------------------------------------------------------------
    def capture(self, bucket: int, model: torch.nn.Module) -> None:
        """Record `bucket`'s pieces: warmed once eagerly (attention skipped: its output is only read by the pieces;
        the positioning kernels compile for the static q buffer here, not under capture), then captured on a side
        stream into the shared pool."""
        fb = self._static_batch(bucket)
        fb.attention_split = _PieceRecorder(self, bucket, record=False)
        model(fb)
        torch.cuda.synchronize(self.device)
        recorder = fb.attention_split = _PieceRecorder(self, bucket, record=True)
        if self._stream is None:
            self._stream = torch.cuda.Stream(self.device)
        self._stream.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(self._stream):
            recorder.begin()
            try:
                hidden = model(fb)
            except BaseException:
                _end_abandoned(recorder.pieces[-1])
                raise
            recorder.pieces[-1].capture_end()
        torch.cuda.current_stream(self.device).wait_stream(self._stream)
        self.pieces[bucket], self.segments[bucket], self.outputs[bucket] = recorder.pieces, recorder.segments, hidden

    def _buffer(self, role: str, row_shape: torch.Size, dtype: torch.dtype) -> torch.Tensor:
        key = (role, tuple(row_shape), dtype)
        buf = self.buffers.get(key)
        if buf is None:
            buf = self.buffers[key] = torch.zeros((self.max_tokens, *row_shape), dtype=dtype, device=self.device)
        return buf

    def _static_batch(self, bucket: int) -> ForwardBatch:
        """The batch the pieces are recorded with: the static token rows, all padding; attention's metadata is a
        placeholder (the pieces never read it; the step's own reaches the eager attention)."""
        ints = self.ints[:, :bucket]
        one = torch.zeros(1, dtype=torch.int32, device=self.device)
        return ForwardBatch(
            input_ids=ints[0], positions=ints[1], is_prefill=True,
            cu_seqlens_q=torch.tensor([0, bucket], dtype=torch.int32, device=self.device), context_lens=one,
            slot_mapping=ints[2], block_tables=one.view(1, 1),
            logits_indices=torch.zeros(0, dtype=torch.int64, device=self.device), dp_meta=capture_meta(bucket, self.dp),
            num_seqs=1, max_query_len=bucket, max_context_len=bucket, dp_num_tokens=[bucket] * self.dp,
            token_valid=self.valid[:bucket] if self.valid is not None else None)

    # ---- replay -------------------------------------------------------------------------------------
    def forward(self, bucket: int, fb: ForwardBatch) -> torch.Tensor:
        """Hidden states of fb's tokens: its rows loaded into the static inputs, the bucket's pieces replayed and
        each attention launched with fb's metadata (and phase) between them."""
        if fb.slot_mapping is None:  # (warmup, before any capture) an eager forward here would desert the other DP
            raise RuntimeError("a prefill without a KV cache reached the prefill graphs")  # ranks' collectives
        n = fb.num_tokens
        ints = self.ints
        ints[0, :n].copy_(fb.input_ids)
        ints[1, :n].copy_(fb.positions)
        ints[2, :n].copy_(fb.slot_mapping)
        ints[2, n:bucket].fill_(-1)  # padding rows store nothing (ids and positions: earlier steps' valid values)
        if self.valid is not None:
            torch.ge(ints[2, :bucket], 0, out=self.valid[:bucket])  # ... nor reach an MoE layer's experts
        pieces, segments = self.pieces[bucket], self.segments[bucket]
        for piece, attention in zip(pieces, segments):
            piece.replay()
            attention(fb)
        pieces[-1].replay()
        self.replays["prefill" if fb.is_prefill else "decode"] += 1
        return self.outputs[bucket][:n]

    def forward_padding(self, bucket: int) -> None:
        """An idle DP rank's share of a step the others prefill through graphs (DP attention): the bucket's pieces
        over padding rows alone (nothing stored, nothing routed to an expert), its MLP exchanges joined; attention,
        which would attend no sequence, is skipped, and the output of these rows is never read."""
        self.ints[2, :bucket].fill_(-1)
        self.valid[:bucket].fill_(False)
        for piece in self.pieces[bucket]:
            piece.replay()
        self.replays["idle"] += 1

    @property
    def num_graphs(self) -> int:
        return sum(len(p) for p in self.pieces.values())


class _PieceRecorder:
    """The batch's attention_split while a bucket is captured (forward_batch.AttentionSplit): each paged attention
    layer's prefill ends the piece being recorded, is kept for the replay with its inputs in the static buffers, and
    a new piece begins. With record=False (the warm run) attention is skipped and nothing is recorded."""

    def __init__(self, graphs: PrefillGraphs, bucket: int, record: bool):
        self.graphs, self.bucket, self.record = graphs, bucket, record
        self.pieces: list[torch.cuda.CUDAGraph] = []
        self.segments: list[AttentionSegment] = []

    def begin(self) -> None:
        self.pieces.append(torch.cuda.CUDAGraph())
        self.pieces[-1].capture_begin(pool=self.graphs.pool)

    def _static(self, role: str, row_shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
        return self.graphs._buffer(role, row_shape, dtype)[:self.bucket]

    def q_input(self, row_shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
        return self._static("q", row_shape, dtype)

    def __call__(self, attend: Callable[..., torch.Tensor], inputs: dict[str, torch.Tensor],
                 out_row_shape: tuple[int, ...], out_dtype: torch.dtype) -> torch.Tensor:
        out = self._static("out", out_row_shape, out_dtype)
        if not self.record:
            return out
        static = {}
        for role, x in inputs.items():
            static[role] = buffer = self._static(role, x.shape[1:], x.dtype)
            if x.data_ptr() != buffer.data_ptr():
                buffer.copy_(x)  # captured: the piece ends by handing x to attention's static input
        self.pieces[-1].capture_end()
        self.segments.append(lambda step: attend(**static, batch=step, out=out))
        self.begin()
        return out


def _end_abandoned(graph: torch.cuda.CUDAGraph) -> None:
    """Take the stream out of capture after a failure inside it (the capture itself is lost): the caller's error is
    the one to report, not capture_end's own about the invalidated capture."""
    try:
        graph.capture_end()
    except RuntimeError:
        pass

"""Model runner: builds and loads the sharded model, owns the KV cache, turns batches into tensors and tokens."""

from __future__ import annotations

import itertools
import logging
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import torch
import torch.distributed as dist

from ..failure import FaultHook
from ..forward_batch import ForwardBatch
from ..host_memory import to_device, upload_packed
from ..layers.attention import PagedAttention
from ..layers.fp8_checkpoint import block_fp8_scheme
from ..layers.linear import LinearBase, fp8_linear_counts, fp8_linear_module, keep_unquantized_linears
from ..layers.mla import LatentAttention
from ..layers.moe import FusedMoE, has_routed_experts
from ..layers.sampler import SamplingTensors, sample
from ..loader import LoadStats, load_weights, unquantized_weights
from ..models.registry import model_class
from ..parallel.sharding import LayerSharding
from ..parallel.dims import ConfigError, ParallelDims
from ..parallel.dp_meta import DPMeta, Phase
from .batch_inputs import longest_first, pack_batch
from .cuda_graphs import DecodeGraphs, graph_buckets
from .prefill_graphs import PREFILL_GRAPHS_MOE, PrefillGraphs, capture_in_agreement, prefill_buckets
from .penalty_state import PenaltyState
from .scheduler import ScheduledBatch

log = logging.getLogger(__name__)


def fp8_prefill_route(block: tuple[int, int], device: torch.device) -> str:
    """Which GEMM takes float8 linear layers' prefill-sized products here, for the startup log."""
    if device.type != "cuda":
        return "each product on the CPU over weights dequantized to the model's dtype"
    kernels = fp8_linear_module
    if kernels.takes_cublas(kernels.CUBLAS_MIN_ROWS, 128, 128, block, device, torch.bfloat16):  # (0: never)
        return (f"products of {kernels.CUBLAS_MIN_ROWS}+ rows through cuBLAS's block-scaled float8 GEMM, fewer "
                "through the Triton kernel")
    return "all through the Triton kernel (cuBLAS's block-scaled float8 GEMM needs 128 x 128 blocks, sm_90, CUDA 12.9+)"


def build_model(hf_config: Any, sharding: LayerSharding, dtype: torch.dtype, device: torch.device | str) -> Any:
    """This rank's shard of the model, its parameters allocated on `device` in `dtype` (uninitialised)."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            return model_class(hf_config)(hf_config, sharding)
    finally:
        torch.set_default_dtype(previous)


def rank_weight_bytes(hf_config: Any, sharding: LayerSharding, dtype: torch.dtype) -> int:
    """Bytes of this rank's parameters and buffers, counted on a model built on the meta device (no memory)."""
    return module_bytes(build_model(hf_config, sharding, dtype, "meta"))


def module_bytes(model: torch.nn.Module) -> int:
    """Bytes of a module's parameters and buffers (this rank's share of the model's weights)."""
    return sum(t.numel() * t.element_size() for t in itertools.chain(model.parameters(), model.buffers()))


def check_weights_fit(need: int, free: int, total: int, hf_config: Any, dims: ParallelDims, moe: str,
                      dtype: torch.dtype, device: Any, fp8_experts: bool = False, fp8_linears: bool = False) -> None:
    """A ConfigError saying how to spread the model wider when this rank's share of it (`need` bytes) exceeds the
    GPU's free memory: before any allocation, not a CUDA out-of-memory error minutes into loading."""
    if need <= free:
        return
    spread = ("raise parallel.tp, or parallel.dp with parallel.dp_attention=true (which shards the MLP and experts "
              "over every rank)" if dims.dp == 1 or not dims.dp_attention else "raise parallel.dp or parallel.tp")
    kept = fp8_linears and (fp8_experts or not has_routed_experts(hf_config))
    notes = (f"; this checkpoint's float8 weights are dequantized to {str(dtype).removeprefix('torch.')} as they "
             f"load, twice their size on disk" if block_fp8_scheme(hf_config) and not kept else "")
    if has_routed_experts(hf_config) and not fp8_experts:
        notes += "; or keep the routed experts in float8 (model.expert_dtype=fp8: half their bytes)"
    if not fp8_linears:
        notes += "; or keep the linear layers in float8 (model.linear_dtype=fp8: half their bytes)"
    raise ConfigError(
        f"this rank's share of the model needs {need / 2**30:.1f} GiB of GPU memory in "
        f"{str(dtype).removeprefix('torch.')} (parallel.dp={dims.dp}, parallel.tp={dims.tp}, "
        f"parallel.dp_attention={str(dims.dp_attention).lower()}, parallel.moe={moe}), more than the "
        f"{free / 2**30:.1f} GiB free of {total / 2**30:.1f} GiB on {device}: spread it over more GPUs ({spread})"
        f"{notes}")


class ModelRunner:
    def __init__(self, hf_config: Any, model_dir: Optional[Path], dims: ParallelDims, device: torch.device,
                 dtype: torch.dtype, block_size: int, moe: str = "ep", kv_dtype: Optional[torch.dtype] = None,
                 fp8_expert_block: Optional[tuple[int, int]] = None,
                 fp8_linear_block: Optional[tuple[int, int]] = None, quantize_linears: bool = True,
                 kv_head_major: bool = False):
        """`model_dir=None` initialises random weights on the device instead of loading (benchmarks);
        `kv_dtype`: the KV cache's element type (default: the model's dtype); `fp8_expert_block`: routed experts
        kept in float8 with a scale per block of at most this size (job_plan.resolve_fp8_expert_block);
        `fp8_linear_block`: dense linear layers in float8 with this block (job_plan.resolve_fp8_linear_block);
        `quantize_linears` False (model.linear_dtype=auto): a layer the checkpoint stores unquantized stays in
        `dtype` rather than being quantized as it loads; `kv_head_major`: the KV cache's pages laid out
        [blocks, heads, page, dim] (cache.layout=head), seen as the usual [blocks, page, heads, dim]."""
        self.hf_config = hf_config
        self.dims = dims
        self.device = device
        self.dtype = dtype
        self.kv_dtype = kv_dtype or dtype
        self.block_size = block_size
        self.kv_head_major = kv_head_major
        self.sharding = LayerSharding.from_dims(dims, moe, fp8_expert_block, fp8_linear_block)
        if device.type == "cuda":
            free, total = torch.cuda.mem_get_info(device)
            check_weights_fit(rank_weight_bytes(hf_config, self.sharding, dtype), free, total, hf_config, dims, moe,
                              dtype, device, fp8_expert_block is not None, fp8_linear_block is not None)
        self.model = build_model(hf_config, self.sharding, dtype, device)
        self.model.eval()
        if fp8_linear_block is not None and model_dir is not None and not quantize_linears:
            keep_unquantized_linears(self.model, unquantized_weights(model_dir), dtype)
        self.load_stats = load_weights(self.model, model_dir) if model_dir is not None else _random_init(self.model)
        notes = ("" if fp8_expert_block is None else
                 f", routed experts in float8 e4m3 (blocks of up to {fp8_expert_block[0]} x {fp8_expert_block[1]})")
        if fp8_linear_block is not None:
            held, linears = fp8_linear_counts(self.model)
            rest = ("" if held == linears else "; the rest stored unquantized, or not split into whole blocks under "
                    "this layout")
            notes += (f", {held} of {linears} linear layers in float8 e4m3 ({fp8_linear_block[0]} x "
                      f"{fp8_linear_block[1]} blocks{rest}; {fp8_prefill_route(fp8_linear_block, self.device)})")
        log.info("weights on this rank: %.2f GiB%s", module_bytes(self.model) / 2**30, notes)
        self.cache_owners = [m for m in self.model.modules() if hasattr(m, "kv_cache_dims")]
        self.num_blocks = 0
        self.graphs: Optional[DecodeGraphs] = None
        self.prefill_graphs: Optional[PrefillGraphs] = None
        self.penalties = PenaltyState(device)

    # ---- KV cache -----------------------------------------------------------------------------------
    @property
    def kv_bytes_per_token(self) -> int:
        """Every layer's cache entries for one token on this rank (K and V of its heads, or MLA's latent)."""
        elem = torch.empty((), dtype=self.kv_dtype).element_size()
        return sum(h * d * elem for owner in self.cache_owners for h, d in owner.kv_cache_dims())

    def blocks_that_fit(self, gpu_memory_utilization: float, cpu_kv_cache_gb: float) -> int:
        block_bytes = self.kv_bytes_per_token * self.block_size
        if self.device.type == "cuda":
            # After the warmup step: what the weights hold now plus the activation peak must stay free.
            free, total = torch.cuda.mem_get_info(self.device)
            stats = torch.cuda.memory_stats(self.device)
            used = total - free
            peak, current = stats["allocated_bytes.all.peak"], stats["allocated_bytes.all.current"]
            budget = total * gpu_memory_utilization - used - (peak - current)
            if budget < block_bytes:
                raise ConfigError(
                    f"no GPU memory left for the KV cache on {self.device} (weights and activations use "
                    f"{used / 2**30:.1f} GiB of {total / 2**30:.1f} GiB); raise cache.gpu_memory_utilization, "
                    f"lower scheduler.max_num_batched_tokens, or raise parallel.tp")
            return int(budget // block_bytes)
        return int(cpu_kv_cache_gb * 2**30 // block_bytes)

    def allocate_kv_cache(self, num_blocks: int) -> None:
        self.num_blocks = num_blocks
        for owner in self.cache_owners:
            # torch.empty: pages are touched only when used, so a large CPU budget costs nothing up front.
            owner.bind_kv_cache([self._kv_cache_tensor(num_blocks, h, d) for h, d in owner.kv_cache_dims()])

    def _kv_cache_tensor(self, num_blocks: int, heads: int, dim: int) -> torch.Tensor:
        """One cache tensor [num_blocks, block_size, heads, dim]; head-major pages are a transposed view."""
        if not self.kv_head_major:
            return torch.empty((num_blocks, self.block_size, heads, dim), dtype=self.kv_dtype, device=self.device)
        cache = torch.empty((num_blocks, heads, self.block_size, dim), dtype=self.kv_dtype, device=self.device)
        return cache.transpose(1, 2)

    # ---- inputs -------------------------------------------------------------------------------------
    def prepare(self, batch: ScheduledBatch, meta: DPMeta, use_cache: bool, bucket: Optional[int] = None,
                feedback: Optional[tuple[torch.Tensor, np.ndarray]] = None) -> ForwardBatch:
        """Pack a scheduled batch into device tensors: fresh ones, or the graph `bucket`'s static buffers.

        `feedback` (overlapped steps): the previous step's sampled tokens on the device and, per row of
        this batch, the index of its input token there (-1: the host has it); copied on the device.
        """
        host = pack_batch(batch, self.block_size, use_cache and self.num_blocks > 0)
        fb = self.graphs.load(host, bucket, meta) if bucket is not None else self._upload_batch(batch, host, meta)
        if feedback is not None:
            tokens, src = feedback
            rows = np.flatnonzero(src >= 0)
            if len(rows):
                idx = to_device(np.stack([rows, src[rows]]), self.device)
                fb.input_ids.index_copy_(0, idx[0], tokens.index_select(0, idx[1]))
        return fb

    def _upload_batch(self, batch: ScheduledBatch, host, meta: DPMeta) -> ForwardBatch:
        # Two host-to-device copies (one per dtype) instead of one per field; the optional fields only when present.
        prefill = batch.phase is Phase.PREFILL
        prompt = host.prompt_rows
        i64 = {"ids": host.input_ids, "positions": host.positions, "logits": host.logits_indices}
        i32 = {"cu": host.cu_seqlens_q, "ctx": host.context_lens}
        if prompt is not None:
            i64.update(prompt_rows=prompt.rows, prompt_targets=prompt.targets)
        if not prefill:
            i32["order"] = longest_first(host.context_lens)
        if host.slot_mapping is not None:
            i64["slots"] = host.slot_mapping
            i32["tables"] = host.block_tables.ravel()
        d = dict(zip(i64, upload_packed(list(i64.values()), np.int64, self.device)))
        d.update(zip(i32, upload_packed(list(i32.values()), np.int32, self.device)))
        tables = d.get("tables")
        return ForwardBatch(
            input_ids=d["ids"], positions=d["positions"], is_prefill=prefill, cu_seqlens_q=d["cu"],
            context_lens=d["ctx"], slot_mapping=d.get("slots"),
            block_tables=tables.view(host.block_tables.shape) if tables is not None else None,
            logits_indices=d["logits"], dp_meta=meta, num_seqs=host.num_seqs, max_query_len=host.max_query_len,
            max_context_len=host.max_context_len, dp_num_tokens=self._dp_counts(meta),
            prompt_rows=d.get("prompt_rows"), prompt_targets=d.get("prompt_targets"),
            prompt_top_k=prompt.top_k if prompt is not None else 0,
            prompt_counts=prompt.counts if prompt is not None else [], decode_order=d.get("order"),
            host_tables=(host.cu_seqlens_q, host.context_lens, host.block_tables) if tables is not None else None)

    def dummy_batch(self, meta: DPMeta) -> ForwardBatch:
        """One padding token with no cache slot and nothing to sample: an idle DP rank's share of a step."""
        one = [0]
        return ForwardBatch(
            input_ids=self._tensor(one, torch.int64), positions=self._tensor(one, torch.int64), is_prefill=True,
            cu_seqlens_q=self._tensor([0, 1], torch.int32), context_lens=self._tensor([1], torch.int32),
            slot_mapping=None, block_tables=None, logits_indices=self._tensor([], torch.int64), dp_meta=meta,
            num_seqs=1, max_query_len=1, max_context_len=1, dp_num_tokens=self._dp_counts(meta))

    @staticmethod
    def _dp_counts(meta: DPMeta) -> list[int]:
        """Tokens each DP rank feeds this step's forward: its batch, or the one-token dummy when idle."""
        return [max(n, 1) for n in meta.num_tokens]

    def _tensor(self, data, dtype) -> torch.Tensor:
        # Pinned (to_device): a copy from pageable memory would first wait for the GPU's queued work.
        return to_device(np.asarray(data, dtype={torch.int64: np.int64, torch.int32: np.int32}[dtype]), self.device)

    # ---- CUDA graphs ---------------------------------------------------------------------------------
    @property
    def graph_safe(self) -> bool:
        """Whether every layer runs without host syncs or data-dependent shapes (capturable)."""
        return self.device.type == "cuda" and all(getattr(m, "cuda_graph_safe", True) for m in self.model.modules())

    def enable_graphs(self, max_num_seqs: int, max_model_len: int) -> list[int]:
        buckets = graph_buckets(max_num_seqs)
        self.graphs = DecodeGraphs(buckets, -(-max_model_len // self.block_size), self.device)
        return buckets

    def can_graph(self, batch: ScheduledBatch) -> bool:
        """For the DPMeta row: this rank's batch could replay a graph (a decode that fits, or nothing)."""
        if self.graphs is None:
            return False
        if not batch:
            return True
        return batch.phase is Phase.DECODE and len(batch.seqs) <= self.graphs.max_batch

    def capture_graph(self, bucket: int, meta: DPMeta) -> None:
        self.graphs.capture(bucket, self.forward_logits, meta)

    def prefill_graphs_unfit(self) -> Optional[str]:
        """Why prefill steps cannot replay piecewise graphs (engine/prefill_graphs.py), or None where they can."""
        if not self.graph_safe:
            return "the model's layers are not all capturable" if self.device.type == "cuda" else "no CUDA"
        if not all(type(owner) in (PagedAttention, LatentAttention) for owner in self.cache_owners):
            return "an attention layer of it cannot hand its prefill to the replay (AttentionSplit)"
        if not PREFILL_GRAPHS_MOE and any(isinstance(m, FusedMoE) for m in self.model.modules()):
            return "SPMD_PREFILL_GRAPHS_MOE=0 keeps MoE layers eager"
        return None

    def layer_weights(self) -> float:
        """Weight elements a layer multiplies each token by on this rank, on average (what a prefill step's GEMMs
        cost per token): its linear layers', and of its routed experts' the top-k share (top_k of num_experts: the
        local experts' weights, whether experts or their intermediate dims are split); embedding and LM head left
        out."""
        total = sum(m.weight.numel() for m in self.model.modules() if isinstance(m, LinearBase))
        for m in self.model.modules():
            if isinstance(m, FusedMoE):
                total += m.routing.top_k * (m.w13.numel() + m.w2.numel()) / m.num_experts
        return total / max(len(self.cache_owners), 1)

    def capture_prefill_graphs(self, max_num_batched_tokens: int, dp_attention: bool,
                               all_ok: Callable[[bool], bool], fault: Optional[FaultHook] = None) -> list[int]:
        """Record the piecewise prefill graphs of the host-bound buckets up to the step's token budget, largest
        first, in the decode graphs' pool; returns the buckets (none where every step size keeps the GPU busy). Every
        rank records the same buckets in the same order (their TP and, under DP attention, DP collectives) and after
        each says through `all_ok` whether it succeeded: a failure anywhere raises CaptureAbandoned on every rank.
        `fault`: a test's injected failure (FaultHook: RANK:BUCKET:capture)."""
        buckets = prefill_buckets(max_num_batched_tokens, self.layer_weights())
        if not buckets:
            return []
        pool = self.graphs.pool if self.graphs is not None else None
        torch.cuda.empty_cache()  # the warmup's cached activations go back, for the graph pool to take
        graphs: Optional[PrefillGraphs] = None

        def capture(bucket: int) -> None:
            nonlocal graphs
            if fault is not None:
                fault.check_capture(bucket)
            if graphs is None:  # (its buffers' allocation may fail too: inside the agreement)
                graphs = PrefillGraphs(buckets, self.device, pool, dp=self.dims.dp if dp_attention else 1,
                                       mask_padding=any(isinstance(m, FusedMoE) for m in self.model.modules()))
            graphs.capture(bucket, self.model)

        with torch.inference_mode():
            capture_in_agreement(buckets, capture, all_ok)
        self.prefill_graphs = graphs
        return buckets

    @property
    def prefill_graph_replays(self) -> dict[str, int]:
        """Steps this rank replayed from prefill graphs, by its phase in them (PrefillGraphs.replays)."""
        return dict(self.prefill_graphs.replays) if self.prefill_graphs is not None else {}

    @property
    def prefill_graph_tokens(self) -> int:
        """The largest prefill step a CUDA graph replays; 0 where every prefill step runs eagerly."""
        return self.prefill_graphs.buckets[-1] if self.prefill_graphs is not None else 0

    def drop_prefill_graphs(self) -> None:
        """Prefill eagerly again: the graphs and their buffers released (a capture that failed part way)."""
        self.prefill_graphs = None
        torch.cuda.synchronize(self.device)
        torch.cuda.empty_cache()

    def run(self, fb: ForwardBatch, bucket: Optional[int], num_seqs: int) -> torch.Tensor:
        """Logits of the sampled rows: an eager forward, or a replay of `bucket` (fb from prepare(..., bucket))."""
        if bucket is None:
            return self.forward_logits(fb)
        return self.graphs.replay(bucket, num_seqs)

    @torch.inference_mode()  # the prefill graphs' static inputs are inference tensors (captured under it)
    def run_dummy(self, meta: DPMeta, bucket: Optional[int]) -> None:
        """An idle DP rank's share of a step (DP attention): padding rows through the decode graph `bucket`, or the
        prefill graphs the other ranks replay, or a one-token eager forward."""
        if bucket is not None:
            self.graphs.load_padding(bucket, meta)
            self.graphs.replay(bucket, 0)
            return
        prefill_bucket = self.prefill_graphs.shared_bucket(meta) if self.prefill_graphs is not None else None
        if prefill_bucket is not None:
            self.prefill_graphs.forward_padding(prefill_bucket)
        else:
            self.forward_logits(self.dummy_batch(meta))

    # ---- forward and sampling -----------------------------------------------------------------------
    @torch.inference_mode()
    def forward_logits(self, fb: ForwardBatch) -> torch.Tensor:
        """Hidden states for every token, logits (full vocab on every TP rank) for sampled rows.

        The logits stay in the model's dtype: greedy argmax and the fused Gumbel kernel read them as they are
        (the result is the same as on a float32 copy), which saves writing and reading an [S, V] float32 copy
        every step (bs256 x 152k vocab: 155 MB); the paths that compute on them convert first (sampler.py).
        """
        prefill_bucket = self.prefill_graphs.bucket_for(fb) if self.prefill_graphs is not None else None
        hidden = self.model(fb) if prefill_bucket is None else self.prefill_graphs.forward(prefill_bucket, fb)
        if fb.prompt_rows is not None:
            fb.prompt_scores = self._score_prompt_rows(hidden, fb)
        if fb.logits_indices.numel() == 0:
            return hidden.new_empty((0, self.hf_config.vocab_size))
        return self.model.compute_logits(hidden[fb.logits_indices])

    # Prompt rows scored at a time: [rows, vocab] float32 and its log_softmax, 2 x 256 x 152k x 4 B = 0.3 GB, about
    # what sampling a full decode batch of 256 with logprobs takes, so the memory warmup measured covers it.
    PROMPT_SCORE_ROWS = 256

    def _score_prompt_rows(self, hidden: torch.Tensor, fb: ForwardBatch) -> tuple[list, list, list]:
        """The log-probabilities of the raw model output at fb.prompt_rows: top-k ids and values, and the next
        prompt token's. On every TP rank alike (the LM head gathers over the attention shard only)."""
        ids, values, targets = [], [], []
        for at in range(0, fb.prompt_rows.numel(), self.PROMPT_SCORE_ROWS):
            rows = fb.prompt_rows[at:at + self.PROMPT_SCORE_ROWS]
            logprobs = self.model.compute_logits(hidden[rows]).float().log_softmax(dim=-1)
            top = logprobs.topk(fb.prompt_top_k, dim=-1)
            ids.append(top.indices)
            values.append(top.values)
            targets.append(logprobs.gather(1, fb.prompt_targets[at:at + self.PROMPT_SCORE_ROWS, None]).squeeze(1))
        return torch.cat(ids).tolist(), torch.cat(values).tolist(), torch.cat(targets).tolist()

    @torch.inference_mode()
    def sample_on_device(self, batch: ScheduledBatch, logits: torch.Tensor, eos_ids: frozenset[int],
                         keys: list[int]) -> torch.Tensor:
        """Token ids [S] on the device, no host sync (overlapped steps: no logprobs)."""
        seqs = [s for s, sampled in zip(batch.seqs, batch.sampled) if sampled]
        penalties = self.penalties.prepare(seqs, logits.shape[1])
        if penalties is not None:
            logits = logits.float()  # transformers' and OpenAI's rules work on float32 logits
        self._mask(logits, seqs, eos_ids)
        if penalties is not None:
            self.penalties.apply(logits, penalties)
        t = SamplingTensors.build([s.sampling for s in seqs], keys, [s.num_output_tokens for s in seqs],
                                  logits.device)
        tokens = sample(logits, t)
        if penalties is not None:
            self.penalties.record(penalties, tokens)
        return tokens

    @torch.inference_mode()
    def sample(self, batch: ScheduledBatch, logits: torch.Tensor, eos_ids: frozenset[int],
               keys: list[int]) -> tuple[list[int], list[Optional[dict[int, float]]]]:
        """One token per sampled sequence (`keys[i]`: its generator key, see sampler.py), and for the
        sequences that ask, the top-k log-probabilities of the raw model output plus the chosen token's."""
        seqs = [s for s, sampled in zip(batch.seqs, batch.sampled) if sampled]
        if not seqs:
            return [], []
        want_k = max(s.sampling.logprobs for s in seqs)
        raw_logprobs = logits.float().log_softmax(dim=-1) if want_k else None  # before penalties and masks
        tokens = self.sample_on_device(batch, logits, eos_ids, keys)
        return tokens.tolist(), self._top_logprobs(raw_logprobs, tokens, [s.sampling.logprobs for s in seqs])

    @staticmethod
    def _top_logprobs(logprobs: Optional[torch.Tensor], tokens: torch.Tensor,
                      ks: list[int]) -> list[Optional[dict[int, float]]]:
        if logprobs is None:
            return [None] * len(ks)
        top = logprobs.topk(max(ks), dim=-1)
        chosen = logprobs.gather(1, tokens.unsqueeze(1)).squeeze(1).tolist()
        values, ids = top.values.tolist(), top.indices.tolist()
        out: list[Optional[dict[int, float]]] = []
        for i, k in enumerate(ks):
            if not k:
                out.append(None)
                continue
            entry = dict(zip(ids[i][:k], values[i][:k]))
            entry[int(tokens[i])] = chosen[i]
            out.append(entry)
        return out

    @staticmethod
    def _mask(logits: torch.Tensor, seqs, eos_ids: frozenset[int]) -> None:
        """Each row's logit_bias added, and until min_tokens, every token that would end its request at -inf: one
        copy to the device for the whole batch (a bias added to -inf leaves it there)."""
        rows, ids, values = [], [], []
        for i, s in enumerate(seqs):
            p = s.sampling
            for token, bias in p.logit_bias:
                rows.append(i), ids.append(token), values.append(bias)
            if s.num_output_tokens < p.min_tokens:
                banned = set(p.stop_token_ids) | (set() if p.ignore_eos else set(eos_ids))
                banned = sorted(b for b in banned if b < logits.shape[1])
                rows += [i] * len(banned)
                ids += banned
                values += [float("-inf")] * len(banned)
        if rows:
            at = to_device(np.array([rows, ids], dtype=np.int64), logits.device)
            add = to_device(np.asarray(values, dtype=np.float32), logits.device).to(logits.dtype)
            logits.index_put_((at[0], at[1]), add, accumulate=True)

    def min_over(self, value: int, group: Optional[dist.ProcessGroup]) -> int:
        """The minimum of `value` over `group` (one KV block count for every rank)."""
        t = torch.tensor([value], dtype=torch.int64, device=self.device)
        if group is not None and dist.get_world_size(group) > 1:
            dist.all_reduce(t, op=dist.ReduceOp.MIN, group=group)
        return int(t.item())


@torch.no_grad()
def _random_init(model: torch.nn.Module) -> LoadStats:
    """Deterministic random weights, std 1/sqrt(fan_in) so activations keep their scale; norms stay 1."""
    gen = torch.Generator(device=next(model.parameters()).device).manual_seed(0)
    float8 = set()
    for m in model.modules():
        # Float8 weights: values drawn, then quantized in blocks with their scales.
        if isinstance(m, FusedMoE) and m.fp8_block:
            m.init_random(gen)
            float8.update(id(p) for p in (m.w13, m.w2, m.w13_scale, m.w2_scale))
        elif isinstance(m, LinearBase) and m.fp8_block:
            m.init_random(gen)
            float8.update(id(p) for p in (m.weight, m.weight_scale))
    for name, p in model.named_parameters():
        if id(p) in float8:
            continue
        if p.dim() >= 2:
            p.normal_(0.0, p.shape[-1] ** -0.5, generator=gen)
        elif "norm" in name:
            p.fill_(1.0)
        else:
            p.zero_()
    return LoadStats()

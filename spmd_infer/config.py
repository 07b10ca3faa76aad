"""Typed Hydra structured configs for a job: every field is overridable as `group.field=value`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from hydra.core.config_store import ConfigStore


@dataclass
class ModelConfig:
    path: Optional[str] = None
    """Hugging Face checkpoint folder (config.json + *.safetensors): bf16 / fp16 / fp32 weights, or float8 ones with
    a scale per block (DeepSeek-V3's release), dequantized to `dtype` as they load. Unset: the built-in demo model."""
    dtype: str = "auto"
    """Compute dtype: auto (bfloat16 on CUDA, float32 on CPU), float32, bfloat16 or float16."""
    expert_dtype: str = "auto"
    """Routed experts' weights (MoE models): fp8 (float8 e4m3 with a float32 scale per block of up to 128 x 128, as
    DeepSeek-V3's and Qwen3's float8 releases store them: their bytes kept as stored, a bf16 checkpoint's quantized
    as it loads), model (in `dtype`; a float8 checkpoint's dequantized as they load) or auto (fp8 for a
    block-float8 checkpoint on a GPU that runs float8, compute capability 8.9+, where the layout keeps whole
    blocks on each rank, as vLLM / SGLang run such releases; else model). Float8 experts take half the bytes, so
    twice the model fits (DeepSeek-V3 on one 8-GPU node); other weights stay in `dtype`. On CUDA their inputs and
    hidden activations are rounded to float8 too, a scale per token per 128 features (DeepSeek-V3's recipe), so
    their GEMMs run float8 dots: on an H200 decode 0.70-0.82x the step time of bf16 experts and prefill 0.9x
    (DeepSeek-V2-Lite, Qwen3-30B-A3B; env SPMD_FP8_ACT=model computes the dequantized model exactly instead,
    slower)."""
    linear_dtype: str = "auto"
    """Dense linear layers' weights (attention and MLP projections, shared experts; not embeddings, the LM head or
    MoE routers): fp8 (float8 e4m3 with a float32 scale per block of 128 x 128, as DeepSeek-V3's and Qwen3's float8
    releases store them: their bytes kept as stored, a bf16 checkpoint's quantized as it loads), model (in `dtype`;
    a float8 checkpoint's dequantized as they load) or auto (fp8 for a block-float8 checkpoint on a GPU that runs
    float8, compute capability 8.9+, as vLLM / SGLang run such releases; else model). Float8 layers stream half the
    bytes, most of a decode step at small batches: Llama-3-8B on an H200, decode @1k bs1 3.0 ms a step against 4.6
    in bf16, bs64 6.2-6.3 against 7.4; prefill of 8 x 2048 tokens 266 ms against 380 (cuBLAS's block-scaled float8
    GEMM on sm_90; elsewhere the Triton kernel, at ~0.85x of bf16's). A layer whose shard under the layout is
    not whole blocks stays in `dtype`, as (under auto) does one a float8 checkpoint stores unquantized. On CUDA their
    inputs are rounded to float8 a token's 128 features at a time (DeepSeek-V3's recipe; env SPMD_FP8_ACT=model
    widens the weights instead, the dequantized model exactly)."""
    max_model_len: Optional[int] = None
    """Longest prompt + completion in tokens; unset: the model's max_position_embeddings."""
    tokenizer: Optional[str] = None
    """Tokenizer folder if not the model folder. Without tokenizer files, rows must give prompt_token_ids."""


@dataclass
class ParallelConfig:
    dp: int = 1
    """Data-parallel degree: independent request streams (dp * tp must equal the world size)."""
    tp: int = 1
    """Tensor-parallel degree inside each DP group (the inner mesh dimension, kept inside a node)."""
    dp_attention: bool = False
    """Attention per DP group, MLP/MoE sharded over all dp*tp ranks. For MLA/MoE models, and for dense ones where the
    exchanges around the MLP take our push kernel (parallel.all_reduce): Qwen3-8B on 2 x H200 nano-vllm 15.3k tok/s
    against 14.9k decoupled, but 13.4k with those exchanges on NCCL."""
    moe: str = "ep"
    """MoE sharding: ep (each rank owns whole experts) or tp (every expert split over ranks)."""
    exchange: str = "auto"
    """How DP ranks exchange the per-step metadata: shm (through host shared memory: microseconds, no GPU
    work; needs every DP rank of a group on one host), collective (an all-gather over the DP group: NCCL on
    GPUs, gloo on CPUs) or auto (shm where the DP group is on one host, else collective)."""
    all_reduce: str = "auto"
    """How tensor-parallel all-reduces of activations run on GPUs: nccl; symmetric (symmetric memory over NVLink,
    one kernel a call: up to 256 rows our push kernel (kernels/push_all_reduce.py), which ends in the RMSNorm after
    o_proj, down_proj and MoE layers; then PyTorch's one-shot to 1 MiB and two-shot above; NCCL for messages past the
    buffer of scheduler.max_num_batched_tokens rows, at most 32 MiB; needs each TP group on one host); auto
    (symmetric for TP groups of 2 GPUs, the size measured: on 2 x H200 8 KiB 7.6 -> 4.7 us, 2 MiB 28.5 -> 13.3 us;
    nccl otherwise). With parallel.dp_attention the same choice, made for all dp*tp ranks, sends DP attention's token
    gather and reduce-scatter around the MLP/MoE through our push kernel (kernels/push_dp_exchange.py, ending in the
    next RMSNorm; steps of up to scheduler.max_num_seqs tokens a DP group, at most 512) instead of NCCL. CPUs use gloo
    whatever this says."""


@dataclass
class SchedulerConfig:
    max_num_seqs: int = 256
    """Most sequences in one forward step per DP rank."""
    max_num_batched_tokens: int = 8192
    """Most tokens in one forward step per DP rank; longer prompts are prefilled in chunks."""
    max_waiting_per_rank: int = 0
    """Requests a DP rank may hold beyond the running ones before new ones go elsewhere (0: max_num_seqs)."""


@dataclass
class CacheConfig:
    block_size: int = 16
    """Tokens per paged KV-cache block."""
    dtype: str = "auto"
    """KV-cache element type: auto (the model's dtype) or fp8 (float8 e4m3, unscaled, saturating at +-448): half
    the bytes per token, so about twice the tokens fit and decode attention reads half as much; outputs drift
    slightly from the model dtype's. Per-head K/V caches and DeepSeek's MLA latent cache alike (for the latter
    it buys capacity, not decode speed: MLA decode is bound by its dots). On CUDA it needs compute capability
    8.9 (Ada, Hopper) or later: refused at startup on older GPUs."""
    layout: str = "token"
    """KV-cache page layout: token ([blocks, block_size, kv_heads, head_dim], a token's heads side by side, as vLLM
    keeps them) or head ([blocks, kv_heads, block_size, head_dim], each head's page one contiguous run, the order
    in which decode attention reads it). Every kernel addresses the cache by its strides, so outputs are the same
    either way; the choice is about how the cache's bytes are read (tests/gpu/run_fp8_access.sh). MLA's latent
    cache has one head and is the same under both."""
    gpu_memory_utilization: float = 0.90
    """Share of GPU memory the engine may use (weights + activations + KV cache), as in vLLM."""
    cpu_kv_cache_gb: float = 1.0
    """KV-cache budget per rank in GiB when running on CPU."""
    num_blocks: Optional[int] = None
    """Force the KV block count per rank (tests use it to force preemption); unset: sized from memory."""
    enable_prefix_caching: bool = True
    """Share the KV blocks of identical prompt prefixes across requests (hash of each full block)."""


@dataclass
class SamplingConfig:
    """Job-wide sampling defaults (vLLM's names); a row's "sampling" object overrides any of them."""

    # Unset (null) fields take the model's generation_config.json value, else vLLM's default; any value
    # set on the command line or in a YAML group wins, even one equal to the default (see model_defaults.py).
    temperature: Optional[float] = None
    """Softmax temperature; 0 means greedy. Unset: generation_config.json's, else 1.0."""
    top_p: Optional[float] = None
    """Nucleus sampling: keep the smallest set of tokens whose probability reaches top_p (0, 1].
    Unset: the model's, else 1.0."""
    top_k: Optional[int] = None
    """Keep only the k most likely tokens; 0 or -1 disables. Unset: the model's, else 0."""
    min_p: Optional[float] = None
    """Drop tokens whose probability is below min_p times the most likely token's. Unset: the model's, else 0."""
    seed: int = 0
    """Job seed; each request draws from a generator keyed by (seed, request id)."""
    max_tokens: int = 256
    """Most tokens to generate per request; 0 with prompt_logprobs only scores the prompt."""
    min_tokens: int = 0
    """Tokens to generate before EOS or stop_token_ids may end a request."""
    stop: list[str] = field(default_factory=list)
    """Strings that end generation; the stop string itself is not part of the text. Needs a tokenizer."""
    stop_token_ids: list[int] = field(default_factory=list)
    """Token ids that end generation (in addition to the model's EOS unless ignore_eos)."""
    ignore_eos: bool = False
    """Keep generating past EOS (benchmarks)."""
    repetition_penalty: Optional[float] = None
    """> 1 discourages tokens already in the prompt or the output (as in transformers). Unset: the model's, else 1."""
    presence_penalty: float = 0.0
    """Subtracted from the logit of every token already in the output (OpenAI's; -2 to 2, > 0 discourages)."""
    frequency_penalty: float = 0.0
    """Subtracted from a token's logit once per time it is already in the output (OpenAI's; -2 to 2)."""
    logit_bias: dict[int, float] = field(default_factory=dict)
    """Token id -> value added to its logit before sampling (OpenAI's; -100 to 100: -100 bans, 100 forces). On the
    command line with Hydra's force-add: '++sampling.logit_bias={50256:-100}'."""
    n: int = 1
    """Completions per prompt, each sampled independently (its own generator key); n > 1 rows hold "outputs"."""
    logprobs: int = 0
    """Return the top-k log-probabilities (of the raw model output) for every generated token; 0 = none."""
    prompt_logprobs: int = 0
    """Return the top-k log-probabilities of every prompt token after the first (and the token's own), for
    scoring; 0 = none. Such requests compute their whole prompt (no prefix-cache hits) until scored."""
    truncate_prompt_tokens: int = 0
    """Keep only each prompt's last k tokens (vLLM's); -1: the most that model.max_model_len allows with one token
    to generate; 0: off, a prompt too long for max_model_len is an error row."""


@dataclass
class DataConfig:
    input: Optional[str] = None
    """Input JSONL (rows with prompt, messages or prompt_token_ids). Unset: the bundled sample prompts."""
    output: str = "spmd_infer_output.jsonl"
    """Output JSONL, one row per input row, in input order."""
    overwrite: bool = False
    """Start afresh even if the output (or its partial shards) exists."""
    format: str = "auto"
    """Input format: jsonl (our rows), openai (OpenAI Batch API / `vllm run-batch` rows, answered in the same
    format) or auto (openai if the first row has "custom_id" and "body", else jsonl)."""


@dataclass
class RuntimeConfig:
    device: str = "auto"
    """auto (CUDA with NCCL when present, else CPU with gloo), cuda or cpu."""
    warmup: bool = True
    """Run a warmup step through the step function before sizing the KV cache: on a GPU one prefill of
    scheduler.max_num_batched_tokens (kernel compilation, activation-memory profiling), on the CPU a short one."""
    cuda_graphs: bool = True
    """Capture decode steps in CUDA graphs per batch-size bucket (CUDA only; models whose layers all allow it)."""
    prefill_graphs: bool = True
    """With cuda_graphs: also capture prefill steps, per token-count bucket, as graphs between the attention layers,
    which launch eagerly between them with the step's own sequences (engine/prefill_graphs.py). Only the step sizes
    whose eager forward would leave the GPU waiting on the host's launches (all up to 8192 tokens for Qwen3-0.6B, up
    to 1024 for Llama-3-8B, 2048 for DeepSeek-V2-Lite); larger steps run eagerly. Dense, MoE and MLA models alike
    (SPMD_PREFILL_GRAPHS_MOE=0 keeps MoE ones eager); under DP attention all DP ranks replay one bucket in a step that
    any of them prefills, a decoding rank's attention in its own phase. A capture that fails on any rank leaves every
    rank prefilling eagerly; one that fails on one rank inside a collective the others then wait in fails the job
    within 2 minutes, naming this switch (engine/capture_vote.py). H200: Qwen3-0.6B 256 x 512 TTFT 190 -> 147 ms,
    Llama-3-8B 8 x 64 24 -> 13 ms, DeepSeek-V2-Lite 8 x 64 49 -> 16 ms (dp2 + DP attention, 16 x 64: 84 -> 15 ms)."""
    overlap_steps: bool = True
    """Launch each decode step before the previous step's tokens reach the host, feeding them to the model on
    the device, so the host's bookkeeping runs while the GPU computes (engine/step.py). A sequence that stops
    (EOS, stop string) runs one extra, discarded token. Off: every step waits for its tokens first (measured on
    an H200: Llama-3-8B decode bs64 8.2 -> 7.3 ms per step, Qwen3-0.6B nano-vllm 14.4k -> 23.5k tok/s). Steps
    whose sequences need their tokens on the host to sample (logprobs) never overlap; penalties count tokens on
    the device and do."""
    overlap_prefill: bool = True
    """With overlap_steps: prefill steps too launch the next step before their sampled (first) tokens reach the
    host, which otherwise waits for each prefill step to finish before it schedules the next one while the GPU
    idles. Measured on an H200 (tests/gpu/run_overlap_prefill.sh, off / on in one launch, medians of three):
    Qwen3-0.6B nano-vllm prefill 0.36 -> 0.31 s (25.3k -> 25.6k output tok/s), 256 x 1024 prompts 0.66 -> 0.64 s,
    DeepSeek-V2-Lite 256 x 1k 3.39 -> 3.27 s. Prefills that score their prompts (prompt_logprobs), sample with
    logprobs, or keep no token (max_tokens 0) settle at once either way."""
    freeze_gc: bool = True
    """Once the engine is warm, freeze the objects alive then (gc.freeze: torch, transformers, Triton, the model's
    modules, ~400k of them), so that a full garbage collection during the step loop walks only what the job made
    since: over the whole startup heap one takes 0.1-0.3 s, during which no step is launched (host_gc.py). The job
    summary counts the full collections of its step loop either way."""
    progress: bool = True
    """Show progress on global rank 0."""
    progress_interval_s: float = 30.0
    """Seconds between plain progress lines when stdout is not a terminal (Slurm logs); 0 = every step."""
    log_level: str = "INFO"
    """Python logging level for the console of rank 0 and for every rank's log file."""
    load_timeout_s: float = 1800.0
    """Collective timeout while loading and warming up, and around the final merge: ranks wait there for
    the slowest to read its weights (or for rank 0 to merge the output)."""
    step_timeout_s: float = 300.0
    """Collective timeout in the step loop: a rank that stops answering fails the job after this long."""


@dataclass
class JobConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    parallel: ParallelConfig = field(default_factory=ParallelConfig)
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)
    cache: CacheConfig = field(default_factory=CacheConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    data: DataConfig = field(default_factory=DataConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)


def register_configs() -> None:
    """Put the schemas in Hydra's ConfigStore; configs/*.yaml extend them by name."""
    cs = ConfigStore.instance()
    cs.store(name="job_schema", node=JobConfig)
    for group, node in (("model", ModelConfig), ("parallel", ParallelConfig), ("sampling", SamplingConfig),
                        ("data", DataConfig)):
        cs.store(group=group, name=f"{group}_schema", node=node)

"""Typed Hydra config of the benchmark: the job's groups (model, parallel, scheduler, cache, ...) plus `bench`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from hydra.core.config_store import ConfigStore

from ..config import (CacheConfig, ModelConfig, ParallelConfig, RuntimeConfig, SamplingConfig, SchedulerConfig,
                      register_configs)


@dataclass
class BenchSection:
    preset: str = "qwen3-0.6b"
    """Model shape with random weights (presets.py: tiny, tiny-moe, qwen3-0.6b, qwen3-8b, llama-3-8b,
    deepseek-v2-lite, qwen3-30b-a3b, qwen1.5-moe-a2.7b); ignored when model.path is set (its config.json is used)."""
    workload: str = "nano_vllm"
    """nano_vllm, grid, decode, or all (one after the other on the same engine)."""
    seed: int = 0
    """Seed of the random prompt tokens and (nano_vllm) lengths."""
    num_seqs: int = 256
    """nano_vllm: number of sequences."""
    min_len: int = 100
    """nano_vllm: shortest input and output length."""
    max_input_len: int = 1024
    """nano_vllm: input lengths are uniform in [min_len, max_input_len]."""
    max_output_len: int = 1024
    """nano_vllm: output lengths are uniform in [min_len, max_output_len] (ignore_eos)."""
    grid_batch_sizes: list[int] = field(default_factory=lambda: [1, 8, 64])
    """grid: sequences per case (over all DP ranks)."""
    input_lens: list[int] = field(default_factory=lambda: [128, 1024])
    """grid: prompt lengths."""
    output_lens: list[int] = field(default_factory=lambda: [128])
    """grid: output lengths (1 = prefill only: time to first token and prefill MFU)."""
    batch_sizes: list[int] = field(default_factory=lambda: [1, 8, 32, 64, 128, 256])
    """decode: sequences decoding together (over all DP ranks; assigned least-loaded as in a job)."""
    context: int = 1024
    """decode: prompt length, i.e. the KV context the decode steps start from."""
    decode_steps: int = 32
    """decode: decode steps timed per case (each sequence generates decode_steps + 1 tokens)."""
    warm_case: bool = True
    """Run a small untimed case first, so the first decode kernels' compilation is not timed."""
    baseline: str = "none"
    """none, or hf: transformers generate() on the same workload in the same run (1 rank only)."""
    hf_batch_size: int = 64
    """hf baseline, nano_vllm: prompts per generate() call; grid and decode cases run their whole batch in one
    call."""
    hf_orders: list[str] = field(default_factory=lambda: ["output_length"])
    """hf baseline, nano_vllm: the orders the prompts reach generate() in, one baseline run each: output_length
    (sorted, so each batch's rows finish together: the stronger peer) or given (the workload's order, as a
    generate() user feeds a file of prompts). The first gives the headline ratio, the others are printed beside it."""
    hf_cache_implementation: Optional[str] = None
    """hf baseline: generate()'s cache_implementation (e.g. static, which compiles); unset: transformers' default."""
    load: bool = False
    """Write the random weights as a safetensors checkpoint first and time the real loading path."""
    checkpoint_format: str = "model"
    """load=true: how the random weights are written: model (in model.dtype) or fp8 (as DeepSeek-V3's and Qwen3's
    -FP8 releases: linear weights in float8 e4m3 with a float32 scale per 128 x 128 block, embeddings, LM head and
    routers in model.dtype), which the engine then loads as such (model.expert_dtype=auto and model.linear_dtype=auto
    keep routed experts and linear layers float8 on a GPU that runs float8, the rest dequantized as it loads)."""
    checkpoint_dir: Optional[str] = None
    """load=true: where to write it (must be shared by all ranks; kept); unset: a temp dir, deleted after."""
    output: str = "bench_results.json"
    """JSON file with every number (written by global rank 0)."""
    copy_mib: int = 0
    """Size of the bandwidth ceiling's copy buffer in MiB; 0: 2048 on CUDA, 64 on CPU."""
    matmul_n: int = 0
    """Size n of the n x n x n matmul ceiling; 0: 8192 on CUDA, 512 on CPU."""
    ceiling_repeats: int = 10
    """Timed repeats of each ceiling (after warmup); the median counts."""
    repeats: int = 1
    """Timed runs of each case in this process (run r draws its prompt tokens from seed + r, so none reuses another's
    cached prefixes). The case's figures are those of the run with the median output rate; its "runs" list in the
    JSON, and a console line, give every run's output rate, decode step and MBU. Cheaper than relaunching for an A/B
    that needs several samples (each launch measures its ceilings and captures its graphs again)."""
    overlap_prefill_ab: bool = False
    """Run each of a case's repeats twice, in turn: as runtime.overlap_prefill says and with it flipped (prompt
    tokens from seed + repeats + r for the flipped runs, so neither reuses the other's cached prefixes). The flipped
    runs' median is a row of its own, named "... [overlap_prefill=on|off]", right after the case's. Prefill seconds
    move more between launches (0.36-0.56 s for Qwen3-0.6B's nano-vllm prompts on one H200) than within one (0.35-0.37
    s), so the A/B belongs in one launch. Needs runtime.overlap_steps=true."""
    profile: bool = False
    """Run the last case once more under torch.profiler and print the kernels' share of wall time and the
    heaviest kernels (host-bound vs GPU-bound steps); the figures go into the JSON under "profile"."""
    profile_top: int = 15
    """profile=true: how many of the heaviest kernels to list."""
    profile_phase: str = "decode"
    """profile=true: which steps to profile: decode (from the first step in which no DP rank prefills to the case's
    end) or prefill (from the case's start to its first such step, whose kernels it includes)."""


@dataclass
class BenchConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    parallel: ParallelConfig = field(default_factory=ParallelConfig)
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)
    cache: CacheConfig = field(default_factory=CacheConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    bench: BenchSection = field(default_factory=BenchSection)


def register_bench_configs() -> None:
    """The job's schemas (its groups extend them) plus `bench_schema`, which configs/bench.yaml extends."""
    register_configs()
    ConfigStore.instance().store(name="bench_schema", node=BenchConfig)

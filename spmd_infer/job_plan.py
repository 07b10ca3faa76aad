"""Everything a job decides before its first collective: paths, model config, layout, dtype, lengths, sampling.

Every rank computes the same plan from the same files, so a bad configuration fails with the same
message on every rank and no rank waits in a collective for one that has already exited.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import torch
from transformers import AutoConfig

from .layers.fp8_checkpoint import block_fp8_scheme
from .layers.moe import DEFAULT_FP8_BLOCK, fp8_resident_block, has_routed_experts
from .layers.rotary import max_positions
from .model_defaults import generation_defaults
from .models.attention_window import hold_to_window
from .models.registry import check_layout, check_mlp_layout, expert_width, model_class
from .parallel.dims import ConfigError, ParallelDims, resolve_device
from .parallel.shm_exchange import EXCHANGE_MODES
from .parallel.symm_all_reduce import MODES as ALL_REDUCE_MODES
from .sampling_params import InvalidRequest, SamplingParams

log = logging.getLogger(__name__)

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model")


@dataclass
class JobPlan:
    model_dir: Path
    hf_config: Any
    dims: ParallelDims
    device: torch.device
    dtype: torch.dtype
    max_model_len: int
    input: Path
    output: Path
    tokenizer: Optional[Any]
    eos_ids: frozenset[int]
    model_defaults: dict[str, Any]  # generation_config.json's sampling values
    sampling: SamplingParams  # the job's sampling.* over model_defaults: every row's starting point
    demo: bool = False
    fp8_expert_block: Optional[tuple[int, int]] = None  # routed experts in float8 (resolve_fp8_expert_block)
    fp8_linear_block: Optional[tuple[int, int]] = None  # dense linear layers in float8 (resolve_fp8_linear_block)

    @classmethod
    def from_config(cls, cfg: Any) -> "JobPlan":
        demo = cfg.model.path is None
        model_dir = _demo_dir() if demo else Path(cfg.model.path).expanduser()
        if not (model_dir / "config.json").is_file():
            raise ConfigError(f"model.path={cfg.model.path!r}: no config.json there; point model.path at a Hugging "
                              f"Face checkpoint folder (config.json + *.safetensors)")
        hf_config = AutoConfig.from_pretrained(model_dir)
        model_class(hf_config)  # unknown architecture -> ConfigError
        world = int(os.environ.get("WORLD_SIZE", "1"))
        dims = ParallelDims(cfg.parallel.dp, cfg.parallel.tp, world, cfg.parallel.dp_attention)
        dims.validate()
        check_layout(hf_config, dims.tp)
        check_parallel_choices(cfg.parallel)
        dp_attention = dims.dp_attention and dims.dp > 1
        check_mlp_layout(hf_config, dims.mlp_ranks, cfg.parallel.moe, dp_attention)
        device = resolve_device(cfg.runtime.device)
        dtype = resolve_dtype(cfg.model.dtype, device)
        check_kv_dtype_on_device(cfg.cache.dtype, device)
        resolve_kv_head_major(cfg.cache.layout)
        fp8_expert_block = resolve_fp8_expert_block(cfg.model.expert_dtype, hf_config, device, dims.mlp_ranks,
                                                    cfg.parallel.moe)
        fp8_linear_block = resolve_fp8_linear_block(cfg.model.linear_dtype, hf_config, device)
        max_pos = max_positions(hf_config)
        max_model_len = int(cfg.model.max_model_len or max_pos)
        if not 1 < max_model_len <= max_pos:
            raise ConfigError(f"model.max_model_len={max_model_len} must be in [2, {max_pos}] "
                              f"(the model's max_position_embeddings, or under YaRN its original context x factor)")
        max_model_len = hold_to_window(hf_config, max_model_len, requested=bool(cfg.model.max_model_len))
        _check_scheduler(cfg)
        input_path = Path(cfg.data.input).expanduser() if cfg.data.input else _demo_prompts()
        if not input_path.is_file():
            raise ConfigError(f"data.input={str(input_path)!r} does not exist; give a JSONL file of prompts")
        tokenizer = _load_tokenizer(Path(cfg.model.tokenizer).expanduser() if cfg.model.tokenizer else model_dir)
        model_defaults = generation_defaults(model_dir)
        sampling = _job_sampling(cfg.sampling, model_defaults, hf_config.vocab_size)
        if sampling.stop and tokenizer is None:
            raise ConfigError(f"sampling.stop={list(sampling.stop)} needs a tokenizer (stop strings are matched on "
                              f"text) but {model_dir} has no tokenizer files; use sampling.stop_token_ids, or set "
                              f"model.tokenizer=DIR")
        if demo:
            log.warning("no model.path given: running the built-in demo model (a tiny Llama with RANDOM weights, "
                        "so its text is gibberish) from %s. Run a real checkpoint with model.path=/path/to/hf-model",
                        model_dir)
        return cls(model_dir=model_dir, hf_config=hf_config, dims=dims, device=device, dtype=dtype,
                   max_model_len=max_model_len, input=input_path, output=Path(cfg.data.output).expanduser(),
                   tokenizer=tokenizer, eos_ids=_eos_ids(model_dir, hf_config), model_defaults=model_defaults,
                   sampling=sampling, demo=demo, fp8_expert_block=fp8_expert_block,
                   fp8_linear_block=fp8_linear_block)

    def check_kv_capacity(self, tokens_per_rank: int) -> None:
        if tokens_per_rank < self.max_model_len:
            raise ConfigError(
                f"the KV cache holds {tokens_per_rank} tokens per rank, fewer than model.max_model_len="
                f"{self.max_model_len}, so a long request could never run; lower model.max_model_len or give the "
                f"cache more room (cache.gpu_memory_utilization, cache.cpu_kv_cache_gb, cache.num_blocks)")


def _job_sampling(sampling_cfg: Any, model_defaults: dict[str, Any], vocab_size: int) -> SamplingParams:
    """The job's sampling values, checked now: a bad one would otherwise turn every row into an error row."""
    try:
        params = SamplingParams.from_config(sampling_cfg, model_defaults)
    except InvalidRequest as e:
        raise ConfigError(f"sampling: {e}; fix the sampling.* settings") from None
    outside = params.bias_ids_outside(vocab_size)
    if outside:
        raise ConfigError(f"sampling.logit_bias names token ids {outside} outside the model's vocabulary "
                          f"[0, {vocab_size}); use ids from this model's tokenizer")
    return params


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    """model.dtype to a torch dtype: auto is bfloat16 on CUDA, float32 on CPU."""
    if name == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    if name not in DTYPES:
        raise ConfigError(f"model.dtype={name!r} must be one of auto, {', '.join(DTYPES)}")
    return DTYPES[name]


KV_DTYPES = {"fp8": torch.float8_e4m3fn}


def _kv_dtype_named(name: str) -> Optional[torch.dtype]:
    """cache.dtype's own torch dtype (None for auto); a ConfigError for any other name."""
    if name == "auto":
        return None
    if name not in KV_DTYPES:
        raise ConfigError(f"cache.dtype={name!r} must be one of auto, {', '.join(KV_DTYPES)}")
    return KV_DTYPES[name]


def resolve_kv_dtype(name: str, model_dtype: torch.dtype) -> torch.dtype:
    """cache.dtype to the KV cache's torch dtype: auto is the model's. Per-head K/V caches and MLA's latent cache
    alike."""
    kv_dtype = _kv_dtype_named(name)
    return model_dtype if kv_dtype is None else kv_dtype


KV_LAYOUTS = ("token", "head")


def resolve_kv_head_major(layout: str) -> bool:
    """cache.layout to whether the KV cache's pages are head-major; a ConfigError for any other name."""
    if layout not in KV_LAYOUTS:
        raise ConfigError(f"cache.layout={layout!r} must be one of {', '.join(KV_LAYOUTS)}")
    return layout == "head"


def check_kv_dtype_on_device(name: str, device: torch.device) -> None:
    """A float8 cache on CUDA needs float8 e4m3 in Triton's kernels, which compute capability 8.9 (Ada, Hopper) and
    later have; refused before any model work on older GPUs, where the first kernel compile would fail instead."""
    if _kv_dtype_named(name) is not None:
        _check_float8_on_device(f"cache.dtype={name}", device)


def _float8_on_device(device: torch.device) -> bool:
    """Whether Triton's float8 e4m3 kernels run here: a CUDA GPU of compute capability 8.9 (Ada, Hopper) or later."""
    return device.type == "cuda" and torch.cuda.get_device_capability(device) >= (8, 9)


def _check_float8_on_device(setting: str, device: torch.device) -> None:
    if device.type != "cuda" or _float8_on_device(device):
        return
    major, minor = torch.cuda.get_device_capability(device)
    raise ConfigError(f"{setting}: {torch.cuda.get_device_name(device)} (compute capability "
                      f"{major}.{minor}) has no float8 e4m3 in Triton's kernels, which needs 8.9 (Ada, Hopper) "
                      f"or later; use {setting.split('=')[0]}=auto")


# model.expert_dtype's and model.linear_dtype's values.
FLOAT8_SETTINGS = ("auto", "fp8", "model")


def resident_expert_block(hf_config: Any, block: tuple[int, int], mlp_ranks: int, moe: str) -> tuple[int, int]:
    """The float8 block each rank's experts are held in (layers.moe.fp8_resident_block for this layout's share of
    an expert's width: `mlp_ranks` ranks split it by `moe`); a ConfigError where no block fits."""
    return fp8_resident_block(block, expert_width(hf_config)[1] // (mlp_ranks if moe == "tp" else 1), moe)


def resolve_fp8_expert_block(name: str, hf_config: Any, device: torch.device, mlp_ranks: int = 1,
                             moe: str = "ep") -> Optional[tuple[int, int]]:
    """model.expert_dtype to the float8 experts' largest block (a float8 checkpoint's own, else 128 x 128), or None
    for experts in the model's dtype. fp8: float8 or a ConfigError (another name, a model without routed experts, a
    GPU without float8). model: None. auto: a block-float8 checkpoint's experts stay float8 where float8 can run
    them (a CUDA GPU of compute capability 8.9+, every rank's share of an expert whole float8 blocks of 16+ rows
    under this layout: `mlp_ranks` ranks split it by `moe`), as vLLM and SGLang run such releases; else None."""
    if name not in FLOAT8_SETTINGS:
        raise ConfigError(f"model.expert_dtype={name!r} must be one of {', '.join(FLOAT8_SETTINGS)}")
    if name == "model":
        return None
    if name == "fp8":
        if not has_routed_experts(hf_config):
            raise ConfigError(f"model.expert_dtype=fp8 keeps routed experts in float8, and this model "
                              f"({type(hf_config).__name__}) has none; use model.expert_dtype=auto")
        _check_float8_on_device("model.expert_dtype=fp8", device)
        return block_fp8_scheme(hf_config) or DEFAULT_FP8_BLOCK
    block = block_fp8_scheme(hf_config)
    if block is None or not has_routed_experts(hf_config) or not _float8_on_device(device):
        return None
    try:
        resident_expert_block(hf_config, block, mlp_ranks, moe)
    except ConfigError as e:
        log.info("model.expert_dtype=auto: routed experts dequantized to the model's dtype (%s)", e)
        return None
    return block


def resolve_fp8_linear_block(name: str, hf_config: Any, device: torch.device) -> Optional[tuple[int, int]]:
    """model.linear_dtype to the dense linear layers' float8 block (a float8 checkpoint's own, else 128 x 128), or
    None for linear layers in the model's dtype. fp8: float8 or a ConfigError (another name, a GPU without float8,
    blocks the kernel cannot take). model: None. auto: a block-float8 checkpoint's linear layers stay float8 where
    float8 runs (a CUDA GPU of compute capability 8.9+), as vLLM and SGLang run such releases; else None. Layers
    whose shard is not whole blocks under the layout stay in the model's dtype either way (LinearBase.takes_float8)."""
    if name not in FLOAT8_SETTINGS:
        raise ConfigError(f"model.linear_dtype={name!r} must be one of {', '.join(FLOAT8_SETTINGS)}")
    if name == "model":
        return None
    block = block_fp8_scheme(hf_config)
    usable = block is None or all(b >= 16 and b & (b - 1) == 0 for b in block)
    if name == "fp8":
        _check_float8_on_device("model.linear_dtype=fp8", device)
        if not usable:
            raise ConfigError(f"model.linear_dtype=fp8: this checkpoint's float8 blocks are {block[0]} x "
                              f"{block[1]}; the float8 linear kernel takes powers of two of 16 or more: use "
                              f"model.linear_dtype=model")
        return block or DEFAULT_FP8_BLOCK
    if block is None or not usable or not _float8_on_device(device):
        if block is not None:
            why = ("no float8 on this device" if usable else
                   f"float8 blocks of {block[0]} x {block[1]}, not powers of two of 16 or more")
            log.info("model.linear_dtype=auto: linear layers dequantized to the model's dtype (%s)", why)
        return None
    return block


def check_parallel_choices(parallel: Any) -> None:
    """The parallel section's named choices, checked before any weight is read (each is read again where it acts,
    at engine start)."""
    if parallel.moe not in ("ep", "tp"):
        raise ConfigError(f"parallel.moe={parallel.moe!r} must be ep or tp")
    if parallel.exchange not in EXCHANGE_MODES:
        raise ConfigError(f"parallel.exchange={parallel.exchange!r} must be one of {', '.join(EXCHANGE_MODES)}")
    all_reduce = getattr(parallel, "all_reduce", "auto")
    if all_reduce not in ALL_REDUCE_MODES:
        raise ConfigError(f"parallel.all_reduce={all_reduce!r} must be one of {', '.join(ALL_REDUCE_MODES)}")


def _check_scheduler(cfg: Any) -> None:
    s, c = cfg.scheduler, cfg.cache
    if s.max_num_seqs < 1 or s.max_num_batched_tokens < 1:
        raise ConfigError("scheduler.max_num_seqs and scheduler.max_num_batched_tokens must be >= 1")
    _kv_dtype_named(c.dtype)
    if c.block_size < 1 or c.block_size & (c.block_size - 1):
        raise ConfigError(f"cache.block_size={c.block_size} must be a power of two")
    if not 0.0 < c.gpu_memory_utilization <= 1.0:
        raise ConfigError(f"cache.gpu_memory_utilization={c.gpu_memory_utilization} must be in (0, 1]")


def _load_tokenizer(folder: Path) -> Optional[Any]:
    if not any((folder / f).exists() for f in TOKENIZER_FILES):
        log.warning("no tokenizer files in %s: rows must give prompt_token_ids, and outputs carry token ids only "
                    "(text null); set model.tokenizer=DIR to use another tokenizer", folder)
        return None
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(folder)


def _eos_ids(model_dir: Path, hf_config: Any) -> frozenset[int]:
    """EOS ids from config.json and generation_config.json (either may hold an int or a list)."""
    ids: set[int] = set()
    sources = [getattr(hf_config, "eos_token_id", None)]
    gen = model_dir / "generation_config.json"
    if gen.is_file():
        sources.append(json.loads(gen.read_text()).get("eos_token_id"))
    for value in sources:
        if isinstance(value, int):
            ids.add(value)
        elif isinstance(value, list):
            ids.update(v for v in value if isinstance(v, int))
    return frozenset(ids)


def _demo_dir() -> Path:
    from .demo import demo_model_dir

    return demo_model_dir()


def _demo_prompts() -> Path:
    from .demo import demo_prompts_path

    return demo_prompts_path()

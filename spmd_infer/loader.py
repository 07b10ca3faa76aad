"""Streams a safetensors checkpoint into a sharded model, tensor by tensor, reading only this rank's slices."""

from __future__ import annotations

import json
import logging
import resource
import time
from collections import defaultdict
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from safetensors import safe_open
from torch import nn

from .layers.fp8_checkpoint import SCALE_SUFFIX, BlockFp8Tensor, block_fp8_scheme
from .layers.weights import CheckpointTensor, WeightError, copy_checked

log = logging.getLogger(__name__)

# Tensors that some checkpoints carry but that we compute instead of loading.
IGNORED_SUFFIXES = ("rotary_emb.inv_freq",)


@dataclass
class LoadStats:
    tensors_read: int = 0
    bytes_read: int = 0
    seconds: float = 0.0
    peak_rss_mb: float = 0.0


def checkpoint_files(model_dir: Path) -> list[Path]:
    index = model_dir / "model.safetensors.index.json"
    if index.exists():
        names = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        files = [model_dir / n for n in names]
    else:
        files = sorted(model_dir.glob("*.safetensors"))
    missing = [str(f) for f in files if not f.exists()]
    if not files or missing:
        raise WeightError(f"no safetensors weights found in {model_dir} (missing: {missing or '*.safetensors'}); "
                          f"model.path must be a Hugging Face checkpoint folder saved with safetensors")
    return files


def unquantized_weights(model_dir: Path) -> set[str]:
    """Names of a block-float8 checkpoint's `.weight` tensors stored without block scales (left in a 16-bit dtype,
    as releases leave embeddings, the LM head and routers, and some leave chosen layers), from the files' headers."""
    names: set[str] = set()
    with ExitStack() as stack:
        for path in checkpoint_files(model_dir):
            names.update(stack.enter_context(safe_open(str(path), framework="pt", device="cpu")).keys())
    return {n for n in names if n.endswith(".weight") and n + SCALE_SUFFIX not in names}


def _checkpoint_tensor(name: str, where: dict, block: tuple[int, int] | None, device) -> CheckpointTensor:
    """The tensor `name` as the weight loaders read it: dequantized as read (on `device`, its parameter's) when it
    is a float8 weight with block scales (`block`: the checkpoint declares them), as stored otherwise."""
    stored = where[name].get_slice(name)
    src = CheckpointTensor(name, stored)
    scale_name = name + SCALE_SUFFIX
    if block and scale_name in where:
        scale = CheckpointTensor(scale_name, where[scale_name].get_slice(scale_name))
        return BlockFp8Tensor(name, src, scale, block, device)
    if block and stored.get_dtype().startswith("F8"):
        raise WeightError(f"tensor {name!r} is stored as float8 without its scales ({scale_name!r} is not in the "
                          f"checkpoint): is the checkpoint complete?")
    return src


def load_weights(model: nn.Module, model_dir: Path) -> LoadStats:
    """Fill every parameter of `model`; missing, unexpected and mis-shaped tensors are errors naming them."""
    start = time.perf_counter()
    params = dict(model.named_parameters(remove_duplicate=False))
    tied = getattr(model.config, "tie_word_embeddings", False)
    seen: dict[str, int] = defaultdict(int)
    unexpected: list[str] = []
    stats = LoadStats()
    skip = getattr(model, "skip_checkpoint_name", None)  # e.g. DeepSeek-V3's multi-token-prediction layer
    block = block_fp8_scheme(model.config)  # DeepSeek-V3's float8 release: (rows, cols) of a scaled block
    with ExitStack() as stack:
        # Every file open at once (memory-mapped): a float8 weight's scales may lie in another file.
        handles = [stack.enter_context(safe_open(str(path), framework="pt", device="cpu"))
                   for path in checkpoint_files(model_dir)]
        where = {name: f for f in handles for name in f.keys()}
        for f in handles:
            for ckpt_name in f.keys():
                if (ckpt_name.endswith(IGNORED_SUFFIXES) or (tied and ckpt_name == "lm_head.weight")
                        or (skip is not None and skip(ckpt_name))):
                    continue
                if block and ckpt_name.endswith(SCALE_SUFFIX):  # read with its weight
                    if ckpt_name.removesuffix(SCALE_SUFFIX) not in where:
                        unexpected.append(ckpt_name)
                    continue
                name, shard_id = model.map_checkpoint_name(ckpt_name)
                param = params.get(name)
                if param is None:
                    unexpected.append(ckpt_name)
                    continue
                src = _checkpoint_tensor(ckpt_name, where, block, param.device)
                loader = getattr(param, "weight_loader", None)
                if loader is None:
                    copy_checked(param, src.read(), ckpt_name)
                elif shard_id is None:
                    loader(param, src)
                else:
                    loader(param, src, shard_id)
                seen[name] += 1
                stats.tensors_read += src.bytes_read > 0  # experts of other ranks are never read
                stats.bytes_read += src.bytes_read
    if unexpected:
        raise WeightError(f"checkpoint tensors with no place in the model: {unexpected[:8]}"
                          f"{' ...' if len(unexpected) > 8 else ''}; does config.json match the weights?")
    missing = [n for n, p in params.items() if seen[n] < getattr(p, "expected_loads", 1)
               and not (tied and n == "lm_head.weight")]
    if missing:
        raise WeightError(f"tensors missing from the checkpoint in {model_dir}: {missing[:8]}"
                          f"{' ...' if len(missing) > 8 else ''}")
    stats.seconds = time.perf_counter() - start
    stats.peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    log.info("loaded %d tensors (%.1f MiB read for this rank's shards) in %.2f s; peak host RSS %.0f MiB",
             stats.tensors_read, stats.bytes_read / 2**20, stats.seconds, stats.peak_rss_mb)
    return stats

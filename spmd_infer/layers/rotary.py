"""Rotary position embedding: inverse frequencies (with llama3 / linear scaling) and their application."""

from __future__ import annotations

import math
import weakref
from typing import Any

import torch
from spmd_kernels import apply_rotary, rotary_store_kv
from torch import nn


# The rope_type values inverse_frequencies computes (transformers' names).
ROPE_TYPES = ("default", "linear", "llama3", "yarn")


def rope_parameters(hf_config: Any) -> dict[str, Any]:
    """transformers 5 keeps rope_theta and scaling in `rope_parameters`; older configs split them."""
    params = dict(getattr(hf_config, "rope_parameters", None) or {})
    if not params:
        params = dict(getattr(hf_config, "rope_scaling", None) or {})
        params.setdefault("rope_theta", getattr(hf_config, "rope_theta", 10000.0))
    params.setdefault("rope_type", params.pop("type", "default"))
    return params


def max_positions(hf_config: Any) -> int:
    """Positions the model reaches: max_position_embeddings, or under YaRN its original context times its factor where
    that is longer (Qwen2.5 / Qwen3 with YaRN added for long contexts: 32768 x 4, while max_position_embeddings stays
    32768 / 40960), as transformers computes any position and vLLM derives its longest sequence."""
    longest = int(hf_config.max_position_embeddings)
    p = rope_parameters(hf_config)
    if p["rope_type"] == "yarn" and p.get("factor") and p.get("original_max_position_embeddings"):
        longest = max(longest, int(p["original_max_position_embeddings"] * p["factor"]))
    return longest


def inverse_frequencies(rot_dim: int, params: dict[str, Any],
                        max_position: int | None = None) -> tuple[torch.Tensor, float]:
    """Returns (inv_freq [rot_dim/2] float32, attention scaling applied to cos and sin)."""
    base = float(params["rope_theta"])
    inv_freq = 1.0 / (base ** (torch.arange(0, rot_dim, 2, dtype=torch.int64).float() / rot_dim))
    kind = params["rope_type"]
    if kind == "default":
        return inv_freq, 1.0
    if kind == "linear":
        return inv_freq / float(params["factor"]), 1.0
    if kind == "llama3":
        return _llama3(inv_freq, params), 1.0
    if kind == "yarn":
        return _yarn(rot_dim, params, max_position)
    raise NotImplementedError(f"rope_type={kind!r} is not supported yet (supported: {', '.join(ROPE_TYPES)})")


def yarn_mscale(scale: float, mscale: float = 1.0) -> float:
    """YaRN's magnitude correction for a context stretched `scale` times (1 when not stretched)."""
    return 1.0 if scale <= 1 else 0.1 * mscale * math.log(scale) + 1.0


def _yarn(dim: int, p: dict[str, Any], max_position: int | None) -> tuple[torch.Tensor, float]:
    # YaRN as transformers' _compute_yarn_parameters: interpolate low frequencies by `factor`, keep high
    # ones, ramp linearly between the dims that rotate beta_fast and beta_slow times over the old length.
    base = float(p["rope_theta"])
    old_len = p.get("original_max_position_embeddings") or max_position
    factor = p.get("factor") or max_position / old_len
    attention = p.get("attention_factor")
    if attention is None:
        mscale, mscale_all_dim = p.get("mscale"), p.get("mscale_all_dim")
        attention = (yarn_mscale(factor, mscale) / yarn_mscale(factor, mscale_all_dim) if mscale and mscale_all_dim
                     else yarn_mscale(factor))
    beta_fast, beta_slow = p.get("beta_fast") or 32, p.get("beta_slow") or 1

    def correction_dim(rotations: float) -> float:
        return dim * math.log(old_len / (rotations * 2 * math.pi)) / (2 * math.log(base))

    low, high = correction_dim(beta_fast), correction_dim(beta_slow)
    if p.get("truncate", True):
        low, high = math.floor(low), math.ceil(high)
    low, high = max(low, 0), min(high, dim - 1)
    if low == high:
        high += 0.001  # no zero-width ramp
    ramp = ((torch.arange(dim // 2, dtype=torch.float32) - low) / (high - low)).clamp(0, 1)
    pos_freqs = base ** (torch.arange(0, dim, 2).float() / dim)
    extrapolation = 1 - ramp  # share of each frequency kept as trained
    inv_freq = (1.0 / (factor * pos_freqs)) * (1 - extrapolation) + (1.0 / pos_freqs) * extrapolation
    return inv_freq, float(attention)


def _llama3(inv_freq: torch.Tensor, p: dict[str, Any]) -> torch.Tensor:
    # Llama 3.1: keep high frequencies, divide low ones by `factor`, blend smoothly in between.
    factor, low, high = float(p["factor"]), float(p["low_freq_factor"]), float(p["high_freq_factor"])
    old_len = float(p["original_max_position_embeddings"])
    low_wavelen, high_wavelen = old_len / low, old_len / high
    wavelen = 2 * math.pi / inv_freq
    scaled = torch.where(wavelen > low_wavelen, inv_freq / factor, inv_freq)
    smooth = (old_len / wavelen - low) / (high - low)
    blended = (1 - smooth) * scaled / factor + smooth * scaled
    medium = ~(wavelen < high_wavelen) & ~(wavelen > low_wavelen)
    return torch.where(medium, blended, scaled)


# Every layer of a model shares one RotaryEmbedding (the same module in each): its cos/sin table is max_position x
# rot_dim float32, 20-64 MiB at 40k-128k positions, which a copy per layer made 0.5-2.4 GiB a rank (Qwen3-0.6B: 560
# MiB beside 1.1 GiB of weights; DeepSeek-V2-Lite 1 GiB). Weak values: a model's table goes when the model does.
_SHARED: "weakref.WeakValueDictionary[tuple, RotaryEmbedding]" = weakref.WeakValueDictionary()


def shared_rotary(head_dim: int, rot_dim: int, max_position: int, params: dict[str, Any],
                  interleaved: bool = False) -> "RotaryEmbedding":
    """The RotaryEmbedding of these settings on the current default device, made on the first request."""
    device = torch.empty(()).device  # the device a model is being built on (build_model's torch.device context)
    key = (head_dim, rot_dim, max_position, tuple(sorted((k, repr(v)) for k, v in params.items())), interleaved,
           str(device))
    rotary = _SHARED.get(key)
    if rotary is None:
        rotary = _SHARED[key] = RotaryEmbedding(head_dim, rot_dim, max_position, params, interleaved)
    return rotary


class RotaryEmbedding(nn.Module):
    """Rotary embedding over the first rot_dim dims of each head: neox-style (rotate halves) by default,
    or `interleaved` (GPT-J / DeepSeek style: pairs (x0, x1), (x2, x3), ... each rotated by one frequency)."""

    def __init__(self, head_dim: int, rot_dim: int, max_position: int, params: dict[str, Any],
                 interleaved: bool = False):
        super().__init__()
        self.head_dim = head_dim
        self.rot_dim = rot_dim
        self.interleaved = interleaved
        inv_freq, mscale = inverse_frequencies(rot_dim, params, max_position)
        t = torch.arange(max_position, dtype=torch.float32)
        freqs = torch.outer(t, inv_freq)
        # [max_position, rot_dim]: cos in the first half, sin in the second.
        self.register_buffer("cos_sin", torch.cat([freqs.cos() * mscale, freqs.sin() * mscale], -1),
                             persistent=False)

    def forward(self, positions: torch.Tensor, q: torch.Tensor, k: torch.Tensor):
        """q [T, Hq, D], k [T, Hk, D] -> rotated (in place on CUDA, copies on CPU)."""
        if q.is_cuda:
            return apply_rotary(q, k, positions, self.cos_sin, is_neox=not self.interleaved)
        cos, sin = self.cos_sin[positions].chunk(2, dim=-1)
        return self._rotate(q, cos, sin), self._rotate(k, cos, sin)

    def rotate_and_store(self, positions: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                         k_cache: torch.Tensor, v_cache: torch.Tensor, slot_mapping: torch.Tensor,
                         q_out: torch.Tensor | None = None):
        """forward() on CUDA, then the rotated k and v into the paged caches, in one kernel; q rotated into q_out
        when given (a rotary over whole heads only). Returns (rotated q, k)."""
        return rotary_store_kv(q, k, v, positions, self.cos_sin, not self.interleaved, k_cache, v_cache,
                               slot_mapping, q_out=q_out)

    def _rotate(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        rot, rest = x[..., : self.rot_dim], x[..., self.rot_dim:]
        cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)
        if self.interleaved:
            # Pairs stay interleaved in the output, as in DeepSeek-V2's complex product and the Triton kernel.
            x1, x2 = rot.float()[..., 0::2], rot.float()[..., 1::2]
            out = torch.stack([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1).flatten(-2).to(x.dtype)
        else:
            x1, x2 = rot.float().chunk(2, dim=-1)
            out = torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1).to(x.dtype)
        return torch.cat([out, rest], dim=-1) if rest.numel() else out

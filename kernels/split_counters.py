"""Arrival counters of split-K launches (fp8_linear, skinny_gemm): a zeroed int32 a tile per device, each counted up
by its tile's programs and reset to zero by the last one, so a CUDA graph replays the launch with no zero fill."""

from __future__ import annotations

import torch

# Tiles a split-K launch may have: launches with more tiles fill the SMs without splitting K.
MAX_SPLIT_TILES = 1 << 14
_COUNTERS: dict[torch.device, torch.Tensor] = {}


def split_counters(device: torch.device) -> torch.Tensor:
    """The device's counters, made on the first call (which must not be inside a CUDA graph capture). Launches on
    one stream share them: a launch's programs touch them only after its PDL wait, when the one before is done."""
    counters = _COUNTERS.get(device)
    if counters is None:
        if device.type == "cuda" and torch.cuda.is_current_stream_capturing():
            raise RuntimeError("the split-K counters are made on the first split launch, which must not be inside "
                               "a CUDA graph capture: run a step before capturing")
        counters = _COUNTERS[device] = torch.zeros(MAX_SPLIT_TILES, dtype=torch.int32, device=device)
    return counters

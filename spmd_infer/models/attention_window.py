"""Sliding-window attention (Mistral v0.1, Qwen2/3 configs with use_sliding_window): the engine attends over the
whole context, which equals a sliding window of W tokens exactly while no sequence is longer than W, so a job on such
a model is held to W tokens."""

from __future__ import annotations

import logging
from typing import Any, Optional

from ..parallel.dims import ConfigError

log = logging.getLogger(__name__)


def sliding_window(hf_config: Any) -> Optional[int]:
    """Tokens a query attends back over in some layer (itself included), or None where every layer sees the whole
    context. transformers' rule: `layer_types` names the layers that slide (Qwen2/3 derive it from use_sliding_window
    and max_window_layers); without it, `use_sliding_window` (Qwen3-MoE) or else `sliding_window` alone (Mistral,
    Mixtral) decides."""
    window = getattr(hf_config, "sliding_window", None)
    if not window:
        return None
    layer_types = getattr(hf_config, "layer_types", None)
    if layer_types is not None:
        return int(window) if "sliding_attention" in layer_types else None
    if getattr(hf_config, "use_sliding_window", True) is False:
        return None
    return int(window)


def hold_to_window(hf_config: Any, max_model_len: int, requested: bool) -> int:
    """max_model_len for a job on this model: as given where no layer slides or the window covers it; lowered to the
    window (with a warning) where it came from max_position_embeddings; a ConfigError where the user asked for more
    (`requested`: model.max_model_len was set), since longer sequences would attend differently from the model."""
    window = sliding_window(hf_config)
    if window is None or max_model_len <= window:
        return max_model_len
    if requested:
        raise ConfigError(f"model.max_model_len={max_model_len} is longer than the model's sliding attention window "
                          f"({window} tokens, config.json's sliding_window), which this engine does not implement: "
                          f"past it, its full attention would differ from the model's; set model.max_model_len <= "
                          f"{window}")
    log.warning("the model attends over a sliding window of %d tokens (config.json's sliding_window), which this "
                "engine does not implement; sequences are held to %d tokens (model.max_model_len), where full "
                "attention is the same", window, window)
    return window

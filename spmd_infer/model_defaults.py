"""Sampling defaults a checkpoint ships in generation_config.json, used where the job leaves a field unset.

How an explicit setting is told from a default: the sampling fields that a model may set are
Optional in the schema (config.py) and default to None. Any value the user gives, on the command
line, in a YAML group (sampling=greedy) or through Hydra's compose API, is not None and wins, even
`sampling.temperature=1.0`, which a comparison with the schema default could not tell from "unset"
and which HydraConfig's override list misses for YAML groups and for compose().
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

# generation_config.json key -> SamplingParams field. The set vLLM applies by default; do_sample is
# ignored as vLLM does (files written for `vllm run-batch` expect its behaviour), and max_new_tokens
# is left out: checkpoints often set it to the context length, far beyond a sensible batch default.
GENERATION_KEYS = {"temperature": "temperature", "top_p": "top_p", "top_k": "top_k", "min_p": "min_p",
                   "repetition_penalty": "repetition_penalty"}


def generation_defaults(model_dir: Path) -> dict[str, Any]:
    """The sampling fields that `model_dir/generation_config.json` sets (empty if it has none)."""
    path = Path(model_dir) / "generation_config.json"
    if not path.is_file():
        return {}
    try:
        gen = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        log.warning("ignoring %s: %s", path, e)
        return {}
    found = {field: gen[key] for key, field in GENERATION_KEYS.items()
             if isinstance(gen.get(key), (int, float)) and not isinstance(gen.get(key), bool)}
    return found


def log_applied(defaults: dict[str, Any], sampling_cfg: Any) -> None:
    """Say which model defaults took effect, so a surprising temperature is traceable to its source."""
    used = {k: v for k, v in defaults.items() if getattr(sampling_cfg, k, None) is None}
    if used:
        log.info("sampling defaults from the model's generation_config.json: %s (override with sampling.%s=...)",
                 ", ".join(f"{k}={v}" for k, v in used.items()), next(iter(used)))

"""The SPMD_* environment variables spmd-infer reads (the kernels' A/B switches, a cache folder, test hooks): the ones
set are logged at startup, and a name none of them is gets a warning, since a misspelt switch changes nothing."""

from __future__ import annotations

import difflib
import logging
import os
from typing import Mapping

# Read once, at import, by kernels/ and the layers (README.md: "Kernel switches").
KERNEL_SWITCHES = (
    "SPMD_DECODE_CONFIG", "SPMD_DECODE_FP8_ASM_WIDEN", "SPMD_DECODE_FP8_CONFIGS", "SPMD_DECODE_FP8_PIN_V",
    "SPMD_DECODE_FP8_V_BY_WARP", "SPMD_DECODE_LONGEST_FIRST", "SPMD_DECODE_MIN_SPLIT_TOKENS",
    "SPMD_DECODE_SHORT_SPLIT_TOKENS", "SPMD_DECODE_SPLIT_WAVES", "SPMD_FP8_ACT",
    "SPMD_FP8_CUBLAS_MIN_ROWS", "SPMD_FP8_FUSED_SILU", "SPMD_FP8_WIDE_TILES", "SPMD_MLA_FP8_F16_DOTS",
    "SPMD_MLA_FP8_PIN", "SPMD_MLA_HEAD_GEMM", "SPMD_MLA_ROPE_STORE", "SPMD_MOE_ALIGN_ONE_PROGRAM", "SPMD_MOE_FP8_SWAP",
    "SPMD_MOE_ROUTER_FUSED", "SPMD_MOE_ROUTE_KERNEL", "SPMD_MOE_SHARED_FUSED_TOKENS", "SPMD_MOE_SHARED_IN_SUM",
    "SPMD_PDL", "SPMD_PREFILL_GRAPHS_MOE", "SPMD_PUSH_ALL_REDUCE", "SPMD_PUSH_DP_EXCHANGE", "SPMD_QKV_ROPE",
    "SPMD_ROTARY_STORE_KV", "SPMD_SKINNY_GEMM", "SPMD_SKINNY_MAX_MB", "SPMD_SKINNY_MIN_MB", "SPMD_SKINNY_SPLIT",
)
# The demo model's cache folder, and the fault-injection hooks of the reliability tests (failure.py).
OTHER_VARIABLES = ("SPMD_INFER_CACHE", "SPMD_INFER_TESTING", "SPMD_INFER_TEST_FAULT")
KNOWN = frozenset(KERNEL_SWITCHES + OTHER_VARIABLES)


def log_switches(log: logging.Logger, environ: Mapping[str, str] = os.environ) -> None:
    """Log the SPMD_* variables set (non-defaults of an A/B run are easy to forget in a shell), and warn for each
    one spmd-infer does not read, with the closest name it does."""
    set_here = {k: v for k, v in sorted(environ.items()) if k.startswith("SPMD_")}
    if set_here:
        log.info("SPMD_* environment: %s", ", ".join(f"{k}={v}" for k, v in set_here.items()))
    for name in set_here:
        if name not in KNOWN:
            close = difflib.get_close_matches(name, KNOWN, n=1)
            log.warning("%s is set but spmd-infer reads no such variable%s (kernel switches: README.md)", name,
                        f"; did you mean {close[0]}?" if close else "")

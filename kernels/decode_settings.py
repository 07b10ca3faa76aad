"""Decode attention's launch settings (tiles, split sizing, float8 widening, program order): the defaults the device
runs in tests/gpu/ measured, each overridable from the environment for A/B runs (read once, at import) and checked so
that a typo fails with the variable's name. kernels/README.md keeps the full account of what was tried."""

from __future__ import annotations

import os


def tile_configs_from_env(name: str, default: str, one: bool = False) -> tuple[tuple[int, int, int], ...]:
    """Space-separated "BLOCK_N,warps,stages" tiles (exactly one if one) from environment variable name (default
    when unset), checked here so that a typo fails at import with the variable's name rather than inside a launch."""
    text = os.environ.get(name, default)
    tiles = []
    for item in text.split():
        try:
            block_n, warps, stages = (int(v) for v in item.split(","))
        except ValueError:
            raise ValueError(f"{name}={text!r}: each tile is BLOCK_N,warps,stages (three integers), "
                             f"got {item!r}") from None
        if block_n < 16 or block_n & (block_n - 1) or warps not in (1, 2, 4, 8, 16) or stages < 1:
            raise ValueError(f"{name}={text!r}: in {item!r} BLOCK_N must be a power of two >= 16, warps one of "
                             "1, 2, 4, 8, 16 and stages >= 1")
        tiles.append((block_n, warps, stages))
    if not tiles or (one and len(tiles) > 1):
        raise ValueError(f"{name}={text!r}: give {'one' if one else 'at least one'} BLOCK_N,warps,stages tile, "
                         "or unset it")
    return tuple(tiles)


def asm_widen_min_warps_from_env(name: str, default: str) -> int | None:
    """The fewest warps a float8 tile has for it to widen in assembly (None: no tile does) from environment variable
    name: a number, "all" (1), "wide" (4) or "none"; checked at import so that a typo names the variable."""
    text = os.environ.get(name, default)
    named = {"all": 1, "wide": 4, "none": None}
    if text in named:
        return named[text]
    if text.isdigit() and int(text) >= 1:
        return int(text)
    raise ValueError(f"{name}={text!r}: give a number of warps (tiles of that many or more widen in assembly), "
                     "all, wide (4) or none, or unset it")


# (BLOCK_N, num_warps, num_stages) on CUDA; BLOCK_N is raised to the block size if smaller. Splits aim at
# SPLIT_WAVES * num_SMs programs, each with at least MIN_SPLIT_TOKENS tokens. tests/gpu/tune_decode_attention.py
# picked these on an H200 (bf16, D=128, GQA 2 and 4, timed in CUDA graphs, six shapes from bs1 @1k to bs256
# @200..2048): the best geometric mean, 0.94x the time of the former (64, 4, 3) / 256 tokens; 80-94% of the copy
# rate at bs >= 64, and 7 instead of 9.9 us at bs1 @1k. Inside the engine's chain of dependent launches, where a
# reduce launch follows each split one, fewer splits at bs1 @1k were slower too (session 36, run_bs1_splits.sh, H200;
# 128 / 512 / 1024 tokens a split, i.e. 8 / 2 / 1 splits): Llama-3-8B 4.6 / 4.7 / 4.7 ms, DeepSeek-V2-Lite (MLA, the
# same rule) 2.5 / 2.9 / 3.1 ms.
CUDA_CONFIG = tile_configs_from_env("SPMD_DECODE_CONFIG", "128,4,3", one=True)[0]
SPLIT_WAVES = int(os.environ.get("SPMD_DECODE_SPLIT_WAVES", "4"))
MIN_SPLIT_TOKENS = int(os.environ.get("SPMD_DECODE_MIN_SPLIT_TOKENS", "128"))
# Where splits of MIN_SPLIT_TOKENS leave a launch with fewer programs than the GPU has SMs (bs1 and other small
# batches at moderate contexts), splits may be as short as this instead, so that more SMs read the cache.
# Session 37, H200, decode @1k, 128 against 64 (run_short_splits.sh): DeepSeek-V2-Lite (MLA, one program a sequence)
# bs1 / bs4 / bs8 322 / 710 / 959 -> 332 / 723 / 962 tok/s; GQA over 8 KV heads only at bs1 (64 programs), Llama-3-8B
# 199 -> 202, Qwen3-8B 187 -> 189, Qwen3-0.6B 822 -> 816 (its bs4 / bs8, untouched by the rule, moved as much: ~1%).
# Shorter splits everywhere (MIN_SPLIT_TOKENS 64) cost DeepSeek-V2-Lite bs16 0.7%, where 128 already gives more
# programs than SMs (run_mla_split_tokens.sh).
SHORT_SPLIT_TOKENS = int(os.environ.get("SPMD_DECODE_SHORT_SPLIT_TOKENS", "64"))

# bf16 queries over a float8 cache: widen K/V to fp16 (one conversion instruction per pair of values on Hopper;
# float8 to bf16 takes several) and run both dots in fp16 (more mantissa than bf16; decode's queries and softmax
# weights are far inside its range). Widening to bf16 left the nano-vllm case no faster than a bf16 cache.
FP8_DOTS_IN_F16 = True

# A float8 tile over a launch of one split, of two, ..., the last one listed for any more. A float8 tile is half a
# bf16 tile's bytes, so deeper pipelines and narrower tiles keep enough bytes in flight; narrow tiles lose at many
# splits, where a program holds few tiles. With V dealt by warp (FP8_V_BY_WARP; session 38, H200, the kernel alone,
# tune_decode_attention.py --fp8 in run_v_by_warp.sh / run_v_by_warp2.sh): (128, 4, 3) for one split (nano-vllm
# bs256 202 us a layer against 218 for session 13's (64, 2, 6) without it), (32, 1, 6) for two (nano-vllm bs64 68
# against 80, Llama-3-8B bs64 @1k 41 against 46), (64, 4, 3) for more (Llama-3-8B bs1 @1k 6.0 against 7.2 for
# CUDA_CONFIG, which V dealt by warp slows to 7.9; Qwen3-8B bs16 29.6 against 30.6).
FP8_SPLIT_CONFIGS = tile_configs_from_env("SPMD_DECODE_FP8_CONFIGS", "128,4,3 32,1,6 64,4,3")

# Float8 tiles of at least this many warps widen K and V with fp8_widen.e4m3_to_f16 rather than Triton's own
# conversion (None: none). Alone it sped the (128, 4, 3) tile 261 -> 223 us a layer at nano-vllm bs256 but slowed
# the one-warp tiles (session 12, run_fp8_asm_widen.sh); with V dealt by warp it speeds them too, (32, 1, 6) at
# nano-vllm bs64 71 -> 68 us, Qwen3-8B bs64 over 200..2048 tokens 71 -> 67 (session 38, run_v_by_warp2.sh).
FP8_ASM_WIDEN = asm_widen_min_warps_from_env("SPMD_DECODE_FP8_ASM_WIDEN", "1")

# Where widened in assembly, V is pinned where loaded (e4m3_to_f16's PINNED). Nsight Compute (session 12) showed the
# float8 kernel bound by instruction issue, its largest share V's: Triton moves the P V operand's layout change
# ahead of the widening, onto bytes, and gathers V's operand pairs (adjacent tokens) from shared memory a byte per
# instruction (LDS.U8, ~9.5M of 108M instructions). Pinned, V goes through shared memory as fp16 and ldmatrix.trans,
# as a bf16 cache's does (ptx_census.py decode --pin-v). Session 13, H200 (run_fp8_pin_v.sh, run_fp8_pin_v2.sh):
# (64, 2, 6) 218 us at nano-vllm bs256 against 224, Llama-3-8B bs1 @1k 5.9 -> 5.3 us; nano-vllm fp8 29.6k / 30.3k
# -> 30.7k / 30.8k tok/s (median step 4.6 -> 4.4 ms). (128, 4, 3) pinned as the one-split tile timed the same alone
# but took the engine's step to 5.1 ms, twice; the one-warp (32, 1, 6) was slower pinned (45.9 -> 56.7 us).
FP8_PIN_V = os.environ.get("SPMD_DECODE_FP8_PIN_V", "1") != "0"

# A float8 V's columns reordered for the P V dot (decode_attention.v_by_warp): the dot's fragments then read whole
# words of the cache from shared memory and pair tokens by byte permutes in registers, where otherwise V goes through
# shared memory twice (float8, then widened fp16 for ldmatrix.trans) or a byte at a time. Offline
# (ptx_census.py decode --v-by-warp 1, session 38): no fp16 copy of V in shared memory, (128, 4, 3) 41 KB against
# 74 and 147 registers a thread against 183, for 851 instructions a main-loop trip against 690. H200 (session 38,
# run_v_by_warp.sh / run_v_by_warp2.sh): nano-vllm bs256 (128, 4, 3) 224 -> 202 us a layer, the one-warp tile at bs64
# 80 -> 72, (64, 2, 6) even; with FP8_SPLIT_CONFIGS' tiles Qwen3-0.6B nano-vllm over the float8 cache 31.1k ->
# 33.0k tok/s (median step 4.43 -> 4.20 ms).
FP8_V_BY_WARP = os.environ.get("SPMD_DECODE_FP8_V_BY_WARP", "1") != "0"

# A launch of one split runs a program per (sequence, KV head), each as long as its context; started in batch order
# the long ones land in the last wave (a list-scheduling model of nano-vllm bs256: 1.17-1.29x the balanced time).
# Started longest first (the order the engine computes on the host per step: batch_inputs.longest_first), the short
# ones fill the tail: nano-vllm bs256 bf16 300 -> 290 us a layer (97% of the copy rate), float8 222 -> 216, median
# decode step 5.9 -> 5.7 ms (session 12, run_decode_order.sh, run_decode_order_e2e.sh). Launches of several splits
# gain nothing, so they ignore it.
LONGEST_FIRST = os.environ.get("SPMD_DECODE_LONGEST_FIRST", "1") != "0"

# Tried and removed (kernels/README.md has the figures): combining the splits in the split kernel's last program
# (10 us a layer against 6 + 1.6 at bs1), reading the first K/V tile before the PDL wait (bs1 MBU 81.6 -> 79.4%),
# asking L2 for the output projection's weights during attention (Llama-3-8B bs1 / bs8 / bs64 4.5 / 5.0 / 7.3 ->
# 4.7 / 5.2 / 7.6 ms a step),
# rounding q to float8 for a float8 q k^T dot (no faster), widening float8 by moving bits (slower), capping
# registers (only the (128, 4, 3) tile gained), and V laid out by head dimension (slower everywhere: nano-vllm fp8
# 30.3k -> 22.8k tok/s; run_v_by_dim_pages.sh at 5d26b0f).

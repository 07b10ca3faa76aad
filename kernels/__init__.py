"""Triton kernels of spmd-infer, each with a plain-PyTorch reference (``*_ref``) beside it."""

from .activation import silu_and_mul, silu_and_mul_ref
from .decode_attention import (
    choose_num_splits,
    gather_context,
    paged_decode_attention,
    paged_decode_attention_ref,
)
from .filter_thresholds import candidate_thresholds, candidate_thresholds_ref
from .fp8_linear import fp8_linear, fp8_linear_ref
from .fused_moe import fused_moe, fused_moe_ref
from .head_gemm import head_gemm, head_gemm_ref
from .jit_variants import compiled_variants
from .kv_store import store_kv, store_kv_ref, store_latent, store_latent_ref
from .mla_decode import mla_decode, mla_decode_ref
from .mla_rope_store import mla_rope_norm_store, mla_rope_norm_store_ref
from .moe_align import moe_align_block_size, moe_align_block_size_ref
from .moe_route import moe_route, moe_route_hidden, moe_route_hidden_ref, moe_route_ref
from .penalties import apply_penalties, apply_penalties_ref
from .prefill_attention import paged_prefill_attention, paged_prefill_attention_ref
from .push_all_reduce import push_all_reduce, push_all_reduce_ref
from .push_dp_exchange import push_all_gather, push_all_gather_ref, push_reduce_scatter, push_reduce_scatter_ref
from .qk_norm_rotary import qk_norm_rotary, qk_norm_rotary_ref, qk_norm_rotary_store_kv, qk_norm_rotary_store_kv_ref
from .qkv_rope_store import qkv_rope_store, qkv_rope_store_ref
from .rmsnorm import rms_norm, rms_norm_ref
from .rotary import apply_rotary, apply_rotary_ref, build_cos_sin_cache
from .rotary_store_kv import rotary_store_kv, rotary_store_kv_ref
from .sampling import (
    greedy_argmax,
    gumbel_sample,
    gumbel_sample_ref,
    masked_exp_sum_ref,
    row_cumsum_ref,
    tail_floor,
    tail_floor_ref,
)
from .skinny_gemm import skinny_gemm, skinny_gemm_ref

__all__ = [
    "apply_penalties",
    "apply_penalties_ref",
    "apply_rotary",
    "apply_rotary_ref",
    "build_cos_sin_cache",
    "candidate_thresholds",
    "candidate_thresholds_ref",
    "choose_num_splits",
    "compiled_variants",
    "fp8_linear",
    "fp8_linear_ref",
    "fused_moe",
    "fused_moe_ref",
    "gather_context",
    "greedy_argmax",
    "gumbel_sample",
    "gumbel_sample_ref",
    "head_gemm",
    "head_gemm_ref",
    "masked_exp_sum_ref",
    "mla_decode",
    "mla_decode_ref",
    "mla_rope_norm_store",
    "mla_rope_norm_store_ref",
    "moe_align_block_size",
    "moe_align_block_size_ref",
    "moe_route",
    "moe_route_hidden",
    "moe_route_hidden_ref",
    "moe_route_ref",
    "paged_decode_attention",
    "paged_decode_attention_ref",
    "paged_prefill_attention",
    "paged_prefill_attention_ref",
    "push_all_gather",
    "push_all_gather_ref",
    "push_all_reduce",
    "push_all_reduce_ref",
    "push_reduce_scatter",
    "push_reduce_scatter_ref",
    "qk_norm_rotary",
    "qk_norm_rotary_ref",
    "qk_norm_rotary_store_kv",
    "qk_norm_rotary_store_kv_ref",
    "rms_norm",
    "rms_norm_ref",
    "rotary_store_kv",
    "rotary_store_kv_ref",
    "row_cumsum_ref",
    "silu_and_mul",
    "silu_and_mul_ref",
    "qkv_rope_store",
    "qkv_rope_store_ref",
    "skinny_gemm",
    "skinny_gemm_ref",
    "store_kv",
    "store_kv_ref",
    "store_latent",
    "store_latent_ref",
    "tail_floor",
    "tail_floor_ref",
]

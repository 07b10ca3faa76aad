"""Named model shapes for the benchmark: each real checkpoint's config.json values, as transformers config dicts.

Only the shape matters (weights are random), so these are the published config.json files with the
fields that do not change the computation (dtype, initializer_range, aux-loss coefficients, ...) left out.
"""

from __future__ import annotations

from typing import Any

from ..parallel.dims import ConfigError

PRESETS: dict[str, dict[str, Any]] = {
    # CPU-sized, for tests and a quick look; a Qwen3 shape (q/k norm, GQA, tied embeddings).
    "tiny": dict(
        model_type="qwen3", architectures=["Qwen3ForCausalLM"], vocab_size=512, hidden_size=64,
        intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, head_dim=16,
        max_position_embeddings=4096, rms_norm_eps=1e-6, rope_theta=1000000.0, tie_word_embeddings=True,
        bos_token_id=0, eos_token_id=1),
    # CPU-sized MoE (Qwen3-MoE shape): exercises the expert byte and FLOP counts.
    "tiny-moe": dict(
        model_type="qwen3_moe", architectures=["Qwen3MoeForCausalLM"], vocab_size=512, hidden_size=64,
        intermediate_size=128, moe_intermediate_size=32, num_experts=8, num_experts_per_tok=2, decoder_sparse_step=1,
        mlp_only_layers=[], norm_topk_prob=True, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
        head_dim=16, max_position_embeddings=4096, rms_norm_eps=1e-6, rope_theta=1000000.0,
        tie_word_embeddings=False, bos_token_id=0, eos_token_id=1),
    # Qwen/Qwen3-0.6B
    "qwen3-0.6b": dict(
        model_type="qwen3", architectures=["Qwen3ForCausalLM"], attention_bias=False, bos_token_id=151643,
        eos_token_id=151645, head_dim=128, hidden_act="silu", hidden_size=1024, intermediate_size=3072,
        max_position_embeddings=40960, max_window_layers=28, num_attention_heads=16, num_hidden_layers=28,
        num_key_value_heads=8, rms_norm_eps=1e-6, rope_scaling=None, rope_theta=1000000, sliding_window=None,
        tie_word_embeddings=True, use_sliding_window=False, vocab_size=151936),
    # Qwen/Qwen3-8B
    "qwen3-8b": dict(
        model_type="qwen3", architectures=["Qwen3ForCausalLM"], attention_bias=False, bos_token_id=151643,
        eos_token_id=151645, head_dim=128, hidden_act="silu", hidden_size=4096, intermediate_size=12288,
        max_position_embeddings=40960, max_window_layers=36, num_attention_heads=32, num_hidden_layers=36,
        num_key_value_heads=8, rms_norm_eps=1e-6, rope_scaling=None, rope_theta=1000000, sliding_window=None,
        tie_word_embeddings=False, use_sliding_window=False, vocab_size=151936),
    # meta-llama/Meta-Llama-3-8B
    "llama-3-8b": dict(
        model_type="llama", architectures=["LlamaForCausalLM"], attention_bias=False, bos_token_id=128000,
        eos_token_id=128001, hidden_act="silu", hidden_size=4096, intermediate_size=14336,
        max_position_embeddings=8192, mlp_bias=False, num_attention_heads=32, num_hidden_layers=32,
        num_key_value_heads=8, pretraining_tp=1, rms_norm_eps=1e-5, rope_scaling=None, rope_theta=500000.0,
        tie_word_embeddings=False, vocab_size=128256),
    # deepseek-ai/DeepSeek-V2-Lite (MLA without query LoRA; 2 shared + 64 routed experts, 6 per token)
    "deepseek-v2-lite": dict(
        model_type="deepseek_v2", architectures=["DeepseekV2ForCausalLM"], attention_bias=False,
        bos_token_id=100000, eos_token_id=100001, first_k_dense_replace=1, hidden_act="silu", hidden_size=2048,
        intermediate_size=10944, kv_lora_rank=512, max_position_embeddings=163840, moe_intermediate_size=1408,
        moe_layer_freq=1, n_group=1, n_routed_experts=64, n_shared_experts=2, norm_topk_prob=False,
        num_attention_heads=16, num_experts_per_tok=6, num_hidden_layers=27, num_key_value_heads=16,
        q_lora_rank=None, qk_nope_head_dim=128, qk_rope_head_dim=64, rms_norm_eps=1e-6,
        rope_scaling={"beta_fast": 32, "beta_slow": 1, "factor": 40, "mscale": 0.707, "mscale_all_dim": 0.707,
                      "original_max_position_embeddings": 4096, "type": "yarn"},
        rope_theta=10000, routed_scaling_factor=1.0, scoring_func="softmax", tie_word_embeddings=False,
        topk_group=1, topk_method="greedy", v_head_dim=128, vocab_size=102400),
    # Qwen/Qwen3-30B-A3B (128 experts, 8 per token)
    "qwen3-30b-a3b": dict(
        model_type="qwen3_moe", architectures=["Qwen3MoeForCausalLM"], attention_bias=False, bos_token_id=151643,
        decoder_sparse_step=1, eos_token_id=151645, head_dim=128, hidden_act="silu", hidden_size=2048,
        intermediate_size=6144, max_position_embeddings=40960, max_window_layers=48, mlp_only_layers=[],
        moe_intermediate_size=768, norm_topk_prob=True, num_attention_heads=32, num_experts=128,
        num_experts_per_tok=8, num_hidden_layers=48, num_key_value_heads=4, rms_norm_eps=1e-6, rope_scaling=None,
        rope_theta=1000000.0, sliding_window=None, tie_word_embeddings=False, use_sliding_window=False,
        vocab_size=151936),
    # Qwen/Qwen1.5-MoE-A2.7B (Qwen2-MoE: 60 experts, 4 per token, plus a gated shared expert)
    "qwen1.5-moe-a2.7b": dict(
        model_type="qwen2_moe", architectures=["Qwen2MoeForCausalLM"], bos_token_id=151643, decoder_sparse_step=1,
        eos_token_id=151643, hidden_act="silu", hidden_size=2048, intermediate_size=5632,
        max_position_embeddings=8192, max_window_layers=21, moe_intermediate_size=1408, norm_topk_prob=False,
        num_attention_heads=16, num_experts=60, num_experts_per_tok=4, num_hidden_layers=24, num_key_value_heads=16,
        rms_norm_eps=1e-6, rope_theta=1000000.0, shared_expert_intermediate_size=5632, sliding_window=32768,
        tie_word_embeddings=False, use_sliding_window=False, vocab_size=151936),
}


def preset_config(name: str) -> Any:
    """The transformers config object of preset `name` (case-insensitive, e.g. Qwen3-0.6B)."""
    from transformers import AutoConfig

    key = name.lower()
    if key not in PRESETS:
        raise ConfigError(f"bench.preset={name!r} is not a preset; choose one of {', '.join(PRESETS)} "
                          f"(or set model.path to a checkpoint folder to take its config.json)")
    values = dict(PRESETS[key])
    model_type = values.pop("model_type")
    return AutoConfig.for_model(model_type, **values)

"""Tiny random checkpoints built with transformers' own config classes, and their greedy reference outputs."""

from __future__ import annotations

import json
from pathlib import Path

import torch

MAX_NEW = 10  # tokens generated per request in the equality tests
JOB_MAX_TOKENS = 6  # tokens per request of the in-process `job` fixture (conftest.py)
MODELS = ("llama", "llama3", "qwen2", "qwen3")
FP8_QWEN3 = "qwen3-blockfp8"  # the tiny Qwen3 as a block-float8 release (tests/conftest.py's tiny fixture)

# Head counts divisible by 4 so every layout up to tp=4 applies; vocab not a multiple of 4 to exercise padding.
COMMON = dict(vocab_size=301, hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=8,
              num_key_value_heads=4, max_position_embeddings=512, rms_norm_eps=1e-6, bos_token_id=0,
              eos_token_id=1, pad_token_id=None)


MOE_MODELS = ("qwen3moe", "qwen2moe", "mixtral")
DEEPSEEK_MODELS = ("dsv2", "dsv2lora", "dsv3")

# MLA + MoE: 4 heads (tp up to 4), a dense first layer then MoE, 8 routed experts (top-2) and one shared expert.
DEEPSEEK = dict(COMMON, num_attention_heads=4, num_key_value_heads=4, kv_lora_rank=32, qk_nope_head_dim=16,
                qk_rope_head_dim=8, v_head_dim=16, n_routed_experts=8, num_experts_per_tok=2, n_shared_experts=1,
                moe_intermediate_size=32, first_k_dense_replace=1, tie_word_embeddings=False)


def _configs():
    from transformers import (DeepseekV2Config, DeepseekV3Config, LlamaConfig, MistralConfig, MixtralConfig,
                              Qwen2Config, Qwen2MoeConfig, Qwen3Config, Qwen3MoeConfig)

    return {
        "llama": LlamaConfig(**COMMON, tie_word_embeddings=False),
        # Llama 3.1 style: rope scaling and tied embeddings (as the 1B/3B models have).
        "llama3": LlamaConfig(**COMMON, tie_word_embeddings=True, rope_parameters={
            "rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0, "low_freq_factor": 1.0,
            "high_freq_factor": 4.0, "original_max_position_embeddings": 128}),
        "qwen2": Qwen2Config(**COMMON, tie_word_embeddings=False),
        # Mistral v0.2 on (no sliding window), and v0.1's kind with a window short enough for a test to reach.
        "mistral": MistralConfig(**COMMON, sliding_window=None, tie_word_embeddings=False),
        "mistral_window": MistralConfig(**COMMON, sliding_window=24, tie_word_embeddings=False),
        # Two 32-wide heads (one KV head): whole heads fit the GPU qkv kernel's 32-feature tiles, whose epilogue
        # rotates and stores them (tests/test_qkv_fusion_path.py).
        "llama_wide_heads": LlamaConfig(**{**COMMON, "num_attention_heads": 2, "num_key_value_heads": 1},
                                        tie_word_embeddings=False),
        "qwen3": Qwen3Config(**COMMON, head_dim=16, tie_word_embeddings=True),
        # YaRN added for a longer context, as Qwen's long-context instructions have it: 64 positions trained, x 4.
        "qwen3_yarn": Qwen3Config(**{**COMMON, "max_position_embeddings": 64}, head_dim=16, tie_word_embeddings=True,
                                  rope_parameters={"rope_type": "yarn", "rope_theta": 10000.0, "factor": 4.0,
                                                   "original_max_position_embeddings": 64}),
        # A dense first layer, then MoE layers; 8 experts so that expert parallelism splits up to 4 ways.
        "qwen3moe": Qwen3MoeConfig(**COMMON, head_dim=16, num_experts=8, num_experts_per_tok=2,
                                   moe_intermediate_size=32, decoder_sparse_step=1, mlp_only_layers=[0],
                                   norm_topk_prob=True, tie_word_embeddings=False),
        # Qwen2-MoE: q/k/v biases, a dense first layer, then 8 routed experts (top-2, not renormalized) plus a shared
        # expert whose output a sigmoid gate scales.
        "qwen2moe": Qwen2MoeConfig(**COMMON, num_experts=8, num_experts_per_tok=2, moe_intermediate_size=32,
                                   shared_expert_intermediate_size=48, decoder_sparse_step=1, mlp_only_layers=[0],
                                   norm_topk_prob=False, tie_word_embeddings=False),
        "mixtral": MixtralConfig(**{**COMMON, "intermediate_size": 32}, num_local_experts=8, num_experts_per_tok=2,
                                 tie_word_embeddings=False),
        "dsv2": DeepseekV2Config(**DEEPSEEK, q_lora_rank=None, topk_method="greedy"),
        # q LoRA, group-limited routing, YaRN (mscale != mscale_all_dim, so cos/sin are scaled too).
        "dsv2lora": DeepseekV2Config(**DEEPSEEK, q_lora_rank=48, topk_method="group_limited_greedy", n_group=2,
                                     topk_group=1, routed_scaling_factor=1.5, rope_parameters={
                                         "rope_type": "yarn", "rope_theta": 10000.0, "factor": 4.0,
                                         "original_max_position_embeddings": 128, "beta_fast": 32, "beta_slow": 1,
                                         "mscale": 1.0, "mscale_all_dim": 0.8}),
        "dsv3": DeepseekV3Config(**DEEPSEEK, q_lora_rank=48, n_group=2, topk_group=1, norm_topk_prob=True,
                                 routed_scaling_factor=2.5, rope_interleave=True),
    }


def build_model(name: str, folder: Path, shards: int = 1) -> Path:
    """Save a random model `name` to `folder` (sharded over `shards` safetensors files when > 1)."""
    from transformers import AutoModelForCausalLM

    config = _configs()[name]
    torch.manual_seed(1234)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    # transformers' default init is small; widen it so greedy choices are decisive, not near-ties.
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() > 1:
                p.normal_(0.0, 0.15)
        for buffer_name, b in model.named_buffers():
            if buffer_name.endswith("e_score_correction_bias"):  # DeepSeek-V3's router bias: nonzero so it matters
                b.normal_(0.0, 0.1)
    kwargs = {"max_shard_size": "200KB"} if shards > 1 else {}
    model.save_pretrained(folder, **kwargs)
    return folder


def greedy_reference(folder: Path, prompts: list[list[int]], max_new_tokens: int) -> list[list[int]]:
    """transformers' generate(do_sample=False) in float32, one prompt at a time, EOS included."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    eos = model.config.eos_token_id
    out = []
    for ids in prompts:
        with torch.no_grad():
            gen = model.generate(torch.tensor([ids]), do_sample=False, max_new_tokens=max_new_tokens,
                                 eos_token_id=eos, pad_token_id=eos, attention_mask=torch.ones(1, len(ids)))
        tokens = gen[0, len(ids):].tolist()
        if eos in tokens:
            tokens = tokens[: tokens.index(eos) + 1]
        out.append(tokens)
    return out


PENALTIES = {"repetition_penalty": 1.3, "presence_penalty": 0.5, "frequency_penalty": 0.7}


def penalized_greedy_reference(folder: Path, prompts: list[list[int]], max_new_tokens: int,
                               repetition_penalty: float, presence_penalty: float,
                               frequency_penalty: float) -> list[list[int]]:
    """Greedy decoding by full float32 forward passes, transformers' repetition rule over prompt and output, then
    OpenAI's presence and frequency penalties over the output (vLLM's order), EOS included."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    eos = model.config.eos_token_id
    refs = []
    for ids in prompts:
        seq, out = list(ids), []
        for _ in range(max_new_tokens):
            with torch.no_grad():
                logits = model(torch.tensor([seq])).logits[0, -1].float()
            seen = torch.tensor(sorted(set(seq)))
            seen_logits = logits[seen]
            logits[seen] = torch.where(seen_logits > 0, seen_logits / repetition_penalty,
                                       seen_logits * repetition_penalty)
            for token in set(out):
                logits[token] -= presence_penalty + frequency_penalty * out.count(token)
            out.append(int(logits.argmax()))
            seq.append(out[-1])
            if out[-1] == eos:
                break
        refs.append(out)
    return refs


def write_prompts(path: Path, prompts: list[list[int]], sampling: dict | None = None) -> Path:
    with open(path, "w") as f:
        for i, ids in enumerate(prompts):
            row = {"id": f"r{i}", "prompt_token_ids": ids}
            if sampling:
                row["sampling"] = sampling
            f.write(json.dumps(row) + "\n")
    return path


def read_output(path: Path) -> list[dict]:
    with open(path) as f:
        return [json.loads(line) for line in f]

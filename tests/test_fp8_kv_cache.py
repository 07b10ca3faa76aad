"""cache.dtype=fp8 end to end on CPU (the torch attention path; the Triton kernels' fp8 path: tests/kernels):
four times the KV tokens of a float32 cache in the same memory, and greedy tokens equal to transformers' when
transformers' attention reads the same float8-rounded keys and values."""

from __future__ import annotations

import pytest
import torch

from spmd_infer.job_plan import resolve_kv_dtype
from spmd_infer.parallel.dims import ConfigError
from support.launch import run_jobs
from support.tiny_models import MAX_NEW, read_output

FP8 = torch.float8_e4m3fn


def _fp8_rounded_attention(monkeypatch):
    """transformers' Llama with every key and value rounded to float8 e4m3 where attention reads them: what the
    engine computes with cache.dtype=fp8 (it stores K after rotary, V as projected, and reads them back)."""
    from transformers.models.llama import modeling_llama

    original = modeling_llama.eager_attention_forward

    def rounded(module, query, key, value, *args, **kwargs):
        return original(module, query, key.to(FP8).to(key.dtype), value.to(FP8).to(value.dtype), *args, **kwargs)

    monkeypatch.setattr(modeling_llama, "eager_attention_forward", rounded)


def test_fp8_cache_holds_four_times_the_tokens_and_matches_fp8_rounded_transformers(tiny, tmp_path, monkeypatch):
    from transformers import AutoModelForCausalLM

    model_dir, prompts = tiny["models"]["llama"], tiny["sets"]["mixed"]
    jobs = [{"name": kv, "overrides": [
        f"model.path={model_dir}", f"data.input={tiny['inputs']['mixed']}", f"data.output={tmp_path / kv}.jsonl",
        f"cache.dtype={kv}", "cache.cpu_kv_cache_gb=0.002", "parallel.dp=2", "sampling.temperature=0",
        f"sampling.max_tokens={MAX_NEW}"]} for kv in ("auto", "fp8")]
    summaries = run_jobs(2, jobs, tmp_path / "spec.json")
    capacity = {kv: summaries[0][kv]["kv_capacity_tokens"] for kv in ("auto", "fp8")}
    assert capacity["fp8"] == 4 * capacity["auto"], capacity  # 1 byte per value instead of float32's 4

    assert [r["token_ids"] for r in read_output(tmp_path / "auto.jsonl")] == tiny["refs"][("llama", "mixed")]
    # The tiny random model's next-token distributions are flat, so fp8 rounding alone changes greedy choices:
    # compare with transformers computing on the same rounded keys and values instead.
    _fp8_rounded_attention(monkeypatch)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32, attn_implementation="eager").eval()
    rows = read_output(tmp_path / "fp8.jsonl")
    assert [r["token_ids"] for r in rows] != tiny["refs"][("llama", "mixed")], "fp8 changed nothing: not in use?"
    for prompt, row in zip(prompts, rows):
        with torch.no_grad():
            out = model.generate(torch.tensor([prompt]), do_sample=False, max_new_tokens=MAX_NEW, eos_token_id=1,
                                 pad_token_id=1, attention_mask=torch.ones(1, len(prompt)))
        assert out[0, len(prompt):].tolist()[:len(row["token_ids"])] == row["token_ids"]


def test_kv_dtype_choices():
    from transformers import DeepseekV2Config, LlamaConfig

    assert resolve_kv_dtype("auto", torch.bfloat16, LlamaConfig()) == torch.bfloat16
    assert resolve_kv_dtype("fp8", torch.bfloat16, LlamaConfig()) == torch.float8_e4m3fn
    with pytest.raises(ConfigError, match="MLA latent cache stays in the model's dtype"):
        resolve_kv_dtype("fp8", torch.bfloat16, DeepseekV2Config(architectures=["DeepseekV2ForCausalLM"]))
    with pytest.raises(ConfigError, match="cache.dtype='int4' must be one of auto, fp8"):
        resolve_kv_dtype("int4", torch.bfloat16, LlamaConfig())

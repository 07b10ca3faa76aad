"""cache.dtype=fp8 end to end on CPU (the torch attention paths; the Triton kernels' fp8 path: tests/kernels): four
times the KV tokens of a float32 cache in the same memory, per-head (Llama) and MLA latent (DeepSeek-V2) caches
alike, and greedy tokens equal to transformers' when transformers' attention reads the same float8-rounded keys and
values (for MLA: the same rounded latents and shared rotary keys)."""

from __future__ import annotations

import pytest
import torch

from spmd_infer.job_plan import check_kv_dtype_on_device, resolve_kv_dtype, resolve_kv_head_major
from spmd_infer.parallel.dims import ConfigError
from support.launch import run_jobs
from support.fp8_rounding import fp8_rounded_attention
from support.tiny_models import MAX_NEW, build_model, greedy_reference, read_output

def test_fp8_cache_holds_four_times_the_tokens_and_matches_fp8_rounded_transformers(tiny, tmp_path, monkeypatch):
    from transformers import AutoModelForCausalLM

    prompts = tiny["sets"]["mixed"]
    models = {"llama": tiny["models"]["llama"], "dsv2": build_model("dsv2", tmp_path / "dsv2")}
    cases = [(model, kv) for model in models for kv in ("auto", "fp8")]
    jobs = [{"name": f"{model}-{kv}", "overrides": [
        f"model.path={models[model]}", f"data.input={tiny['inputs']['mixed']}",
        f"data.output={tmp_path / model}-{kv}.jsonl", f"cache.dtype={kv}", "cache.cpu_kv_cache_gb=0.002",
        "parallel.dp=2", "sampling.temperature=0", f"sampling.max_tokens={MAX_NEW}"]} for model, kv in cases]
    summaries = run_jobs(2, jobs, tmp_path / "spec.json")
    refs = {"llama": tiny["refs"][("llama", "mixed")], "dsv2": greedy_reference(models["dsv2"], prompts, MAX_NEW)}
    for model in models:
        capacity = {kv: summaries[0][f"{model}-{kv}"]["kv_capacity_tokens"] for kv in ("auto", "fp8")}
        # 1 byte per value, not float32's 4 (to the whole cache block: each budget is cut to whole blocks)
        assert abs(capacity["fp8"] / capacity["auto"] - 4) < 0.01, (model, capacity)
        assert [r["token_ids"] for r in read_output(tmp_path / f"{model}-auto.jsonl")] == refs[model], model

    # The tiny random models' next-token distributions are flat, so fp8 rounding alone changes greedy choices:
    # compare with transformers computing on the same rounded keys and values instead.
    fp8_rounded_attention(monkeypatch)
    for model, folder in models.items():
        hf = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32, attn_implementation="eager").eval()
        rows = read_output(tmp_path / f"{model}-fp8.jsonl")
        assert [r["token_ids"] for r in rows] != refs[model], f"{model}: fp8 changed nothing: not in use?"
        for prompt, row in zip(prompts, rows):
            with torch.no_grad():
                out = hf.generate(torch.tensor([prompt]), do_sample=False, max_new_tokens=MAX_NEW, eos_token_id=1,
                                  pad_token_id=1, attention_mask=torch.ones(1, len(prompt)))
            assert out[0, len(prompt):].tolist()[:len(row["token_ids"])] == row["token_ids"], (model, prompt)


def test_kv_dtype_and_layout_choices():
    assert resolve_kv_dtype("auto", torch.bfloat16) == torch.bfloat16
    assert resolve_kv_dtype("fp8", torch.bfloat16) == torch.float8_e4m3fn
    with pytest.raises(ConfigError, match="cache.dtype='int4' must be one of auto, fp8"):
        resolve_kv_dtype("int4", torch.bfloat16)
    assert not resolve_kv_head_major("token") and resolve_kv_head_major("head")
    with pytest.raises(ConfigError, match="cache.layout='heads' must be one of token, head"):
        resolve_kv_head_major("heads")


def test_fp8_cache_is_refused_on_gpus_without_float8(monkeypatch):
    """Triton has float8 e4m3 from compute capability 8.9: an A100 gets a ConfigError naming what to change, not a
    kernel compile failure mid-warmup (torch.cuda's queries stand in for the GPU this machine lacks)."""
    cuda = torch.device("cuda", 0)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "NVIDIA A100-SXM4-80GB")
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (8, 0))
    with pytest.raises(ConfigError, match=r"cache.dtype=fp8: NVIDIA A100-SXM4-80GB \(compute capability 8.0\).*"
                                          r"use cache.dtype=auto"):
        check_kv_dtype_on_device("fp8", cuda)
    check_kv_dtype_on_device("auto", cuda)  # the model's dtype: fine anywhere
    check_kv_dtype_on_device("fp8", torch.device("cpu"))  # the torch path stores float8 on any CPU
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (9, 0))
    check_kv_dtype_on_device("fp8", cuda)

"""The fused rotary + KV-store kernels (on by default; SPMD_ROTARY_STORE_KV=0 turns them off) in the engine: which
attention layers take them, and whole jobs through them on the CPU (Triton's interpreter) against transformers.

The kernels themselves are tested in tests/kernels/test_rotary_store_kv.py and test_qk_norm_rotary.py, the models
with them on a GPU by tests/gpu/run_session9b.sh.
"""

from __future__ import annotations

import pytest
import torch

from spmd_infer.layers.attention import PagedAttention
from spmd_infer.models import llama
from spmd_infer.models.qwen2 import Qwen2Attention
from spmd_infer.models.qwen3 import Qwen3Attention
from spmd_infer.parallel.comm import Shard
from support.tiny_models import MAX_NEW, _configs, read_output


def test_every_llama_style_attention_fuses_the_store_and_only_rotary_alone_goes_into_the_qkv_epilogue(monkeypatch):
    configs = _configs()
    monkeypatch.setattr(llama, "FUSE_ROTARY_STORE", True)
    monkeypatch.setattr(llama, "QKV_ROPE_ON", True)
    layers = {name: cls(configs[name], Shard()) for name, cls in
              (("llama", llama.LlamaAttention), ("qwen2", Qwen2Attention), ("qwen3", Qwen3Attention))}
    assert all(layer.fuse_rotary_store for layer in layers.values())
    # Qwen3 normalises q and k before the rotation: qk_norm_rotary_store_kv, not the projection's epilogue.
    assert [name for name, layer in layers.items() if layer.rope_in_qkv_epilogue] == ["llama", "qwen2"]

    class OwnPositioning(llama.LlamaAttention):  # positions q and k its own way, without a fused store of its own
        def position_qk(self, positions, q, k):
            return q, k

    assert not OwnPositioning(configs["llama"], Shard()).fuse_rotary_store
    monkeypatch.setattr(llama, "FUSE_ROTARY_STORE", False)
    assert not llama.LlamaAttention(configs["llama"], Shard()).fuse_rotary_store


# The CPU path forced through the kernel under Triton's interpreter; on a GPU the job runs the CUDA path, whose
# float32 tokens drift from the CPU references on these random tiny models (tests/gpu/check_vs_transformers.py is
# the GPU's oracle, by the top-k logprob rule).
@pytest.mark.skipif(torch.cuda.is_available(), reason="the interpreter's path, against CPU references")
@pytest.mark.parametrize("model", ["llama", "qwen3"])
def test_a_job_through_the_fused_kernel_gives_transformers_tokens(model, job, tiny, tmp_path, monkeypatch):
    """Attention reads the q the kernel rotated in place and the cache it wrote (the CPU path skips its own store
    when kv_stored), so a whole job through the kernel must give transformers' greedy tokens."""
    monkeypatch.setattr(llama, "FUSE_ROTARY_STORE", True)
    monkeypatch.setattr(llama, "QKV_ROPE_ON", False)  # the qkv epilogue needs skinny_gemm, GPU-only
    # On the CPU the layer would keep the two-step path; take the kernel path wherever a cache is bound.
    monkeypatch.setattr(PagedAttention, "stores_through_kernels",
                        lambda self, q, batch: self.k_cache is not None and batch.slot_mapping is not None)
    calls = []
    cls = Qwen3Attention if model == "qwen3" else llama.LlamaAttention
    fused = cls.position_qk_and_store
    monkeypatch.setattr(cls, "position_qk_and_store", lambda self, *a: calls.append(1) or fused(self, *a))
    job(f"model.path={tiny['models'][model]}", f"data.input={tiny['inputs']['mixed']}",
        f"sampling.max_tokens={MAX_NEW}")
    assert [r["token_ids"] for r in read_output(tmp_path / "out.jsonl")] == tiny["refs"][(model, "mixed")]
    assert calls, "the job never took the fused path"

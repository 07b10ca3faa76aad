"""The fused rotary + KV-store kernel (on by default; SPMD_ROTARY_STORE_KV=0 turns it off) in the engine: which attention layers take it, and
a whole job through it on the CPU (Triton's interpreter) against transformers.

The kernel itself is tested in tests/kernels/test_rotary_store_kv.py, the models with it on a GPU by
tests/gpu/run_defaults_check.sh.
"""

from __future__ import annotations

from spmd_infer.layers.attention import PagedAttention
from spmd_infer.layers.rotary import RotaryEmbedding
from spmd_infer.models import llama
from spmd_infer.models.qwen2 import Qwen2Attention
from spmd_infer.models.qwen3 import Qwen3Attention
from spmd_infer.parallel.comm import Shard
from support.tiny_models import MAX_NEW, _configs, read_output


def test_only_attention_positioned_by_rotary_alone_fuses_the_store(monkeypatch):
    configs = _configs()
    monkeypatch.setattr(llama, "FUSE_ROTARY_STORE", True)
    assert llama.LlamaAttention(configs["llama"], Shard()).fuse_rotary_store
    assert Qwen2Attention(configs["qwen2"], Shard()).fuse_rotary_store
    # Qwen3 normalises q and k before the rotation (qk_norm_rotary): its store stays a kernel of its own.
    assert not Qwen3Attention(configs["qwen3"], Shard()).fuse_rotary_store
    monkeypatch.setattr(llama, "FUSE_ROTARY_STORE", False)
    assert not llama.LlamaAttention(configs["llama"], Shard()).fuse_rotary_store



def test_a_job_through_the_fused_kernel_gives_transformers_tokens(job, tiny, tmp_path, monkeypatch):
    """Attention reads the q the kernel rotated in place and the cache it wrote (the CPU path skips its own store
    when kv_stored), so a whole job through the kernel must give transformers' greedy tokens."""
    monkeypatch.setattr(llama, "FUSE_ROTARY_STORE", True)
    # On the CPU the layer would keep the two-step path; take the kernel path wherever a cache is bound.
    monkeypatch.setattr(PagedAttention, "stores_through_kernels",
                        lambda self, q, batch: self.k_cache is not None and batch.slot_mapping is not None)
    calls = []
    fused = RotaryEmbedding.rotate_and_store
    monkeypatch.setattr(RotaryEmbedding, "rotate_and_store", lambda self, *a: calls.append(1) or fused(self, *a))
    job(f"data.input={tiny['inputs']['mixed']}", f"sampling.max_tokens={MAX_NEW}")
    assert [r["token_ids"] for r in read_output(tmp_path / "out.jsonl")] == tiny["refs"][("llama", "mixed")]
    assert calls, "the job never took the fused path"

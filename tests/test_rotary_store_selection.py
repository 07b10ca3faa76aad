"""Which attention layers take the fused rotary + KV-store kernel (SPMD_ROTARY_STORE_KV=1).

The kernel itself is tested in tests/kernels/test_rotary_store_kv.py, the models with it on a GPU by
tests/gpu/run_pdl.sh.
"""

from __future__ import annotations

from spmd_infer.models import llama
from spmd_infer.models.qwen2 import Qwen2Attention
from spmd_infer.models.qwen3 import Qwen3Attention
from spmd_infer.parallel.comm import Shard
from support.tiny_models import _configs


def test_only_attention_positioned_by_rotary_alone_fuses_the_store(monkeypatch):
    configs = _configs()
    monkeypatch.setattr(llama, "FUSE_ROTARY_STORE", True)
    assert llama.LlamaAttention(configs["llama"], Shard()).fuse_rotary_store
    assert Qwen2Attention(configs["qwen2"], Shard()).fuse_rotary_store
    # Qwen3 normalises q and k before the rotation (qk_norm_rotary): its store stays a kernel of its own.
    assert not Qwen3Attention(configs["qwen3"], Shard()).fuse_rotary_store
    monkeypatch.setattr(llama, "FUSE_ROTARY_STORE", False)
    assert not llama.LlamaAttention(configs["llama"], Shard()).fuse_rotary_store


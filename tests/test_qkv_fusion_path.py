"""The rotary embedding and KV-cache store in the qkv projection's kernel at decode (SPMD_QKV_ROPE, qkv_rope_store),
in the engine: whole jobs through it on the CPU (Triton's interpreter) against transformers.

The kernel is tested in tests/kernels/test_qkv_rope_store.py; on a GPU, tests/gpu/run_bs1_fused.sh times it and
checks models with it on.
"""

from __future__ import annotations

import pytest
import torch

from spmd_infer.layers import linear
from spmd_infer.layers.attention import PagedAttention
from spmd_infer.layers.linear import ColumnParallelLinear
from spmd_infer.models import llama
from spmd_infer.parallel.comm import Shard
from spmd_kernels import build_cos_sin_cache
from spmd_kernels.qkv_epilogue import RopeStore
from spmd_kernels.skinny_gemm import skinny_gemm_supports
from support.tiny_models import MAX_NEW, build_model, greedy_reference, read_output

# CPU tensors through the kernels need Triton's interpreter, which a GPU host does not run; there,
# tests/kernels/test_qkv_rope_store.py runs the kernel and tests/gpu/check_vs_transformers.py the engine through it.
pytestmark = pytest.mark.skipif(torch.cuda.is_available(), reason="CPU tensors through the interpreter")


def _on_the_cpu(monkeypatch, rope: bool) -> list[int]:
    """Take skinny_gemm wherever the kernel supports the product, and the KV store through kernels wherever a cache
    is bound, on the CPU too; returns the row count of every qkv launch with the rotary epilogue."""
    monkeypatch.setattr(llama, "QKV_ROPE_ON", rope)
    monkeypatch.setattr(linear, "takes_skinny_gemm", skinny_gemm_supports)
    monkeypatch.setattr(PagedAttention, "stores_through_kernels",
                        lambda self, q, batch: self.k_cache is not None and batch.slot_mapping is not None)
    launches = []
    fused = ColumnParallelLinear.forward_rope_store

    def counted(self, x, rope_store):
        result = fused(self, x, rope_store)
        if result is not None:
            launches.append(result.shape[0])
        return result

    monkeypatch.setattr(ColumnParallelLinear, "forward_rope_store", counted)
    return launches


def test_forward_rope_store_only_where_skinny_gemm_and_the_epilogue_take_the_shapes(monkeypatch):
    layer = ColumnParallelLinear(64, (4 + 2 * 2) * 32, False, Shard())  # 4 q heads, 2 kv heads of 32
    torch.nn.init.normal_(layer.weight)
    inv_freq = 1.0 / (10000 ** (torch.arange(0, 32, 2, dtype=torch.float32) / 32))
    caches = [torch.zeros(4, 8, 2, 32) for _ in range(2)]

    def rope_for(m: int) -> RopeStore:
        return RopeStore(torch.arange(m), build_cos_sin_cache(inv_freq, 32), torch.arange(m), *caches, 4, 2, 32)

    x = torch.randn(3, 64)
    assert layer.forward_rope_store(x, rope_for(3)) is None  # CPU: the projection, then rotary_store_kv
    _on_the_cpu(monkeypatch, rope=True)
    out = layer.forward_rope_store(x, rope_for(3))
    assert out is not None and out.shape == (3, 256)
    plain = layer(x)
    torch.testing.assert_close(out[:, 192:], plain[:, 192:], rtol=1e-5, atol=1e-5)  # v is not rotated
    assert not torch.allclose(out[1:, :192], plain[1:, :192], atol=1e-3)  # q and k are, past position 0
    torch.testing.assert_close(caches[0].view(-1, 2, 32)[:3], out[:, 128:192].view(3, 2, 32))  # k as returned
    torch.testing.assert_close(caches[1].view(-1, 2, 32)[:3], out[:, 192:].view(3, 2, 32))
    assert layer.forward_rope_store(torch.randn(17, 64), rope_for(17)) is None  # > 16 rows
    layer.hold_in_float8((32, 32))  # float8 weights: fp8_linear, then rotary_store_kv (kernels/qkv_rope_store.py)
    assert layer.forward_rope_store(x, rope_for(3)) is None


def test_a_job_with_rotary_and_store_in_the_qkv_kernel_gives_transformers_tokens(job, tiny, tmp_path, monkeypatch):
    """Attention reads the q the epilogue rotated and the K/V it stored (the CPU path skips its own store when
    kv_stored), so the tokens match transformers only if the epilogue rotated and stored every decode token right."""
    folder = build_model("llama_wide_heads", tmp_path / "wide")
    reference = greedy_reference(folder, tiny["sets"]["mixed"], MAX_NEW)
    launches = _on_the_cpu(monkeypatch, rope=True)
    job(f"model.path={folder}", f"data.input={tiny['inputs']['mixed']}", f"sampling.max_tokens={MAX_NEW}")
    assert [r["token_ids"] for r in read_output(tmp_path / "out.jsonl")] == reference
    assert launches and max(launches) <= 16

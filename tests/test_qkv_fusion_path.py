"""What the qkv projection's kernel absorbs at decode, in the engine: the layer's residual add and input RMSNorm
(SPMD_NORM_QKV=1, rms_norm_skinny_gemm) and the rotary embedding with the KV-cache store (SPMD_QKV_ROPE=1,
qkv_rope_store). Whole jobs through them on the CPU (Triton's interpreter) against transformers.

The kernels are tested in tests/kernels/test_skinny_gemm.py and test_qkv_rope_store.py; on a GPU,
tests/gpu/run_bs1_next.sh times them and checks models with them on.
"""

from __future__ import annotations

import torch

from spmd_infer.layers import linear
from spmd_infer.layers.attention import PagedAttention
from spmd_infer.layers.layernorm import RMSNorm
from spmd_infer.layers.linear import ColumnParallelLinear
from spmd_infer.models import llama
from spmd_infer.parallel.comm import Shard
from spmd_kernels.skinny_gemm import skinny_gemm_supports
from support.tiny_models import MAX_NEW, build_model, greedy_reference, read_output


def _on_the_cpu(monkeypatch, norm: bool, rope: bool) -> list[tuple[bool, bool]]:
    """Take skinny_gemm wherever the kernel supports the product, and the KV store through kernels wherever a cache
    is bound, on the CPU too; returns the (norm fused, k/v stored) of every fused qkv launch."""
    monkeypatch.setattr(llama, "NORM_QKV_ON", norm)
    monkeypatch.setattr(llama, "QKV_ROPE_ON", rope)
    monkeypatch.setattr(linear, "takes_skinny_gemm", skinny_gemm_supports)
    monkeypatch.setattr(PagedAttention, "stores_through_kernels",
                        lambda self, q, batch: self.k_cache is not None and batch.slot_mapping is not None)
    launches = []
    fused = ColumnParallelLinear.forward_fused

    def counted(self, x, residual_norm, rope_store):
        result = fused(self, x, residual_norm, rope_store)
        if result is not None:
            launches.append((result[1] is not None, result[2]))
        return result

    monkeypatch.setattr(ColumnParallelLinear, "forward_fused", counted)
    return launches


def test_forward_fused_normalises_only_where_skinny_gemm_takes_the_product(monkeypatch):
    layer = ColumnParallelLinear(64, 48, False, Shard())
    torch.nn.init.normal_(layer.weight)
    norm = RMSNorm(64, 1e-6)
    torch.nn.init.uniform_(norm.weight, 0.5, 1.5)
    x, residual = torch.randn(3, 64), torch.randn(3, 64)
    assert layer.forward_fused(x, (residual, norm), None) is None  # CPU: the norm kernel, then F.linear
    _on_the_cpu(monkeypatch, norm=True, rope=False)
    out, h, kv_stored = layer.forward_fused(x, (residual, norm), None)
    normed, h_ref = norm(x, residual)
    assert torch.equal(h, h_ref) and not kv_stored
    torch.testing.assert_close(out, layer(normed), rtol=1e-5, atol=1e-5)
    assert layer.forward_fused(torch.randn(17, 64), (torch.randn(17, 64), norm), None) is None  # > 16 rows
    assert layer.forward_fused(x, None, None) is None  # nothing to fuse: the plain projection


def test_a_job_through_the_fused_norm_gives_transformers_tokens(job, tiny, tmp_path, monkeypatch):
    """Decode steps of layers 1.. take their qkv from the fused kernel and their residual stream from what it wrote
    (the tiny llama's 8-wide heads are too narrow for the rotary epilogue, so rotary + store stays separate)."""
    launches = _on_the_cpu(monkeypatch, norm=True, rope=True)
    job(f"data.input={tiny['inputs']['mixed']}", f"sampling.max_tokens={MAX_NEW}")
    assert [r["token_ids"] for r in read_output(tmp_path / "out.jsonl")] == tiny["refs"][("llama", "mixed")]
    assert launches and set(launches) == {(True, False)}


def test_a_job_with_norm_rotary_and_store_in_the_qkv_kernel_gives_transformers_tokens(job, tiny, tmp_path,
                                                                                      monkeypatch):
    """Attention reads the q the epilogue rotated and the K/V it stored (the CPU path skips its own store when
    kv_stored), so the tokens match transformers only if the epilogue rotated and stored every decode token right:
    with the input norm fused (layers 1..) and without it (layer 0, whose input is the embedding)."""
    folder = build_model("llama_wide_heads", tmp_path / "wide")
    reference = greedy_reference(folder, tiny["sets"]["mixed"], MAX_NEW)
    launches = _on_the_cpu(monkeypatch, norm=True, rope=True)
    job(f"model.path={folder}", f"data.input={tiny['inputs']['mixed']}", f"sampling.max_tokens={MAX_NEW}")
    assert [r["token_ids"] for r in read_output(tmp_path / "out.jsonl")] == reference
    assert set(launches) == {(True, True), (False, True)}

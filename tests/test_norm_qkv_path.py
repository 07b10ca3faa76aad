"""The input RMSNorm fused into the qkv projection (rms_norm_skinny_gemm, SPMD_NORM_QKV=1) in the engine: which
layers take it, and a whole job through it on the CPU (Triton's interpreter) against transformers.

The kernel itself is tested in tests/kernels/test_skinny_gemm.py; on a GPU, tests/gpu/run_bs1_next.sh times it and
checks the models with it on.
"""

from __future__ import annotations

import torch

from spmd_infer.layers import linear
from spmd_infer.layers.linear import ColumnParallelLinear
from spmd_infer.layers.layernorm import RMSNorm
from spmd_infer.parallel.comm import Shard
from spmd_kernels.skinny_gemm import skinny_gemm_supports
from support.tiny_models import MAX_NEW, read_output


def _on_the_cpu(monkeypatch):
    """Take skinny_gemm (and so the fused norm) wherever the kernel supports the product, on the CPU too."""
    monkeypatch.setattr(linear, "NORM_QKV_ON", True)
    monkeypatch.setattr(linear, "takes_skinny_gemm", skinny_gemm_supports)


def test_forward_normed_only_where_skinny_gemm_takes_the_product(monkeypatch):
    layer = ColumnParallelLinear(64, 48, False, Shard())
    torch.nn.init.normal_(layer.weight)
    norm = RMSNorm(64, 1e-6)
    torch.nn.init.uniform_(norm.weight, 0.5, 1.5)
    x, residual = torch.randn(3, 64), torch.randn(3, 64)
    assert layer.forward_normed(x, residual, norm) is None  # CPU: F.linear after the norm
    _on_the_cpu(monkeypatch)
    out, h = layer.forward_normed(x, residual, norm)
    normed, h_ref = norm(x, residual)
    assert torch.equal(h, h_ref)
    torch.testing.assert_close(out, layer(normed), rtol=1e-5, atol=1e-5)
    assert layer.forward_normed(torch.randn(17, 64), torch.randn(17, 64), norm) is None  # more rows than decode's
    monkeypatch.setattr(linear, "NORM_QKV_ON", False)
    assert layer.forward_normed(x, residual, norm) is None


def test_a_job_through_the_fused_norm_gives_transformers_tokens(job, tiny, tmp_path, monkeypatch):
    """Decode steps of layers 1.. take their qkv from the fused kernel and their residual stream from what it wrote,
    so a whole job through it must give transformers' greedy tokens."""
    _on_the_cpu(monkeypatch)
    calls = []
    fused = ColumnParallelLinear.forward_normed
    monkeypatch.setattr(ColumnParallelLinear, "forward_normed",
                        lambda self, *a: (lambda r: calls.append(r is not None) or r)(fused(self, *a)))
    job(f"data.input={tiny['inputs']['mixed']}", f"sampling.max_tokens={MAX_NEW}")
    assert [r["token_ids"] for r in read_output(tmp_path / "out.jsonl")] == tiny["refs"][("llama", "mixed")]
    assert any(calls), "the job never took the fused path"
    assert not all(calls), "prefill steps (more than 16 rows) must keep the two-step path"

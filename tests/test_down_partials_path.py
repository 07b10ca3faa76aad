"""SiLU-and-mul and the down projection in one skinny_gemm launch at decode, its K split and its fp32 partial sums
added up by the next RMSNorm (SPMD_GATED_DOWN, RowParallelLinear.forward_partials), in the engine: the layer's
rules, and whole jobs through it on the CPU (Triton's interpreter) against transformers.

The kernels are tested in tests/kernels/test_skinny_gemm.py and test_rmsnorm.py; on a GPU,
tests/gpu/run_down_partials.sh times the path and checks models with it on.
"""

from __future__ import annotations

import importlib

import pytest
import torch

from spmd_infer.layers import linear
from spmd_infer.layers.layernorm import PartialSums, RMSNorm
from spmd_infer.layers.linear import RowParallelLinear
from spmd_infer.models.llama import LlamaMLP
from spmd_infer.parallel.comm import Shard
from support.tiny_models import MAX_NEW, build_model, greedy_reference, read_output

# The module, not the function the package exports under its name.
skinny_gemm_module = importlib.import_module("spmd_kernels.skinny_gemm")
SPLIT_IN_TWO = "32,64,4,1,2"  # BLOCK_N, BLOCK_K, warps, stages, splits: 128 inputs as two splits of 64


def _on_the_cpu(monkeypatch, silu_in_kernel: bool = True) -> list[tuple[int, ...]]:
    """Take the partial-sums path wherever its shape rules allow, on the CPU too, in two K splits; returns the
    partial sums' shape of every launch."""
    monkeypatch.setattr(linear, "takes_down_partials", linear.down_partials_supports)
    monkeypatch.setattr(linear, "SILU_IN_DOWN_KERNEL", silu_in_kernel)
    monkeypatch.setattr(skinny_gemm_module, "_DOWN_PARTIALS_OVERRIDE", SPLIT_IN_TWO)
    launches = []
    original = RowParallelLinear.forward_partials

    def counted(self, gate_up):
        parts = original(self, gate_up)
        if parts is not None:
            launches.append(tuple(parts.shape))
        return parts

    monkeypatch.setattr(RowParallelLinear, "forward_partials", counted)
    return launches


@pytest.mark.parametrize("silu_in_kernel", [False, True])
def test_the_partials_sum_to_the_mlp_and_apply_only_where_they_may(silu_in_kernel, monkeypatch):
    torch.manual_seed(0)
    mlp = LlamaMLP(64, 128, Shard())
    for p in mlp.parameters():
        torch.nn.init.normal_(p, std=0.1)
    x, residual = torch.randn(3, 64), torch.randn(3, 64)
    norm = RMSNorm(64, 1e-6)
    assert not isinstance(mlp(x, into_norm=True), PartialSums)  # CPU: SiLU, then the projection
    launches = _on_the_cpu(monkeypatch, silu_in_kernel)
    out = mlp(x, into_norm=True)
    assert isinstance(out, PartialSums) and launches == [(2, 3, 64)]
    plain = mlp(x)
    torch.testing.assert_close(out.parts.sum(0), plain, rtol=1e-4, atol=1e-4)
    for got, want in zip(norm(out, residual), norm(plain, residual)):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
    assert not isinstance(mlp(torch.randn(17, 64), into_norm=True), PartialSums)  # > 16 rows
    tp2 = RowParallelLinear(256, 64, False, Shard(rank=0, size=2))  # partial sums owed to an all-reduce
    assert tp2.forward_partials(torch.randn(2, 256)) is None
    biased = RowParallelLinear(128, 64, True, Shard())
    assert biased.forward_partials(torch.randn(2, 256)) is None
    assert mlp.down_proj.forward_partials(torch.randn(2, 250)) is None  # not [gate | up] of 128 each


@pytest.mark.parametrize("silu_in_kernel", [False, True])
def test_a_job_through_the_down_partials_gives_transformers_tokens(silu_in_kernel, job, tiny, tmp_path, monkeypatch):
    """Every decode step's MLP output reaches the next layer only as partial sums that its input norm adds up
    (and the last layer's through the final norm), so the tokens match transformers only if both halves are right."""
    folder = build_model("llama_wide_heads", tmp_path / "wide")
    reference = greedy_reference(folder, tiny["sets"]["mixed"], MAX_NEW)
    launches = _on_the_cpu(monkeypatch, silu_in_kernel)
    job(f"model.path={folder}", f"data.input={tiny['inputs']['mixed']}", f"sampling.max_tokens={MAX_NEW}")
    assert [r["token_ids"] for r in read_output(tmp_path / "out.jsonl")] == reference
    assert launches and all(splits == 2 and rows <= 16 for splits, rows, _ in launches)

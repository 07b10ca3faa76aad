"""Small weights through skinny_gemm with K split over programs (SPMD_SKINNY_SPLIT, layers/linear.py): which products
take it, and that the engine's linear() gives F.linear's result through it (on the CPU, Triton's interpreter).

The kernel is tested in tests/kernels/test_skinny_gemm.py; on a GPU, tests/gpu/run_skinny_split.sh times it.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from spmd_infer.layers import linear


# CPU tensors through the kernel need Triton's interpreter; on a GPU, tests/kernels/test_skinny_gemm.py runs the split
# kernel at Qwen3-0.6B's shapes and tests/gpu/check_vs_transformers.py the engine through it.
@pytest.mark.skipif(torch.cuda.is_available(), reason="runs the kernel on CPU tensors under Triton's interpreter")
def test_small_weights_take_a_split_skinny_gemm_unless_turned_off(monkeypatch):
    monkeypatch.setattr(linear, "_skinny_device_ok", lambda x, weight: True)  # the GPU's gate, lifted on the CPU
    monkeypatch.setattr(linear, "skinny_split_k", lambda n, k, device, itemsize: 3)  # the CPU's own answer is 1
    launches = []
    kernel = linear.skinny_gemm

    def counted(x, weight, bias=None, config=None, splits=1):
        launches.append(splits)
        return kernel(x, weight, bias, config, splits)

    monkeypatch.setattr(linear, "skinny_gemm", counted)
    x, small, bias = torch.randn(4, 384), torch.randn(100, 384) * 384**-0.5, torch.randn(100)
    monkeypatch.setattr(linear, "SKINNY_SPLIT", False)
    assert linear.skinny_splits(x, small) == 0  # SPMD_SKINNY_SPLIT=0: cuBLAS
    monkeypatch.setattr(linear, "SKINNY_SPLIT", True)
    assert linear.skinny_splits(x, small) == 3
    torch.testing.assert_close(linear.linear(x, small, bias), F.linear(x, small, bias))
    assert launches == [3]
    assert linear.skinny_splits(torch.randn(17, 384), small) == 0  # more rows than skinny_gemm takes
    monkeypatch.setattr(linear, "SKINNY_MIN_WEIGHT_BYTES", small.numel() * small.element_size())
    assert linear.skinny_splits(x, small) == 1  # mid-sized now: one program a tile, as before
    monkeypatch.setattr(linear, "SKINNY_MAX_WEIGHT_BYTES", 0)
    assert linear.skinny_splits(x, small) == 0  # above the mid-sized range: cuBLAS

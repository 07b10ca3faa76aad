"""Activations scaled per token per group of features (scaled_activations): the Triton kernel against its torch
reference bit for bit, and the float8 rounding it uses against torch's cast."""

import importlib

import pytest
import torch
import triton
import triton.language as tl

from spmd_kernels.scaled_activations import _round_to_e4m3, quantize_activations, quantize_activations_ref


@triton.jit
def _round_to_e4m3_kernel(x_ptr, y_ptr, n, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    tl.store(y_ptr + offs, _round_to_e4m3(tl.load(x_ptr + offs, mask=offs < n)), mask=offs < n)


def test_round_to_e4m3_is_torchs_float8_cast(device):
    """The float8 activations' rounding (_round_to_e4m3): every value, normal or subnormal, and every
    midpoint between neighbours (ties) rounds as torch's float8 e4m3 cast does (to nearest, ties to even)."""
    grid = torch.arange(127, dtype=torch.uint8).view(torch.float8_e4m3fn).float()  # 0 .. 448, all finite ones
    midpoints = (grid[1:] + grid[:-1]) / 2
    values = torch.cat([grid, midpoints, torch.linspace(0, 448, 20001), torch.linspace(0, 0.05, 4001),
                        torch.randn(4096).abs() * 30])
    values = torch.cat([values, -values])
    values = values[values.abs() <= 448].to(device)
    out = torch.empty_like(values)
    _round_to_e4m3_kernel[(triton.cdiv(values.numel(), 1024),)](values, out, values.numel(), BLOCK=1024)
    assert torch.equal(out.cpu(), values.cpu().to(torch.float8_e4m3fn).float())


@pytest.mark.parametrize("wide", [False, True])
@pytest.mark.parametrize("group_major", [False, True])
@pytest.mark.parametrize("T,H,group", [(1, 64, 32), (7, 100, 32), (13, 96, 64), (0, 64, 32), (9, 2176, 128),
                                       (5, 4096, 1024)])
def test_quantize_activations_equals_reference(T, H, group, group_major, wide, device, monkeypatch):
    """x scaled a row per group of columns to float8's peak: values and scales bit for bit as torch makes them,
    rows of zeros (scale 1), a partial last group, magnitudes over 2^30 apart; a group a program (decode) or wide
    tiles of several rows and groups (prefill's), with partial ones at both edges (2176 = 17 groups of 128); the
    scales token- or group-major (cuBLAS's)."""
    if wide:
        monkeypatch.setattr(importlib.import_module("spmd_kernels.scaled_activations"), "TILE_MIN_ROWS", 0)
    x = torch.randn(T, H, device=device) * torch.logspace(-15, 15, H, base=2.0, device=device)
    if T > 2:
        x[2] = 0.0
    q, scale = quantize_activations(x, group, group_major_scales=group_major)
    q_ref, scale_ref = quantize_activations_ref(x, group)
    assert q.dtype == q_ref.dtype and scale.shape == scale_ref.shape == (T, -(-H // group))
    if group_major and T > 1:
        assert scale.stride() == (1, T)
    assert torch.equal(scale, scale_ref) and torch.equal(q.float(), q_ref.float())


@pytest.mark.parametrize("T", [5, 8])
def test_quantize_activations_pads_rows(T, device):
    """rows_multiple: results padded to whole multiples of rows, the padding zeros with scale 1, the rest as
    without it (group-major scales' rows stay 16-byte aligned for cuBLAS)."""
    x = torch.randn(T, 256, device=device)
    q, scale = quantize_activations(x, 128, group_major_scales=True, rows_multiple=4)
    q_ref, scale_ref = quantize_activations_ref(x, 128)
    assert q.shape == (8, 256) and scale.shape == (8, 2) and scale.stride() == (1, 8)
    assert torch.equal(q[:T].float(), q_ref.float()) and torch.equal(scale[:T], scale_ref)
    assert not q[T:].float().any() and bool((scale[T:] == 1).all())

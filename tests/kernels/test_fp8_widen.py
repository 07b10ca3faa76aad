"""fp8_widen: every float8 e4m3 byte widened by moving bits equals torch's conversion / 256, exactly."""

import pytest
import torch
import triton
import triton.language as tl

from spmd_kernels.fp8_widen import E4M3_BITS_SCALE, e4m3_to_f16_div256


@triton.jit
def _widen_kernel(x_ptr, out_ptr, n, ASM: tl.constexpr, BLOCK: tl.constexpr):
    offs = tl.arange(0, BLOCK)
    mask = offs < n
    x = tl.load(x_ptr + offs, mask=mask, other=0.0)
    tl.store(out_ptr + offs, e4m3_to_f16_div256(x, ASM), mask=mask)


@pytest.mark.parametrize("asm", [False, True], ids=["triton_ops", "inline_asm"])
def test_every_e4m3_value_widens_exactly(asm, device):
    if asm and device == "cpu":
        pytest.skip("inline PTX runs on a GPU only")
    codes = torch.arange(256, dtype=torch.uint8, device=device)
    codes = codes[(codes & 0x7F) != 0x7F]  # the two NaN codes have no value to keep
    x = codes.view(torch.float8_e4m3fn)
    out = torch.empty(codes.numel(), dtype=torch.float16, device=device)
    _widen_kernel[(1,)](x, out, codes.numel(), ASM=asm, BLOCK=256)
    expected = x.float() / E4M3_BITS_SCALE.value
    assert torch.equal(out.float(), expected)  # exact: subnormals, both zeros and +-448 included
    assert torch.equal(torch.signbit(out), torch.signbit(expected))

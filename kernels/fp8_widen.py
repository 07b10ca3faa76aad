"""Float8 widening for the decode kernels on CUDA (inline PTX, sm_89 and later): e4m3 to fp16 by cvt.e4m3x2, and a
pin that keeps Triton from moving a tensor's layout change ahead of where it was widened."""

from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def e4m3_to_f16(x, PINNED: tl.constexpr = False):
    """float8 e4m3 -> fp16, four values per 32-bit register by two cvt.rn.f16x2.e4m3x2: for the wide float8 tiles,
    faster code than Triton's own conversion (decode_settings.FP8_ASM_WIDEN). PINNED: marked impure, so that Triton
    widens where the value is loaded instead of moving a layout change ahead of the widening
    (decode_settings.FP8_PIN_V)."""
    return tl.inline_asm_elementwise(
        asm="{ .reg .b16 lo, hi; mov.b32 {lo, hi}, $2; cvt.rn.f16x2.e4m3x2 $0, lo; cvt.rn.f16x2.e4m3x2 $1, hi; }",
        constraints="=r,=r,r", args=[x.to(tl.uint8, bitcast=True)], dtype=tl.float16, is_pure=not PINNED, pack=4)


@triton.jit
def register_move(x, PURE: tl.constexpr):
    """x (16- or 32-bit elements) unchanged, through mov.b32, which Triton cannot see through: PURE, it still may
    move or merge it like any elementwise op, but no longer folds what produced x into what consumes it; impure, it
    also stays where it is (pinned)."""
    return tl.inline_asm_elementwise(asm="mov.b32 $0, $1;", constraints="=r,r", args=[x], dtype=x.dtype,
                                     is_pure=PURE, pack=32 // x.dtype.primitive_bitwidth)


@triton.jit
def pinned(x):
    """x unchanged, through a register move marked impure. Triton moves a dot operand's layout change ahead of
    elementwise work where that is cheaper, which for a tensor just widened from float8 means rearranging bytes (a
    byte-wise gather from shared memory for a transposed operand); after pinned(x.to(...)) the change can only
    happen to the widened values, through shared memory as 16-bit words (ldmatrix.trans)."""
    return register_move(x, False)

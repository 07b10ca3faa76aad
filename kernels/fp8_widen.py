"""float8 e4m3 widened to fp16 by moving bits instead of converting: the result holds the value / 256 exactly."""

from __future__ import annotations

import triton
import triton.language as tl

# e4m3 has 4 exponent bits (bias 7) and 3 mantissa bits; fp16 has 5 (bias 15) and 10. Shifting an e4m3 byte's
# exponent and mantissa into the top of fp16's fields gives a number whose exponent is 15 - 7 = 8 too small: the
# value / 256, exact for normal and subnormal e4m3 alike (subnormals land on fp16 normals or subnormals of the
# same value / 256). The caller folds the 256 back in once (into the softmax scale for K, into the output for V).
E4M3_BITS_SCALE = tl.constexpr(256.0)


@triton.jit
def e4m3_to_f16_div256(x, ASM: tl.constexpr):
    """x: a float8_e4m3fn tensor; returns fp16 x / 256. ASM: four bytes a register through prmt and lop3 (two
    values per 32-bit operation); otherwise the same with Triton's integer ops (the interpreter's path)."""
    bits = x.to(tl.uint8, bitcast=True)
    if ASM:
        # prmt places bytes 0 and 1 (2 and 3) in the high byte of each 16-bit half: sign at bit 15, exponent and
        # mantissa at 14..8; those seven bits then move down by one, under fp16's sign.
        return tl.inline_asm_elementwise(
            asm="""{
            .reg .b32 lo, hi;
            prmt.b32 lo, 0, $2, 0x5040;
            prmt.b32 hi, 0, $2, 0x7060;
            shr.b32 $0, lo, 1;
            shr.b32 $1, hi, 1;
            and.b32 $0, $0, 0x3F803F80;
            and.b32 $1, $1, 0x3F803F80;
            and.b32 lo, lo, 0x80008000;
            and.b32 hi, hi, 0x80008000;
            or.b32 $0, $0, lo;
            or.b32 $1, $1, hi;
            }""",
            constraints="=r,=r,r",
            args=[bits],
            dtype=tl.float16,
            is_pure=True,
            pack=4,
        )
    wide = bits.to(tl.uint16)
    return (((wide & 0x80) << 8) | ((wide & 0x7F) << 7)).to(tl.float16, bitcast=True)

"""Counts the compiled variants our Triton kernels hold: compiles after warmup stall a run, so the bench reports
them."""

from __future__ import annotations

import sys
from collections import Counter

import triton


def compiled_variants() -> Counter:
    """Compiled (specialisation, constexprs) variants per kernel name, over every loaded module of this package;
    empty under TRITON_INTERPRET, which compiles nothing. Subtract two of them to see what compiled in between."""
    seen, counts = set(), Counter()
    for name, module in list(sys.modules.items()):
        if module is None or not (name == __package__ or name.startswith(__package__ + ".")):
            continue
        for obj in vars(module).values():
            if not isinstance(obj, triton.runtime.JITFunction) or id(obj) in seen:
                continue
            seen.add(id(obj))
            n = variants_of(obj)
            if n:
                counts[obj.__name__] = n
    return counts


def variants_of(kernel) -> int:
    """Compiled variants of one @triton.jit kernel, over all devices (0 under TRITON_INTERPRET)."""
    caches = getattr(kernel, "device_caches", None) or {}
    # device -> (kernel_cache, ...): the first entry maps a specialisation key to its compiled kernel.
    return sum(len(entry[0]) for entry in caches.values())

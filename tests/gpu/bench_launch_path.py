"""GPU probe: host microseconds of each piece of a Triton kernel's launch, on the RMSNorm kernel and tiny inputs.

time_step_parts.py found the RMSNorm wrapper at ~44 us of host time a call, torch.mm at ~15: in an eager prefill
step of a small model (Qwen3-0.6B, ~250 launches) the host, not the GPU, sets the pace. This splits one launch
into the wrapper, the JIT's own path (`kernel[grid](...)`: binder, cache key, knobs, device and stream lookups) and
the compiled launcher alone (`CompiledKernel.run`), so a cheaper path is aimed at what costs. It also writes the
installed Triton's JITFunction.run source to $OUT/jit_run.py.

usage (on a GPU machine, in the repo root, after `source tests/gpu/device_env.sh`):
  python tests/gpu/bench_launch_path.py
"""

from __future__ import annotations

import cProfile
import inspect
import os
import pstats
import time

import torch
import triton
from triton.runtime import driver

from spmd_kernels.pdl import pdl_args
from spmd_kernels.rmsnorm import _rms_norm_kernel, rms_norm

N = 3000


def host_us(fn) -> float:
    for _ in range(300):
        fn()
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(N):
        fn()
    elapsed = time.perf_counter() - start
    torch.cuda.synchronize()
    return elapsed / N * 1e6


def main() -> None:
    out = os.environ.get("OUT", "/tmp")
    with open(f"{out}/jit_run.py", "w") as f:
        f.write(f"# triton {triton.__version__}\n" + inspect.getsource(triton.runtime.jit.JITFunction.run))
    device = torch.device("cuda", torch.cuda.current_device())
    x = torch.randn(1, 1024, device=device, dtype=torch.bfloat16)
    w = torch.ones(1024, device=device, dtype=torch.bfloat16)
    y = torch.empty_like(x)
    args = (x, y, w, y, y, 1024, 1024, 1, 1024, 1024, 1024, 1024, 1e-6)
    for pdl in (True, False):
        extra = pdl_args(device) if pdl else {"PDL": False}
        kw = dict(HAS_RESIDUAL=False, BLOCK_H=1024, num_warps=4, **extra)
        compiled = _rms_norm_kernel[(1,)](*args, **kw)
        kernel_cache, kernel_key_cache, target, backend, binder = _rms_norm_kernel.device_caches[device.index]
        bound, _, _ = binder(*args, **kw)
        values = tuple(bound.values())
        stream = driver.active.get_current_stream(device.index)
        rows = {
            "rms_norm wrapper": lambda: rms_norm(x, w, 1e-6, None),
            "kernel[grid](...)": lambda: _rms_norm_kernel[(1,)](*args, **kw),
            "binder alone": lambda: binder(*args, **kw),
            "device + stream lookups": lambda: driver.active.get_current_stream(driver.active.get_current_device()),
            "pdl_args(device)": lambda: pdl_args(device),
            "compiled.run alone": lambda: compiled.run(1, 1, 1, stream, compiled.function, compiled.packed_metadata,
                                                       None, None, None, *values),
            "torch.empty": lambda: torch.empty((1, 1024), dtype=x.dtype, device=device),
        }
        print(f"--- triton {triton.__version__}, PDL {pdl}")
        for name, fn in rows.items():
            print(f"LAUNCH {name:26s} {host_us(fn):6.1f} us host a call", flush=True)
        if pdl:  # the JIT path's own functions, by own time
            prof = cProfile.Profile()
            prof.runcall(lambda: [_rms_norm_kernel[(1,)](*args, **kw) for _ in range(N)])
            pstats.Stats(prof).sort_stats("tottime").print_stats(14)


if __name__ == "__main__":
    main()

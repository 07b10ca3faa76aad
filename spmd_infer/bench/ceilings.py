"""The card's own limits, measured on the spot: memory bandwidth (a large copy) and matrix rate (a large matmul).

Measured rather than taken from a data sheet, so MBU and MFU compare with what this card, clock and
driver actually reach. On CUDA each repeat is timed with CUDA events after warmup; on CPU (tests)
with the host clock; the median of the repeats counts.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass
from typing import Callable

import torch


@dataclass
class Ceilings:
    bandwidth_bytes_per_s: float
    """Bytes read + written per second by a device-to-device copy."""
    matmul_flops_per_s: float
    """FLOP/s of an n x n x n matmul in `dtype` (2 n^3 FLOPs)."""
    dtype: str
    copy_bytes: int
    matmul_n: int
    device: str
    sheet_bandwidth_bytes_per_s: float | None = None
    """The card's memory bandwidth by its data sheet, where DATA_SHEET_BANDWIDTH knows the card: a copy rate
    measured above it is a faulty measurement, and MBU against it would be understated (report.py warns)."""

    def to_json(self) -> dict:
        return asdict(self)


# Peak HBM bandwidth by device name (substring, first match), bytes per second read + written.
DATA_SHEET_BANDWIDTH = (
    ("H200", 4.8e12),
    ("H100 NVL", 3.9e12),
    ("H100 PCIe", 2.0e12),
    ("H100", 3.35e12),
    ("A100-SXM4-80GB", 2.039e12),
    ("A100", 1.555e12),
)


def sheet_bandwidth(device_name: str) -> float | None:
    return next((bw for key, bw in DATA_SHEET_BANDWIDTH if key in device_name), None)


def measure_ceilings(device: torch.device, dtype: torch.dtype, copy_mib: int = 0, matmul_n: int = 0,
                     repeats: int = 10) -> Ceilings:
    cuda = device.type == "cuda"
    copy_mib = copy_mib or (2048 if cuda else 64)
    matmul_n = matmul_n or (8192 if cuda else 512)
    n_elems = copy_mib * 2**20 // 4
    src = torch.empty(n_elems, dtype=torch.float32, device=device).uniform_()
    dst = torch.empty_like(src)
    copy_s = _median_seconds(lambda: dst.copy_(src), device, repeats)
    copy_bytes = 2 * src.numel() * src.element_size()  # every byte is read once and written once
    del src, dst
    a = torch.randn(matmul_n, matmul_n, device=device).to(dtype)
    b = torch.randn(matmul_n, matmul_n, device=device).to(dtype)
    out = torch.empty(matmul_n, matmul_n, device=device, dtype=dtype)
    mm_s = _median_seconds(lambda: torch.mm(a, b, out=out), device, repeats)
    del a, b, out
    if cuda:
        torch.cuda.empty_cache()
    name = device_name(device)
    return Ceilings(bandwidth_bytes_per_s=copy_bytes / copy_s, matmul_flops_per_s=2 * matmul_n**3 / mm_s,
                    dtype=str(dtype).removeprefix("torch."), copy_bytes=copy_bytes, matmul_n=matmul_n,
                    device=name, sheet_bandwidth_bytes_per_s=sheet_bandwidth(name) if cuda else None)


def _median_seconds(fn: Callable[[], object], device: torch.device, repeats: int, warmup: int = 3) -> float:
    for _ in range(warmup):
        fn()
    times = []
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        for _ in range(max(1, repeats)):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end) / 1e3)
    else:
        for _ in range(max(1, repeats)):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    import platform

    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"

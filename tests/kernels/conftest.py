"""Kernel tests: Triton's interpreter on CPU when CUDA is absent, and `spmd_kernels` importable."""

import importlib.util
import os
import sys
import zlib
from pathlib import Path

import torch

# Must happen before triton is imported anywhere (the @triton.jit decorators read it).
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402

_REPO = Path(__file__).resolve().parents[2]


def _ensure_spmd_kernels() -> None:
    try:
        import spmd_kernels  # noqa: F401
        return
    except ImportError:
        pass
    pkg_dir = _REPO / "kernels"
    spec = importlib.util.spec_from_file_location(
        "spmd_kernels", pkg_dir / "__init__.py", submodule_search_locations=[str(pkg_dir)]
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules["spmd_kernels"] = module
    spec.loader.exec_module(module)


_ensure_spmd_kernels()

HAS_CUDA = torch.cuda.is_available()
DEVICE = "cuda" if HAS_CUDA else "cpu"

# (dtype, atol, rtol)
_TOL = {
    torch.float32: (1e-4, 1e-4),
    torch.float16: (1e-2, 1e-2),
    torch.bfloat16: (2e-2, 2e-2),
}


@pytest.fixture(
    params=[
        torch.float32,
        torch.float16,
        pytest.param(
            torch.bfloat16,
            marks=pytest.mark.skipif(
                not HAS_CUDA, reason="bf16 needs CUDA (the Triton interpreter's bf16 tl.dot is wrong)"
            ),
        ),
    ],
    ids=["fp32", "fp16", "bf16"],
)
def dtype(request):
    return request.param


@pytest.fixture
def device():
    return DEVICE


@pytest.fixture
def assert_close(dtype):
    atol, rtol = _TOL[dtype]

    def check(actual, expected, **kw):
        torch.testing.assert_close(actual, expected, atol=kw.pop("atol", atol), rtol=kw.pop("rtol", rtol), **kw)

    return check


@pytest.fixture(autouse=True)
def _seed(request):
    # Fresh random inputs per test case, reproducible from the test id.
    torch.manual_seed(zlib.crc32(request.node.nodeid.encode()))


def make_paged_kv(context_lens, Hkv, D, dtype, device, block_size=16, spare_blocks=3):
    """Random K/V caches [num_blocks, block_size, Hkv, D] and int32 block tables whose blocks are
    shuffled (non-contiguous); entries past each context hold garbage kernels must never read."""
    needed = [(n + block_size - 1) // block_size for n in context_lens]
    num_blocks = sum(needed) + spare_blocks
    max_blocks = max(needed + [1]) + 2
    k_cache = torch.randn(num_blocks, block_size, Hkv, D, dtype=dtype, device=device)
    v_cache = torch.randn_like(k_cache)
    perm = torch.randperm(num_blocks).tolist()
    block_tables = torch.randint(10**6, 10**7, (len(context_lens), max_blocks), dtype=torch.int32)
    for i, nb in enumerate(needed):
        block_tables[i, :nb] = torch.tensor(perm[:nb], dtype=torch.int32)
        perm = perm[nb:]
    return k_cache, v_cache, block_tables.to(device)


@pytest.fixture
def paged_kv():
    return make_paged_kv

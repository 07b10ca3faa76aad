import ast
import inspect

import torch

import spmd_kernels
from spmd_kernels import pdl
from spmd_kernels.pdl import pdl_args


def _kernels():
    """Every @triton.jit kernel (name ending in _kernel) of every module of the package."""
    import importlib
    import pkgutil

    for info in pkgutil.iter_modules(spmd_kernels.__path__):
        module = importlib.import_module(f"spmd_kernels.{info.name}")
        for name, obj in vars(module).items():
            fn = getattr(obj, "fn", None)  # JITFunction on a GPU, InterpretedFunction under TRITON_INTERPRET
            if name.endswith("_kernel") and inspect.isfunction(fn) and fn.__module__ == module.__name__:
                yield f"{info.name}.{name}", obj


def test_pdl_is_off_on_the_cpu_and_by_default(monkeypatch):
    assert pdl_args(torch.device("cpu")) == {"PDL": False}
    monkeypatch.setattr(pdl, "PDL_ON", True)
    assert pdl_args(torch.device("cpu")) == {"PDL": False}  # the interpreter's launcher has no launch_pdl


def test_every_kernel_waits_for_its_predecessor_first():
    # With PDL on, a program that touched memory (or exited) before gdc_wait could race with the previous kernel,
    # or let this grid finish before it: pdl_enter(PDL) must be the first statement of every kernel.
    # skinny_gemm is the one exception, by design: it loads a weight tile, then waits (see its kernel).
    kernels = dict(_kernels())
    assert len(kernels) >= 17
    for name, kernel in kernels.items():
        fn = ast.parse(inspect.getsource(kernel.fn).lstrip()).body[0]
        assert "PDL" in [a.arg for a in fn.args.args], f"{name} takes no PDL constexpr"
        body = fn.body[1:] if isinstance(fn.body[0], ast.Expr) and isinstance(fn.body[0].value, ast.Constant) \
            else fn.body  # after the docstring
        if name == "skinny_gemm._skinny_gemm_kernel":
            continue
        first = ast.unparse(body[0])
        assert first == "pdl_enter(PDL)", f"{name} starts with {first!r}, not pdl_enter(PDL)"

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


# Kernels that read weights before their wait, by design (no predecessor writes weights): the names their
# early loads may read through.
EARLY_WEIGHT_READS = {"skinny_gemm._skinny_gemm_kernel": {"w_ptrs"},
                      "fp8_linear._fp8_linear_kernel": {"w_ptrs", "s_ptr", "step"},
                      "moe_route._moe_router_kernel": {"w_ptrs"},
                      "head_gemm._head_gemm_kernel": {"w_ptrs"}}


def test_every_kernel_waits_for_its_predecessor_first():
    # With PDL on, a program that touched memory (or exited) before gdc_wait could race with the previous kernel,
    # or let this grid finish before it: pdl_enter(PDL) must be the first statement of every kernel, except that
    # the EARLY_WEIGHT_READS kernels load a weight tile first (no other load, no store, atomic or exit).
    kernels = dict(_kernels())
    assert len(kernels) >= 17
    for name, kernel in kernels.items():
        fn = ast.parse(inspect.getsource(kernel.fn).lstrip()).body[0]
        assert "PDL" in [a.arg for a in fn.args.args], f"{name} takes no PDL constexpr"
        body = fn.body[1:] if isinstance(fn.body[0], ast.Expr) and isinstance(fn.body[0].value, ast.Constant) \
            else fn.body  # after the docstring
        if name in EARLY_WEIGHT_READS:
            statements = [ast.unparse(node) for node in body]
            assert "pdl_enter(PDL)" in statements, f"{name} never calls pdl_enter(PDL)"
            for node in body[:statements.index("pdl_enter(PDL)")]:
                _assert_reads_weights_only(name, node, EARLY_WEIGHT_READS[name])
            continue
        first = ast.unparse(body[0])
        assert first == "pdl_enter(PDL)", f"{name} starts with {first!r}, not pdl_enter(PDL)"


def _assert_reads_weights_only(name, node, weight_names):
    assert not any(isinstance(n, ast.Return) for n in ast.walk(node)), f"{name} may exit before its PDL wait"
    for call in (n for n in ast.walk(node) if isinstance(n, ast.Call)):
        callee = ast.unparse(call.func)
        assert "store" not in callee and "atomic" not in callee, f"{name} calls {callee} before its PDL wait"
        if callee == "tl.load":
            read = {n.id for n in ast.walk(call.args[0]) if isinstance(n, ast.Name)}
            assert read <= weight_names, f"{name} loads through {sorted(read - weight_names)} before its PDL wait"


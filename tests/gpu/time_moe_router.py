"""GPU timing of the MoE router's product and routing at decode sizes: F.linear then moe_route (cuBLAS's kernels and
ours, as before session 33) against moe_route_hidden's one launch at several split sizes (moe_route._ROUTER_PROGRAMS,
_ROUTER_MAX_SPLITS), each checked against the two-step path's experts: the numbers behind those two constants.

usage (on a GPU machine, in the repo root, after `source tests/gpu/device_env.sh`):
  python tests/gpu/time_moe_router.py [--programs 16,32,64,128] [--splits 4,8,16] [--batches 1,8,16]
(--splits sets both most-splits constants, 16-bit and fp32 routers')
"""

from __future__ import annotations

import argparse
import importlib

import torch
import torch.nn.functional as F

# sweep_tools: tests/gpu/, the script's own folder
from sweep_tools import time_in_graph

route = importlib.import_module("spmd_kernels.moe_route")  # the module: its split sizes are globals read per call

# name: (experts, hidden, fp32 router, moe_route arguments). The layer keeps group-limited routers (DeepSeek-V2 /
# V3) on F.linear: V3's shape is here to time that choice again.
MODELS = {
    "qwen1.5-moe": (60, 2048, False, dict(top_k=4, num_shared=4)),
    "dsv2-lite": (64, 2048, True, dict(top_k=6, num_shared=2)),
    "qwen3-30b-a3b": (128, 2048, False, dict(top_k=8, renormalize=True)),
    "bf16-dsv3-shape": (256, 7168, False, dict(top_k=8, sigmoid=True, num_groups=8, topk_groups=4, group_top2=True,
                                               renormalize=True, scaling=2.5, num_shared=1)),
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--programs", default="16,32,64,128", help="programs a launch aims at")
    ap.add_argument("--splits", default="4,8,16", help="most splits of the hidden features")
    ap.add_argument("--batches", default="1,8,16", help="decode batch sizes (tokens)")
    args = ap.parse_args()
    programs = [int(v) for v in args.programs.split(",")]
    splits = [int(v) for v in args.splits.split(",")]
    default = (route._ROUTER_PROGRAMS, route._ROUTER_MAX_SPLITS, route._ROUTER_MAX_SPLITS_FP32)
    settings = [(p, s) for p in programs for s in splits]
    print(f"{torch.cuda.get_device_name()}: us a call in CUDA graphs; 'two' = F.linear then moe_route, 'route' "
          f"moe_route alone; "
          f"others (programs, max splits), the router's default marked * (programs, 16-bit, fp32: {default})")
    print(f"{'model':14} {'bs':>3} {'two':>6} {'route':>6} " + " ".join(f"{f'{p},{s}':>7}" for p, s in settings))
    for name, (experts, hidden, fp32, kwargs) in MODELS.items():
        g = torch.Generator(device="cuda").manual_seed(experts)
        weight = (torch.randn(experts, hidden, device="cuda", generator=g) * hidden**-0.5).to(
            torch.float32 if fp32 else torch.bfloat16)
        bias = torch.randn(experts, device="cuda", generator=g) * 0.1 if kwargs.get("sigmoid") else None
        for T in (int(v) for v in args.batches.split(",")):
            x = torch.randn(T, hidden, device="cuda", generator=g).bfloat16()

            def two_steps():
                return route.moe_route(F.linear(x.float() if fp32 else x, weight), bias=bias, **kwargs)

            want = two_steps()[1]
            t_two, _ = time_in_graph(f"{name} bs{T} two", two_steps, lambda: 0.0)
            logits = F.linear(x.float() if fp32 else x, weight)
            t_route, _ = time_in_graph(f"{name} bs{T} route", lambda: route.moe_route(logits, bias=bias, **kwargs),
                                       lambda: 0.0)
            cells = []
            for p, s in settings:
                route._ROUTER_PROGRAMS, route._ROUTER_MAX_SPLITS, route._ROUTER_MAX_SPLITS_FP32 = p, s, s
                t, bad = time_in_graph(f"{name} bs{T} {p},{s}", lambda: route.moe_route_hidden(
                    x, weight, bias=bias, **kwargs), lambda: float(not torch.equal(route.moe_route_hidden(
                        x, weight, bias=bias, **kwargs)[1], want)))
                mine = (p, s) == (default[0], default[2] if fp32 else default[1])  # this router's default
                cells.append(f"{t * 1e3:6.1f}{'*' if mine else ' '}{'!' if bad else ''}")
            route._ROUTER_PROGRAMS, route._ROUTER_MAX_SPLITS, route._ROUTER_MAX_SPLITS_FP32 = default
            print(f"{name:14} {T:>3} {t_two * 1e3:6.1f} {t_route * 1e3:6.1f} " + " ".join(f"{c:>7}" for c in cells))
    print("! chose other experts than the two-step path (a near-tie's rounding, or a fault)")


if __name__ == "__main__":
    main()

"""Every explicit host sync in the engine's code is one we know of and allow, with the reason written here.

An overlapped step loop keeps the GPU busy only while the host never waits for it except where it means to. A
`.item()`, `.tolist()`, `.cpu()`, `.nonzero()` or `.synchronize()` of a device tensor makes the host wait for all
the GPU's queued work, and the next step's launches then start from an idle GPU (session 22 found one in MLA's
prefill plan). This reads the code (no GPU needed) and fails on such a call in a place not listed below: remove it
from the step path, or list it with why it is harmless. On a GPU, tests/gpu/find_step_syncs.py finds the syncs a
run actually makes, implicit ones included (`int(tensor)`, blocking copies).
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SCANNED = ["spmd_infer/engine", "spmd_infer/layers", "spmd_infer/models", "spmd_infer/parallel",
           "spmd_infer/forward_batch.py", "spmd_infer/stop.py", "kernels"]
SYNCING = {"item", "tolist", "cpu", "nonzero", "synchronize"}

# "path:function:method" -> why it does not stall an overlapped step
ALLOWED = {
    "spmd_infer/engine/batch_inputs.py:pack_batch:tolist": "a numpy array: host data",
    "spmd_infer/engine/cuda_graphs.py:capture:synchronize": "graph capture, at startup",
    "spmd_infer/engine/prefill_graphs.py:capture:synchronize": "prefill graph capture, at startup",
    "spmd_infer/engine/capture_vote.py:all_captured:item": "a host tensor (the capture vote, over gloo), at startup",
    "spmd_infer/engine/engine.py:_sync:synchronize": "startup timing",
    "spmd_infer/engine/in_flight.py:tokens:synchronize": "the designed wait: an event after this step's token copy",
    "spmd_infer/engine/in_flight.py:tokens:tolist": "the pinned host copy",
    "spmd_infer/engine/model_runner.py:drop_prefill_graphs:synchronize": "a failed prefill graph capture, at startup",
    "spmd_infer/engine/model_runner.py:_score_prompt_rows:tolist": "prompt log-probabilities: settled steps",
    "spmd_infer/engine/model_runner.py:sample:tolist": "settled steps: their tokens are needed on the host",
    "spmd_infer/engine/model_runner.py:_top_logprobs:tolist": "log-probabilities: settled steps",
    "spmd_infer/engine/model_runner.py:min_over:item": "startup: the KV block count every rank agrees on",
    "spmd_infer/parallel/symm_setup.py:on_every_rank:item": "startup: a group agrees on its symmetric-memory "
                                                                   "path",
    "spmd_infer/layers/attention.py:varlen_attention:tolist": "the torch path (CPU)",
    "spmd_infer/layers/mla.py:_expanded:tolist": "the torch path (CPU)",
    "spmd_infer/layers/mla.py:_plan_groups:cpu": "only for batches the runner did not pack (no host_tables)",
    "spmd_infer/layers/mla.py:_plan_groups:tolist": "a CPU tensor made from the host arrays",
    "spmd_infer/parallel/dp_meta.py:column:tolist": "the gathered rows, already on the host",
    "spmd_infer/parallel/dp_meta.py:gather:synchronize": "the exchange's own stream, not the forward's",
    "spmd_infer/parallel/dp_meta.py:gather:cpu": "the CPU collective (gloo): host tensors",
    "spmd_infer/stop.py:agreed:item": "a host tensor (the stop vote goes over gloo)",
    "kernels/prefill_attention.py:paged_prefill_attention:item": "only when the caller gives no max_seqlen_q",
}


def _syncing_calls() -> set[str]:
    found = set()
    for root in SCANNED:
        path = REPO / root
        for file in sorted(path.rglob("*.py")) if path.is_dir() else [path]:
            tree = ast.parse(file.read_text(), filename=str(file))
            for fn in ast.walk(tree):
                if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    continue
                for node in ast.walk(fn):
                    if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                            and node.func.attr in SYNCING):
                        found.add(f"{file.relative_to(REPO)}:{fn.name}:{node.func.attr}")
    return found


def test_every_host_sync_in_the_engine_is_known():
    unknown = sorted(_syncing_calls() - set(ALLOWED))
    assert not unknown, ("host syncs in places not known to be off the overlapped step path (each stalls the GPU "
                         f"once per call there): {unknown}; remove them, or list them in ALLOWED with why")


def test_the_list_names_no_sync_that_is_gone():
    stale = sorted(set(ALLOWED) - _syncing_calls())
    assert not stale, f"ALLOWED lists syncs the code no longer makes: {stale}; delete those entries"

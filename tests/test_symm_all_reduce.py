"""The symmetric-memory all-reduce path (parallel.all_reduce): its size rules, setup and the norm's reduce of a
layer's partial sums on the CPU; on 2+ CUDA GPUs, its sums (and the push kernel's norm) against NCCL's, eagerly and
inside CUDA graphs."""

from __future__ import annotations

import pytest
import torch

from spmd_infer.parallel.symm_all_reduce import (
    MAX_BUFFER_BYTES,
    ONE_SHOT_MAX_BYTES,
    SymmetricAllReduce,
    all_reduce_path,
    choose_algorithm,
    enable_symmetric_all_reduce,
    symmetric_all_reduce_for,
)
from spmd_infer.layers.layernorm import RMSNorm
from spmd_infer.parallel.comm import PartialSums, Shard
from spmd_infer.parallel.push_all_reduce import PushBuffers
from spmd_kernels.push_all_reduce import PushPeers
from tests.support.launch import REPO, torchrun

MIB = 2**20


@pytest.mark.parametrize("nbytes, world, want", [
    (0, 2, "nccl"),
    (16, 2, "one_shot"),
    (8 * 1024, 2, "one_shot"),
    (ONE_SHOT_MAX_BYTES, 2, "one_shot"),
    (ONE_SHOT_MAX_BYTES + 64, 2, "two_shot"),
    (ONE_SHOT_MAX_BYTES - 16, 2, "one_shot"),
    (ONE_SHOT_MAX_BYTES + 32, 4, "nccl"),  # not whole 16-byte vectors per rank
    (2 * MIB, 2, "two_shot"),
    (4 * MIB, 2, "two_shot"),  # the buffer's size exactly
    (4 * MIB + 64, 2, "nccl"),  # past the buffer
    (1000 * 2, 2, "one_shot"),
    (7 * 2, 2, "nccl"),  # not a whole 16-byte vector
])
def test_algorithm_by_size(nbytes, world, want):
    assert choose_algorithm(nbytes, world, 4 * MIB) == want


def test_algorithm_takes_only_what_the_buffer_holds():
    fast = SymmetricAllReduce("g", 2, torch.empty(MIB // 2, dtype=torch.bfloat16))
    assert fast.algorithm(torch.zeros(64, 4096, dtype=torch.bfloat16)) == "one_shot"  # 512 KiB
    assert fast.algorithm(torch.zeros(64, 4096, dtype=torch.float32)) == "nccl"  # another dtype than the buffer's
    assert fast.algorithm(torch.zeros(4096, 64, dtype=torch.bfloat16).t()) == "nccl"  # strided
    assert fast.algorithm(torch.zeros(256, 4096, dtype=torch.bfloat16)) == "nccl"  # 2 MiB: past the 1 MiB buffer
    assert fast.algorithm(torch.zeros(0, 4096, dtype=torch.bfloat16)) == "nccl"


def test_push_takes_rows_its_slots_hold():
    peers = PushPeers(torch.zeros(2, dtype=torch.int64), torch.zeros(2, dtype=torch.int64),
                      torch.zeros(4, dtype=torch.int32), 0, 2, 4, 4096)
    fast = SymmetricAllReduce("g", 2, torch.empty(MIB, dtype=torch.bfloat16),
                              push=PushBuffers(peers, torch.bfloat16, ()))
    assert fast.algorithm(torch.zeros(4, 4096, dtype=torch.bfloat16)) == "push"
    assert fast.algorithm(torch.zeros(3, 100, dtype=torch.bfloat16)) == "push"  # narrower rows fit the slots too
    assert fast.algorithm(torch.zeros(5, 4096, dtype=torch.bfloat16)) == "one_shot"  # more rows than slots
    assert fast.algorithm(torch.zeros(1, 8192, dtype=torch.bfloat16)) == "one_shot"  # wider than a slot
    assert fast.algorithm(torch.zeros(4, 4096, dtype=torch.float32)) == "nccl"  # not the buffers' dtype
    residual = torch.zeros(5, 4096, dtype=torch.bfloat16)
    assert fast.add_norm(torch.zeros(5, 4096, dtype=torch.bfloat16), residual, torch.ones(4096), 1e-6) is None
    assert SymmetricAllReduce("g", 2, torch.empty(MIB, dtype=torch.bfloat16)).algorithm(
        torch.zeros(1, 4096, dtype=torch.bfloat16)) == "one_shot"  # no push buffers: the one-shot kernel


def test_reports_name_the_path(monkeypatch):
    from types import SimpleNamespace

    from spmd_infer.parallel import symm_all_reduce

    group = SimpleNamespace(group_name="tp0")
    peers = PushPeers(torch.zeros(2, dtype=torch.int64), torch.zeros(2, dtype=torch.int64),
                      torch.zeros(4, dtype=torch.int32), 0, 2, 4, 64)
    monkeypatch.setattr(symm_all_reduce, "_by_group", {"tp0": SymmetricAllReduce(
        "tp0", 2, torch.empty(16, dtype=torch.bfloat16), push=PushBuffers(peers, torch.bfloat16, ()))})
    assert all_reduce_path(group, 2) == "symmetric+push"
    symm_all_reduce._by_group["tp0"].push = None
    assert all_reduce_path(group, 2) == "symmetric"
    assert all_reduce_path(group, 1) == "none"


def test_norm_reduces_partial_sums_it_is_given():
    """A row-parallel layer's PartialSums reach the RMSNorm after it, which sums them (here over one rank: as they
    were) before the norm, with and without the residual."""
    norm = RMSNorm(64, 1e-6)
    norm.weight.data.normal_()
    x, residual = torch.randn(3, 64), torch.randn(3, 64)
    partial = PartialSums(x.clone(), Shard())
    assert torch.equal(norm(partial), norm(x))
    got, want = norm(partial, residual), norm(x, residual)
    assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])


@pytest.mark.parametrize("name,architecture", [("llama", "LlamaForCausalLM"), ("qwen3moe", "Qwen3MoeForCausalLM"),
                                               ("qwen2moe", "Qwen2MoeForCausalLM"), ("mixtral", "MixtralForCausalLM"),
                                               ("dsv2", "DeepseekV2ForCausalLM")])
def test_layers_leave_their_reduce_to_the_next_norm(name, architecture):
    """Under TP the output reduce of attention's o_proj and of the MLP or MoE moves into the next RMSNorm; under DP
    attention attention's does, and the MLP's layers do not reduce at all (the DP gather sums them, in the next norm
    where it can). Reduces inside a block (routed and shared experts, summed before their one reduce) are
    not counted: they do not reduce."""
    from support.tiny_models import _configs

    from spmd_infer.models.registry import model_class
    from spmd_infer.parallel.sharding import LayerSharding

    config = _configs()[name]
    config.architectures = [architecture]
    tp = Shard(0, 2)
    for dp_attention in (False, True):
        sharding = LayerSharding(attn=tp, mlp=Shard(0, 4) if dp_attention else tp, dp=Shard(0, 2),
                                 dp_attention=dp_attention, moe="tp")
        for layer in model_class(config)(config, sharding).model.layers:
            flags = [m.reduce_in_norm for m in layer.modules() if hasattr(m, "reduce_in_norm") and m.reduce]
            assert flags and all(flags), (name, dp_attention, flags)
            if dp_attention:
                mlp_reduces = [m.reduce for m in layer.mlp.modules() if hasattr(m, "reduce_in_norm")]
                assert mlp_reduces and not any(mlp_reduces), (name, mlp_reduces)


def test_setup_on_cpu_stays_on_gloo_or_says_what_to_change():
    cpu = torch.device("cpu")
    assert not enable_symmetric_all_reduce("auto", None, 2, cpu, torch.float32, MIB)
    assert not enable_symmetric_all_reduce("nccl", None, 2, cpu, torch.float32, MIB)
    assert not enable_symmetric_all_reduce("symmetric", None, 1, cpu, torch.float32, MIB)  # no TP: nothing to do
    with pytest.raises(ValueError, match="needs CUDA GPUs.*parallel.all_reduce=auto or nccl"):
        enable_symmetric_all_reduce("symmetric", None, 2, cpu, torch.float32, MIB)
    with pytest.raises(ValueError, match="must be one of auto, nccl, symmetric"):
        enable_symmetric_all_reduce("custom", None, 2, cpu, torch.float32, MIB)
    assert symmetric_all_reduce_for(None) is None
    assert ONE_SHOT_MAX_BYTES < MAX_BUFFER_BYTES


def test_allocation_failing_on_one_rank_leaves_every_rank_on_its_fallback():
    """Symmetric memory (faked on CPU ranks) whose allocation fails on one rank: every rank gets no buffers and none
    waits in a rendezvous the failed rank never joins (the timeout turns such a hang into a failure)."""
    proc = torchrun(2, [str(REPO / "tests" / "support" / "symm_setup_worker.py")], timeout=120, cwd=REPO)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    assert "SYMMETRIC SETUP OK" in proc.stdout


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs 2 CUDA GPUs on one host")
def test_sums_match_nccl_on_two_gpus():
    env = {"NCCL_NVLS_ENABLE": "0", "TORCH_SYMM_MEM_DISABLE_MULTICAST": "1"}
    proc = torchrun(2, [str(REPO / "tests" / "support" / "symm_all_reduce_worker.py")], timeout=240, cwd=REPO,
                    env=env, gpus=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    assert "SYMMETRIC ALL-REDUCE OK" in proc.stdout

"""DP attention's exchanges on the push kernel (parallel/dp_exchange.py, layers/dp_attention.py): the layer's wiring
and the setup rules on the CPU; on 2 CUDA GPUs, the gather and the reduce-scatter ending in the norm against NCCL's
path, eagerly and inside CUDA graphs."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from spmd_infer.forward_batch import ForwardBatch
from spmd_infer.layers import dp_attention
from spmd_infer.layers.layernorm import RMSNorm
from spmd_infer.parallel.comm import Shard
from spmd_infer.parallel.dp_exchange import (PushDPExchange, dp_exchange_path, enable_push_dp_exchange,
                                             push_dp_exchange_for)
from spmd_infer.parallel.push_all_reduce import PushBuffers
from spmd_infer.parallel.sharding import LayerSharding
from spmd_kernels.push_all_reduce import PushPeers
from tests.support.launch import REPO, torchrun


DEVICE = "cuda" if torch.cuda.is_available() else "cpu"  # the kernels: Triton's interpreter without CUDA


def one_rank_exchange(max_rows: int, width: int) -> tuple[PushDPExchange, list]:
    """A one-rank group's push buffers (its own slots only), as symmetric memory would map them."""
    held = []

    def buffers():
        data = torch.zeros(2, 1, max_rows, width, device=DEVICE)
        flags = torch.zeros(3, max_rows, dtype=torch.int32, device=DEVICE)
        held.extend((data, flags))
        peers = PushPeers(torch.tensor([data.data_ptr()], device=DEVICE),
                          torch.tensor([flags.data_ptr()], device=DEVICE),
                          torch.zeros(max_rows, dtype=torch.int32, device=DEVICE), 0, 1, max_rows, width)
        return PushBuffers(peers, torch.float32, ())

    return PushDPExchange(buffers(), buffers(), 1), held


class RecordingMLP(torch.nn.Module):
    """Scales its rows, recording what reached it (a stand-in for the all-rank-sharded MLP's partial output)."""

    def forward(self, x, batch, valid=None):
        self.seen = (x.clone(), None if valid is None else valid.clone())
        return 0.5 * x


def test_push_path_gathers_padded_rows_and_leaves_the_reduce_to_the_norm(monkeypatch):
    """With the push path the MLP gets the rows with their marks (CUDA graphs' padding rows marked off), and the
    decoder layer's next RMSNorm receives ScatterSums, which it sums and norms in one kernel: the same bits as the
    MLP's output normed after the residual add."""
    exchange, _held = one_rank_exchange(8, 64)
    monkeypatch.setattr(dp_attention, "push_dp_exchange_for", lambda group: exchange)
    gather = dp_attention.DPGatherScatter(LayerSharding(attn=Shard(), mlp=Shard(), dp=Shard(), dp_attention=True))
    x = torch.randn(5, 64, device=DEVICE)
    valid = torch.tensor([True, True, False, True, False], device=DEVICE)
    ids = torch.zeros(5, dtype=torch.int64, device=DEVICE)
    batch = ForwardBatch(input_ids=ids, positions=ids, is_prefill=False,
                         cu_seqlens_q=torch.zeros(6, dtype=torch.int32, device=DEVICE),
                         context_lens=torch.zeros(5, dtype=torch.int32, device=DEVICE), slot_mapping=None,
                         block_tables=None, logits_indices=ids[:0], dp_meta=None, dp_num_tokens=[5],
                         token_valid=valid)
    mlp = RecordingMLP()
    sums = gather(mlp, x, batch)
    assert isinstance(sums, dp_attention.ScatterSums) and sums.count == 5
    assert torch.equal(mlp.seen[0], x) and torch.equal(mlp.seen[1], valid)
    norm = RMSNorm(64, 1e-6).to(DEVICE)
    norm.weight.data.normal_()
    residual = torch.randn(5, 64, device=DEVICE)
    got, want = norm(sums, residual), norm(0.5 * x, residual)
    assert torch.equal(got[1], want[1]) and torch.allclose(got[0], want[0], atol=1e-5, rtol=1e-5)
    assert torch.equal(norm(gather(mlp, x, batch)), norm(0.5 * x))  # no residual: reduced, then normed


def test_buffers_serve_only_launches_they_were_sized_for():
    """A later job in the same process reuses a group's push buffers only for rows, widths and a dtype they hold:
    wider elements would overflow their slots."""
    buffers = one_rank_exchange(8, 64)[0].gather
    assert buffers.fits(8, 64, torch.float32) and buffers.fits(1, 16, torch.float32)
    assert not buffers.fits(9, 64, torch.float32) and not buffers.fits(8, 65, torch.float32)
    assert not buffers.fits(8, 64, torch.bfloat16)


def test_setup_on_cpu_stays_on_gloo_or_says_what_to_change():
    cpu = torch.device("cpu")
    dims = SimpleNamespace(dp=2, tp=1, dp_attention=True, world_group=None, dp_group=None)
    assert not enable_push_dp_exchange("auto", dims, cpu, torch.float32, 256, 64)
    assert not enable_push_dp_exchange("nccl", dims, cpu, torch.float32, 256, 64)
    with pytest.raises(ValueError, match="needs CUDA GPUs.*parallel.all_reduce=auto or nccl"):
        enable_push_dp_exchange("symmetric", dims, cpu, torch.float32, 256, 64)
    for off in (SimpleNamespace(dp=2, tp=1, dp_attention=False), SimpleNamespace(dp=1, tp=2, dp_attention=True)):
        assert not enable_push_dp_exchange("symmetric", off, cpu, torch.float32, 256, 64)  # nothing to exchange
    assert push_dp_exchange_for(None) is None
    assert dp_exchange_path(None, False) == "none"


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs 2 CUDA GPUs on one host")
def test_exchanges_match_nccl_on_two_gpus():
    env = {"NCCL_NVLS_ENABLE": "0", "TORCH_SYMM_MEM_DISABLE_MULTICAST": "1"}
    proc = torchrun(2, [str(REPO / "tests" / "support" / "dp_exchange_worker.py")], timeout=240, cwd=REPO, env=env,
                    gpus=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    assert "PUSH DP EXCHANGE OK" in proc.stdout

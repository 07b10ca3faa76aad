"""One rank of the push DP-exchange test on CUDA GPUs (tests/test_dp_exchange.py launches it under torchrun, dp2 with
DP attention): the decoder layer's gather, MLP and next RMSNorm through the push path against NCCL's path on the same
values, bit for bit, at equal and unequal token counts, eagerly and replayed from a CUDA graph with padding rows."""

from __future__ import annotations

from types import SimpleNamespace

import torch
import torch.distributed as dist
from cuda_rank import init_cuda_rank

from spmd_infer.forward_batch import ForwardBatch
from spmd_infer.layers import dp_attention
from spmd_infer.layers.layernorm import RMSNorm
from spmd_infer.parallel.comm import Shard
from spmd_infer.parallel.dp_exchange import enable_push_dp_exchange, push_dp_exchange_for
from spmd_infer.parallel.sharding import LayerSharding

HIDDEN = 2048


class ScaleByRank(torch.nn.Module):
    """Each rank's 'partial output' is its rows times its own factor (an elementwise MLP: the same bits whatever rows
    surround a row, so the two paths' sums can be compared exactly); marks off padding rows as the MoE would."""

    def __init__(self, rank: int):
        super().__init__()
        self.factor = 0.75 + 0.5 * rank

    def forward(self, x, batch, valid=None):
        out = x * self.factor
        return out if valid is None else out * valid.unsqueeze(1)


def batch_of(counts: list[int], rank: int, device, token_valid=None) -> ForwardBatch:
    n = counts[rank]
    zeros = torch.zeros(n, dtype=torch.int64, device=device)
    return ForwardBatch(input_ids=zeros, positions=zeros, is_prefill=False,
                        cu_seqlens_q=torch.zeros(n + 1, dtype=torch.int32, device=device),
                        context_lens=torch.zeros(n, dtype=torch.int32, device=device), slot_mapping=None,
                        block_tables=None, logits_indices=zeros[:0], dp_meta=None, dp_num_tokens=counts,
                        token_valid=token_valid)


def main() -> None:
    rank, world, device, group = init_cuda_rank()
    dims = SimpleNamespace(dp=world, tp=1, dp_attention=True, world_group=group, dp_group=group)
    assert enable_push_dp_exchange("symmetric", dims, device, torch.bfloat16, 256, HIDDEN)
    push = push_dp_exchange_for(group)
    sharding = LayerSharding(attn=Shard(), mlp=Shard(rank, world, group), dp=Shard(rank, world, group),
                             dp_attention=True)
    layer = dp_attention.DPGatherScatter(sharding)
    mlp = ScaleByRank(rank)
    norm = RMSNorm(HIDDEN, 1e-5).to(device=device, dtype=torch.bfloat16)
    norm.weight.data.normal_(1.0, 0.1, generator=torch.Generator(device=device).manual_seed(3))

    def both_paths(x, residual, batch):
        got = norm(layer(mlp, x, batch), residual)
        with_push = dp_attention.push_dp_exchange_for
        dp_attention.push_dp_exchange_for = lambda g: None  # NCCL's path on the same values
        try:
            want = norm(layer(mlp, x, batch), residual)
        finally:
            dp_attention.push_dp_exchange_for = with_push
        return got, want

    for counts in ([3, 5], [1, 1], [64, 64], [200, 17], [256, 1]):
        g = torch.Generator(device=device).manual_seed(10 * sum(counts) + rank)
        x = torch.randn(counts[rank], HIDDEN, device=device, generator=g).to(torch.bfloat16)
        residual = torch.randn(counts[rank], HIDDEN, device=device, generator=g).to(torch.bfloat16)
        got, want = both_paths(x, residual, batch_of(counts, rank, device))
        assert torch.equal(got[1], want[1]) and torch.equal(got[0], want[0]), f"counts {counts}"
    assert not push.gather.peers.max_rows < 256
    # Past the buffers (a prefill chunk): NCCL's path, a tensor rather than sums left for the norm.
    big = [300, 300]
    assert isinstance(layer(mlp, torch.zeros(300, HIDDEN, dtype=torch.bfloat16, device=device),
                            batch_of(big, rank, device)), torch.Tensor)

    # Inside a CUDA graph, as decode replays it: a full bucket on every rank, padding rows marked off.
    bucket = 16
    x_in = torch.zeros(bucket, HIDDEN, dtype=torch.bfloat16, device=device)
    r_in = torch.zeros_like(x_in)
    valid_in = torch.ones(bucket, dtype=torch.bool, device=device)
    batch = batch_of([bucket] * world, rank, device, valid_in)
    stream = torch.cuda.Stream()
    with torch.cuda.stream(stream):
        norm(layer(mlp, x_in, batch), r_in)  # warm
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph, stream=stream):
        y1, h1 = norm(layer(mlp, x_in, batch), r_in)
        y2, h2 = norm(layer(mlp, y1, batch), h1)  # two layers a replay
    for step in range(3):
        g = torch.Generator(device=device).manual_seed(1000 + 10 * step + rank)
        x_in.copy_(torch.randn(bucket, HIDDEN, device=device, generator=g).to(torch.bfloat16))
        r_in.copy_(torch.randn(bucket, HIDDEN, device=device, generator=g).to(torch.bfloat16))
        valid_in.copy_(torch.arange(bucket, device=device) < bucket - 3 - step - rank)
        graph.replay()
        w1 = both_paths(x_in, r_in, batch)[1]
        w2 = both_paths(w1[0], w1[1], batch)[1]
        assert all(torch.equal(a, b) for a, b in ((y1, w1[0]), (h1, w1[1]), (y2, w2[0]), (h2, w2[1]))), \
            f"graph replay {step}"
    dist.barrier(group=group)
    if rank == 0:
        print("PUSH DP EXCHANGE OK")
    dist.destroy_process_group()


if __name__ == "__main__":
    main()

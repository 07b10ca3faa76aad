"""Milliseconds per step of the sampler's parts on one GPU at a real vocabulary: each filter (temperature, top-k,
top-p, min-p and their mixes as checkpoints' generation_config.json set them) and the repetition / presence /
frequency penalties, at several batch sizes. Wall time per call with the GPU kept busy (a host sync inside a call
shows up here as the GPU's queued work waited for), and the GPU's own time from events.

    python3 tests/gpu/bench_sampler.py [--vocab 151936] [--batches 16,64,256] [--context 1024]
"""

from __future__ import annotations

import argparse
import time

import torch

from spmd_infer.layers.sampler import SamplingTensors, sample
from spmd_infer.sampling_params import SamplingParams

# name -> SamplingParams fields: the filters real checkpoints ask for by default
FILTERS = {
    "greedy": dict(temperature=0.0),
    "temperature 0.7": dict(temperature=0.7),
    "top_p 0.9 (Llama-3)": dict(temperature=0.6, top_p=0.9),
    "top_k 20 top_p 0.95 (Qwen3)": dict(temperature=0.6, top_k=20, top_p=0.95),
    "top_k 50": dict(temperature=1.0, top_k=50),
    "min_p 0.05": dict(temperature=1.0, min_p=0.05),
}


def timed(fn, iters: int = 20) -> tuple[float, float]:
    """(wall ms, GPU ms) per call, after two warm calls; a GPU busy-wait ahead of each call keeps work queued."""
    for _ in range(2):
        fn()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    wall = gpu = 0.0
    for _ in range(iters):
        torch.cuda._sleep(200_000)  # ~0.1 ms of queued GPU work: a sync inside fn waits for it
        torch.cuda.synchronize()
        torch.cuda._sleep(200_000)
        t0 = time.perf_counter()
        start.record()
        fn()
        end.record()
        t1 = time.perf_counter()
        torch.cuda.synchronize()
        wall += t1 - t0
        gpu += start.elapsed_time(end)
    return wall / iters * 1e3, gpu / iters


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--vocab", type=int, default=151936)
    ap.add_argument("--batches", default="16,64,256")
    ap.add_argument("--context", type=int, default=1024, help="tokens per sequence for the penalties")
    args = ap.parse_args()
    dev = torch.device("cuda")
    print(f"device {torch.cuda.get_device_name()}, vocab {args.vocab}; wall ms (host, sync-inclusive) / GPU ms")
    for S in [int(b) for b in args.batches.split(",")]:
        g = torch.Generator(device=dev).manual_seed(S)
        logits = (torch.randn(S, args.vocab, device=dev, generator=g) * 3).to(torch.bfloat16)
        for name, fields in FILTERS.items():
            params = [SamplingParams(**fields)] * S
            def step():
                t = SamplingTensors.build(params, list(range(S)), [7] * S, dev)
                sample(logits.float() if not params[0].greedy else logits, t)
            wall, gpu = timed(step)
            print(f"S={S:4d}  {name:32s} {wall:7.3f} / {gpu:7.3f}")
        run_penalties(S, logits, args.context, dev)
        x = logits.float()
        for k in (20, 256, 1024):
            wall, gpu = timed(lambda: torch.topk(x, k, dim=-1))
            print(f"S={S:4d}  {'torch.topk k=' + str(k):32s} {wall:7.3f} / {gpu:7.3f}")
        wall, gpu = timed(lambda: torch.sort(x, dim=-1, descending=True))
        print(f"S={S:4d}  {'torch.sort':32s} {wall:7.3f} / {gpu:7.3f}")


def run_penalties(S: int, logits: torch.Tensor, context: int, dev: torch.device) -> None:
    """The penalties as the model runner applies them (counts on the device: engine/penalty_state.py, built once,
    then each step's penalty pass and its sampled tokens counted), each sequence `context` tokens, half of them
    output."""
    from spmd_infer.engine.penalty_state import PenaltyState
    gen = torch.Generator().manual_seed(S)
    vocab = logits.shape[1]
    for name, fields in {"repetition 1.05": dict(repetition_penalty=1.05),
                         "presence 0.5 frequency 0.5": dict(presence_penalty=0.5, frequency_penalty=0.5)}.items():
        seqs = [_FakeSeq(torch.randint(0, vocab, (context,), generator=gen).tolist(), context // 2,
                         SamplingParams(temperature=0.0, **fields)) for _ in range(S)]
        state = PenaltyState(dev)
        tokens = logits.argmax(dim=-1)
        def step():
            x = logits.float()
            penalties = state.prepare(seqs, vocab)
            state.apply(x, penalties)
            state.record(penalties, tokens)
        wall, gpu = timed(step)
        print(f"S={S:4d}  {name:32s} {wall:7.3f} / {gpu:7.3f}")


class _FakeSeq:
    """What the penalties read of a Sequence."""

    def __init__(self, ids: list[int], num_prompt: int, sampling: SamplingParams):
        self.token_ids = ids
        self.num_prompt_tokens = num_prompt
        self.sampling = sampling
        self.status = None
        self.id = id(self)


if __name__ == "__main__":
    main()

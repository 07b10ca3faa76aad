"""GPU probe: is a graphed decode step bound by the GPU or by the host? Times the captured decode graphs replayed back
to back (CUDA events, no host work between them) beside the benchmark's own step times, per bucket.

A decode step under CUDA graphs is one cudaGraphLaunch of every layer's kernels (~250 nodes for a 28-layer model)
plus the step's Python (scheduling, packing, upload, sampling's bookkeeping); with runtime.overlap_steps that host
work overlaps the previous step's GPU work. If replays back to back take about the bench's step time, the step is
GPU-bound; if they take much less, the host sets the pace.

usage (on a GPU machine, in the repo root, after `source tests/gpu/device_env.sh`):
  python tests/gpu/time_graph_replay.py bench.preset=qwen3-0.6b bench.workload=decode 'bench.batch_sizes=[1,16]'
"""

from __future__ import annotations

import collections
import sys

import torch

from spmd_infer.bench import __main__ as bench_main
from spmd_infer.engine.cuda_graphs import DecodeGraphs

AFTER_CALLS = 20  # replays of a bucket before it is timed (warm caches, steady clocks)
BACK_TO_BACK = 50
replay_ms: dict[int, float] = {}
calls: collections.Counter = collections.Counter()
_replay = DecodeGraphs.replay


def _timed_replay(self: DecodeGraphs, bucket: int, num_rows: int) -> torch.Tensor:
    """The engine's replay; the AFTER_CALLS-th of a bucket also replays it BACK_TO_BACK times between two events. The
    extra replays rewrite the same slots of the cache with the same values, so the run's outputs are unchanged."""
    calls[bucket] += 1
    if calls[bucket] == AFTER_CALLS and bucket not in replay_ms:
        graph = self.graphs[bucket]
        torch.cuda.synchronize(self.device)
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(BACK_TO_BACK):
            graph.replay()
        end.record()
        end.synchronize()
        replay_ms[bucket] = start.elapsed_time(end) / BACK_TO_BACK
    return _replay(self, bucket, num_rows)


if __name__ == "__main__":
    DecodeGraphs.replay = _timed_replay
    try:
        bench_main.main()  # Hydra reads the overrides from sys.argv
    finally:
        for bucket, ms in sorted(replay_ms.items()):
            print(f"REPLAY bucket {bucket}: {ms:.3f} ms a replay, back to back ({BACK_TO_BACK} replays)")
        sys.stdout.flush()

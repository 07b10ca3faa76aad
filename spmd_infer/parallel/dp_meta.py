"""The per-step DP metadata: each rank's fixed-shape row, all-gathered over the DP group into DPMeta."""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass, field
from typing import Optional

import torch
import torch.distributed as dist

from .shm_exchange import ShmAllGather


class Phase(enum.IntEnum):
    IDLE = 0
    PREFILL = 1
    DECODE = 2


class Field(enum.IntEnum):
    """Columns of the metadata row; one int64 each."""

    NUM_TOKENS = 0  # tokens this rank runs in this step (0 when idle)
    NUM_SEQS = 1  # sequences in this step's batch
    PHASE = 2  # Phase
    UNFINISHED = 3  # requests assigned to this rank and not yet finished (running + waiting)
    FREE_BLOCKS = 4  # free KV blocks after scheduling this step
    FINISHED = 5  # requests this rank has finished so far (for global progress)
    CAN_GRAPH = 6  # 1 if this batch could replay a captured CUDA graph
    LOAD_TOKENS = 7  # KV tokens held + prompt tokens waiting: the load used for assignment
    OUTPUT_TOKENS = 8  # tokens generated so far by this rank (progress, tok/s)
    STOP_REQUESTED = 9  # number of a signal (SIGTERM, SIGINT) that asked this rank to stop, else 0 (stop.py)
    WORK_US = 10  # microseconds from this rank's previous exchange to this one: its own work (see wait_seconds)
    SETTLES_PREFILL = 11  # 1 if this step waits for an overlapped prefill's first tokens (runtime.overlap_prefill)


NUM_FIELDS = len(Field)


@dataclass
class DPMeta:
    """Every DP rank's row for this step, identical on all ranks after the all-gather."""

    rows: torch.Tensor  # [dp, NUM_FIELDS] int64 on the CPU
    dp_rank: int
    exchange_seconds: float = 0.0
    """Wall time of the exchange on this rank, waiting for slower DP ranks included."""
    wait_seconds: float = 0.0
    """The part of exchange_seconds spent waiting for DP ranks whose last step took longer than this
    rank's (load imbalance, lockstep); the rest is the collective's own cost."""
    _columns: Optional[list[list[int]]] = field(default=None, repr=False, compare=False)

    def column(self, f: Field) -> list[int]:
        if self._columns is None:  # read several times per step: one conversion, then plain lists
            self._columns = self.rows.t().tolist()
        return list(self._columns[f])

    @property
    def dp(self) -> int:
        return self.rows.shape[0]

    @property
    def any_work(self) -> bool:
        return any(v > 0 for v in self.column(Field.NUM_TOKENS))

    @property
    def any_unfinished(self) -> bool:
        return any(v > 0 for v in self.column(Field.UNFINISHED))

    @property
    def max_tokens(self) -> int:
        """Largest per-rank token count: the padded size wherever shapes must agree across DP."""
        return max(self.column(Field.NUM_TOKENS))

    @property
    def num_tokens(self) -> list[int]:
        return self.column(Field.NUM_TOKENS)

    def get(self, f: Field, dp_rank: int | None = None) -> int:
        self.column(f)
        return self._columns[f][self.dp_rank if dp_rank is None else dp_rank]

    @property
    def all_can_graph(self) -> bool:
        return all(v > 0 for v in self.column(Field.CAN_GRAPH))


def make_row(**values: int) -> torch.Tensor:
    row = [0] * NUM_FIELDS
    for name, v in values.items():
        row[Field[name.upper()]] = int(v)
    return torch.tensor(row, dtype=torch.int64)


class DPMetaExchange:
    """One all-gather over the DP group per step; the only per-step collective outside the forward."""

    def __init__(self, group: dist.ProcessGroup, dp: int, dp_rank: int, device: torch.device,
                 shm: Optional[ShmAllGather] = None):
        self.group = group
        self.shm = shm  # DP group on one host: the rows go through shared memory instead (shm_exchange.py)
        self.dp = dp
        self.dp_rank = dp_rank
        self.device = device
        self.stop_requested = 0  # set by the job when a signal asks this rank to stop; sent in every row
        self._last_end: Optional[float] = None  # when this rank's previous exchange returned
        collective = dp > 1 and shm is None  # the buffers and the stream below serve the collective alone
        cuda = collective and device.type == "cuda"
        # NCCL needs device tensors; gloo works on host tensors. Buffers are reused every step.
        self._send = torch.zeros(NUM_FIELDS, dtype=torch.int64, device=device) if collective else None
        self._recv = torch.zeros(dp * NUM_FIELDS, dtype=torch.int64, device=device) if collective else None
        # Pinned host ends for the two copies, so that they are plain async copies on the exchange's stream.
        self._host_send = torch.zeros(NUM_FIELDS, dtype=torch.int64, pin_memory=True) if cuda else None
        self._host_recv = torch.zeros(dp * NUM_FIELDS, dtype=torch.int64, pin_memory=True) if cuda else None
        # On CUDA the exchange runs on a stream of its own: a collective waits for the work queued on the
        # stream it is issued from, and the metadata must not wait for a forward still running there
        # (overlapped steps launch the next step while the GPU computes the last one).
        self._stream = torch.cuda.Stream(device) if cuda else None

    @property
    def transport(self) -> str:
        if self.dp == 1:
            return "none (dp=1)"
        return "host shared memory" if self.shm is not None else f"{dist.get_backend(self.group)} all-gather"

    def set_timeout(self, seconds: float) -> None:
        """How long a shared-memory exchange waits for a live DP rank (the collective's timeout is the group's)."""
        if self.shm is not None:
            self.shm.timeout_s = seconds

    def gather(self, row: torch.Tensor) -> DPMeta:
        start = time.perf_counter()
        row[Field.STOP_REQUESTED] = self.stop_requested
        # Every rank leaves a collective at about the same moment, so the time since the last one is this
        # rank's own work; the slowest rank's work minus ours is how long we wait in this one.
        row[Field.WORK_US] = int((start - self._last_end) * 1e6) if self._last_end is not None else 0
        if self.dp == 1:
            rows = row.view(1, NUM_FIELDS).clone()
        elif self.shm is not None:
            rows = torch.from_numpy(self.shm.all_gather(row.numpy()))
        elif self._stream is not None:
            self._host_send.copy_(row)  # free to overwrite: the last exchange synchronised its stream
            with torch.cuda.stream(self._stream):
                self._send.copy_(self._host_send, non_blocking=True)
                dist.all_gather_into_tensor(self._recv, self._send, group=self.group)
                self._host_recv.copy_(self._recv, non_blocking=True)
            self._stream.synchronize()  # this stream only: the forward queued on the others runs on
            rows = self._host_recv.view(self.dp, NUM_FIELDS).clone()
        else:
            self._send.copy_(row)
            dist.all_gather_into_tensor(self._recv, self._send, group=self.group)
            rows = self._recv.view(self.dp, NUM_FIELDS).cpu()
        self._last_end = time.perf_counter()
        meta = DPMeta(rows=rows, dp_rank=self.dp_rank, exchange_seconds=self._last_end - start)
        work = meta.column(Field.WORK_US)
        meta.wait_seconds = min(meta.exchange_seconds, max(0, max(work) - work[self.dp_rank]) / 1e6)
        return meta

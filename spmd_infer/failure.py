"""When a rank fails or the job is stopped: one report naming the first failing rank, a prompt non-zero exit.

How a failure spreads: the failing rank records its error in the job's c10d store (the first one
recorded wins), writes torchrun's error file, and leaves at once with os._exit. Its peers then see a
closed connection in their next collective (gloo at once; NCCL at the step timeout, or when torchrun
terminates them after the first exit), record nothing since a first failure exists, and exit too.
Rank 0 prints "rank R failed: ..." once for the whole job. Leaving by os._exit is deliberate: tearing
down a process group whose peers are gone can hang (NCCL) or abort the process (gloo: "terminate
called without an active exception"), which would replace a clear exit code by a signal.
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import os
import signal
import sys
import threading
import time
import traceback
from typing import Any, Iterator, NoReturn, Optional

import torch
import torch.distributed as dist

log = logging.getLogger(__name__)

FAULT_ENV, TESTING_ENV = "SPMD_INFER_TEST_FAULT", "SPMD_INFER_TESTING"
# A rank whose capture an injected fault failed waits this long for the others' votes (tests need not wait out
# capture_vote.STRANDED_AFTER_S).
CAPTURE_FAULT_WAIT_S = 10.0
PEER_WAIT_S = 5.0  # how long a rank that lost a peer waits for that peer's own report to arrive
ROOT_CAUSE_GAP_S = 1.1
# How long ranks other than 0 linger after a configuration error before they leave: torchrun ends the job at the
# first rank to exit, and that must not happen before rank 0 (which alone prints the error) has said it.
CONFIG_ERROR_GRACE_S = 5.0
_KEY = "spmd_infer/first_failure"
_job_key = _KEY


class JobStopped(Exception):
    """Every rank agreed to stop after a step because of a signal; finished rows are saved."""

    def __init__(self, signum: int, message: str):
        super().__init__(message)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum  # the shell's convention for "ended by signal N"


def out_of_memory(cfg: Any, where: str, error: BaseException) -> RuntimeError:
    """The error that replaces a CUDA OOM: which settings to lower. The rank then fails as any other.

    Shrinking the batch and going on is not attempted: the OOM can strike after some of the step's
    collectives ran on this rank and not on its peers, and no collective can then be trusted to agree.
    """
    s, c = cfg.scheduler, cfg.cache
    first = str(error).splitlines()[0] if str(error) else type(error).__name__
    return RuntimeError(
        f"out of GPU memory {where} ({first}). Lower scheduler.max_num_batched_tokens (now "
        f"{s.max_num_batched_tokens}) or scheduler.max_num_seqs (now {s.max_num_seqs}), or "
        f"cache.gpu_memory_utilization (now {c.gpu_memory_utilization}) to leave activations more room; then "
        f"rerun the same command, which keeps the rows already finished")


@contextlib.contextmanager
def oom_guard(cfg: Any, where: str) -> Iterator[None]:
    try:
        yield
    except torch.OutOfMemoryError as e:
        raise out_of_memory(cfg, where, e) from e


def begin_job(output: Any) -> None:
    """A store key of this job's own (several jobs may share one launch; torchrun may restart workers)."""
    global _job_key
    _job_key = f"{_KEY}/{os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')}/{output}"


def set_collective_timeout(dims: Any, seconds: float) -> None:
    """The timeout of every collective of the job's groups from now on (phases: see RuntimeConfig)."""
    td = datetime.timedelta(seconds=seconds)
    groups = {id(g): g for g in (dist.group.WORLD, *dims.groups())}
    for group in groups.values():
        try:
            dist.distributed_c10d._set_pg_timeout(td, group)
        except (AttributeError, ValueError, RuntimeError) as e:  # a private API; keep running without it
            log.warning("could not set the collective timeout to %.0f s: %s", seconds, e)
            return


class FaultHook:
    """Test-only: SPMD_INFER_TEST_FAULT=RANK:STEP[:KIND] (raise, oom, sigterm or exit) fails that rank there;
    RANK:BUCKET:capture runs that rank out of memory as it starts capturing the BUCKET-token prefill CUDA graphs
    (before the bucket's warm-up forward and its collectives), and it then waits only CAPTURE_FAULT_WAIT_S for the
    other ranks' votes (engine/capture_vote.py).

    Honoured only with SPMD_INFER_TESTING=1 as well, so a stray variable cannot break a real job.
    """

    def __init__(self, step: int, kind: str):
        self.step, self.kind = step, kind

    @classmethod
    def from_env(cls, rank: int) -> Optional["FaultHook"]:
        spec = os.environ.get(FAULT_ENV)
        if not spec:
            return None
        if os.environ.get(TESTING_ENV) != "1":
            log.warning("ignoring %s (a test hook): %s=1 is not set", FAULT_ENV, TESTING_ENV)
            return None
        parts = spec.split(":")
        if len(parts) not in (2, 3) or parts[2:] not in ([], ["raise"], ["oom"], ["sigterm"], ["exit"], ["capture"]):
            raise ValueError(f"{FAULT_ENV}={spec!r}: expected RANK:STEP[:raise|oom|sigterm|exit] or "
                             "RANK:BUCKET:capture")
        return cls(int(parts[1]), parts[2] if len(parts) == 3 else "raise") if int(parts[0]) == rank else None

    def check(self, step: int) -> None:
        if step != self.step or self.kind == "capture":
            return
        what = f"{FAULT_ENV} at step {step}"
        if self.kind == "oom":
            raise torch.OutOfMemoryError(f"CUDA out of memory (injected by {what})")
        if self.kind == "sigterm":
            os.kill(os.getpid(), signal.SIGTERM)
        elif self.kind == "exit":
            os._exit(1)  # a crash that runs no Python cleanup, as a segfault would
        else:
            raise RuntimeError(f"injected fault ({what})")

    def check_capture(self, bucket: int) -> None:
        if self.kind == "capture" and bucket == self.step:
            raise torch.OutOfMemoryError(f"CUDA out of memory (injected by {FAULT_ENV} in the {bucket}-token prefill "
                                         "graphs' capture)")


def exit_failed(error: BaseException) -> NoReturn:
    """Report `error` (once per job, on rank 0) and leave with exit code 1 without touching collectives."""
    _finish_report_first()
    rank = int(os.environ.get("RANK", "0"))
    _to_log_file(f"rank {rank} failed", error)
    text = f"{type(error).__name__}: {error}".strip()
    logs = _log_file()
    mine = f"rank {rank} failed: {text[:2000]}" + (f" (traceback in {logs})" if logs else "")
    store = _store()
    first = None
    if store is not None:
        if _peer_loss(error):
            first = _wait_for_first(store, PEER_WAIT_S)  # the peer that died first is about to say why
        if first is None:
            first = _claim(store, mine)
    if first is None or first == mine:
        _record(error)  # torchrun prints this file as the job's root cause
    if rank == 0 or store is None and first is None:
        print(f"spmd-infer: {first or mine}", file=sys.stderr)
    if first is not None and first != mine:
        # torchrun names as root cause the failure with the smallest timestamp, in whole seconds, the
        # lowest rank on a tie: leaving a second after the first failure keeps that one the root cause.
        time.sleep(ROOT_CAUSE_GAP_S)
    leave(1)


def exit_config_error(error: BaseException, program: str = "spmd-infer") -> NoReturn:
    """Every rank reached the same verdict before any collective: rank 0 says it once and leaves with exit code 2;
    the others wait up to CONFIG_ERROR_GRACE_S (torchrun ends them sooner, once rank 0 has left), so that a rank
    that got there first cannot make torchrun stop rank 0 before it printed (seen in CI: the job then failed
    without a word)."""
    if int(os.environ.get("RANK", "0")) == 0:
        _finish_report_first()
        print(f"{program}: configuration error: {error}", file=sys.stderr)
    else:
        time.sleep(CONFIG_ERROR_GRACE_S)
    raise SystemExit(2)


def exit_stopped(stopped: JobStopped) -> NoReturn:
    """Every rank stopped after the same step; rank 0 says how to resume (or reports a failure that came first)."""
    _finish_report_first()
    store = _store()
    first = _wait_for_first(store, 0.0) if store is not None else None
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"spmd-infer: {first}" if first else f"spmd-infer: {stopped}", file=sys.stderr)
    leave(1 if first else stopped.exit_code)


def _finish_report_first() -> None:
    """Ignore SIGTERM/SIGINT from here to the exit, which takes a second or two at most.

    torchrun terminates every rank as soon as the first one exits, and the job's handlers are gone by
    now (stop.py restores them when the step loop ends): the rank that prints the failure must not be
    killed half-way through, or the job ends without saying why."""
    if threading.current_thread() is threading.main_thread():
        for s in (signal.SIGTERM, signal.SIGINT):
            signal.signal(s, signal.SIG_IGN)


def _peer_loss(error: BaseException) -> bool:
    """A communication error: most likely a consequence of another rank's failure, not a cause."""
    if isinstance(error, dist.DistError):
        return True
    text = str(error)
    return isinstance(error, RuntimeError) and any(s in text for s in (
        "Connection closed by peer", "Connection reset by peer", "Broken pipe", "Timed out", "timed out", "NCCL"))


def _store() -> Optional[Any]:
    try:
        return dist.distributed_c10d._get_default_store() if dist.is_initialized() else None
    except Exception:  # noqa: BLE001 - reporting must not fail
        return None


def _claim(store: Any, message: str) -> Optional[str]:
    try:
        return store.compare_set(_job_key, "", message).decode()  # the first writer wins
    except Exception:  # noqa: BLE001
        return None


def _wait_for_first(store: Any, seconds: float) -> Optional[str]:
    deadline = time.monotonic() + seconds
    while True:
        try:
            if store.check([_job_key]):
                return store.get(_job_key).decode()
        except Exception:  # noqa: BLE001
            return None
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.1)


def _record(error: BaseException) -> None:
    from torch.distributed.elastic.multiprocessing.errors import ErrorHandler

    try:
        ErrorHandler().record_exception(error)
    except Exception:  # noqa: BLE001
        pass


def _log_file() -> Optional[str]:
    for h in logging.getLogger().handlers:
        if isinstance(h, logging.FileHandler):
            return h.baseFilename
    return None


def _to_log_file(message: str, error: BaseException) -> None:
    # The traceback goes to this rank's log file only: the console shows one line for the whole job.
    record = logging.LogRecord("spmd_infer.failure", logging.ERROR, __file__, 0, "%s:\n%s", None, None)
    record.args = (message, "".join(traceback.format_exception(error)).rstrip())
    for h in logging.getLogger().handlers:
        if isinstance(h, logging.FileHandler):
            h.handle(record)


def leave(code: int) -> NoReturn:
    """End this process now: flush the consoles and log files, then os._exit (no interpreter or C++ teardown)."""
    sys.stdout.flush()
    sys.stderr.flush()
    logging.shutdown()
    os._exit(code)

"""Output shards (one per DP group and run, appended by its TP leader) and their streaming merge in input order.

A shard line is `{"index": I, "row": ROW}` followed by a newline, written in one piece and flushed to the
OS at once, so a killed process leaves at most one torn line at the end of each shard. Readers take a
shard's valid prefix (every line up to the first one that is not complete), and the resume decision
(resume.py) and the merge read shards the same way, so a row is either done in both or in neither.
"""

from __future__ import annotations

import json
import logging
import os
import time
from array import array
from pathlib import Path
from typing import Any, Iterator, Optional

log = logging.getLogger(__name__)

_HEAD = b'{"index": '
_ROW = b', "row": '


def shard_dir_for(output: Path) -> Path:
    """Where a job keeps its partial output: beside the output, so a rerun of the same command finds it."""
    return output.with_name(output.name + ".shards")


def shard_path(shard_dir: Path, run: int, dp_rank: int) -> Path:
    # One file per run and DP group: a rerun never appends after a torn line of an earlier run.
    return shard_dir / f"run{run:03d}-dp{dp_rank:05d}.jsonl"


class ShardWriter:
    """Appends rows; each row reaches the OS at once (survives kill -9), fsync every few rows or seconds."""

    def __init__(self, path: Optional[Path], sync_rows: int = 64, sync_seconds: float = 2.0):
        self.path = path
        self.sync_rows = sync_rows
        self.sync_seconds = sync_seconds
        self._file = None
        self._pending = 0
        self._last_sync = time.monotonic()
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(path, "xb")  # exclusive: two writers on one shard would be a bug

    def write(self, index: int, row: dict[str, Any]) -> None:
        if self._file is None:
            return
        line = b"%s%d%s%s}\n" % (_HEAD, index, _ROW, json.dumps(row, ensure_ascii=False).encode("utf-8"))
        self._file.write(line)
        self._file.flush()  # to the OS now; fsync (for power loss) below, in batches
        self._pending += 1
        if self._pending >= self.sync_rows:
            self.sync()

    def tick(self) -> None:
        """Called once a step: fsync rows that have waited longer than sync_seconds."""
        if self._pending and time.monotonic() - self._last_sync > self.sync_seconds:
            self.sync()

    def sync(self) -> None:
        if self._file is None or not self._pending:
            return
        self._file.flush()
        os.fsync(self._file.fileno())
        self._pending = 0
        self._last_sync = time.monotonic()

    def close(self) -> None:
        if self._file is not None:
            self.sync()
            self._file.close()
            self._file = None

    def abort(self) -> None:
        """On failure: keep what can be kept, never raise (the original error is the one to report)."""
        try:
            self.close()
        except OSError:
            log.exception("could not flush %s; its last rows will be recomputed on resume", self.path)


def _parse(line: bytes) -> Optional[int]:
    """The index of a complete shard line, or None for a torn or foreign one."""
    if not (line.startswith(_HEAD) and line.endswith(b"}\n")):
        return None
    end = line.find(_ROW, len(_HEAD))
    digits = line[len(_HEAD):end]
    return int(digits) if end > 0 and digits.isdigit() else None


def shard_files(shard_dir: Path) -> list[Path]:
    return sorted(shard_dir.glob("*.jsonl")) if shard_dir.is_dir() else []


def scan_shard(path: Path) -> Iterator[tuple[int, int]]:
    """(index, byte offset) of each line of the shard's valid prefix."""
    offset = 0
    with open(path, "rb") as f:
        for line in f:
            index = _parse(line)
            if index is None:
                if line.strip(b"\0\n"):  # a torn tail is expected after a kill; say so once per shard
                    log.warning("%s: ignoring an incomplete line at byte %d and anything after it "
                                "(the job was stopped mid-write); those rows are recomputed", path, offset)
                return
            yield index, offset
            offset += len(line)


def done_rows(shard_dir: Path, num_rows: int) -> bytearray:
    """done[i] == 1 when row i is in a shard's valid prefix."""
    done = bytearray(num_rows)
    for path in shard_files(shard_dir):
        for index, _ in scan_shard(path):
            if index >= num_rows:
                raise ValueError(f"{path} holds row {index} but the input has {num_rows} rows")
            done[index] = 1
    return done


def merge_shards(shard_dir: Path, output: Path, num_rows: int) -> None:
    """Write rows 0..num_rows-1 in input order to `output` atomically (temp file, fsync, rename).

    Bounded memory: one (shard, offset) per row (12 bytes; 120 MB for 10^7 rows), then each row's
    bytes are copied from its shard. Shards hold rows in finishing order, which follows input order
    closely (requests are handed out in order), so the reads are nearly sequential.
    """
    paths = shard_files(shard_dir)
    where = array("i", [-1]) * num_rows
    offsets = array("q", [0]) * num_rows
    for k, path in enumerate(paths):
        for index, offset in scan_shard(path):
            if index >= num_rows:
                raise RuntimeError(f"{path} holds row {index} but the input has {num_rows} rows")
            if where[index] >= 0:
                # Never expected (resume skips done rows); keep the first copy rather than write a row twice.
                log.warning("row %d is in both %s and %s; keeping the first", index, paths[where[index]], path)
                continue
            where[index], offsets[index] = k, offset
    missing = [i for i in range(num_rows) if where[i] < 0]
    if missing:
        raise RuntimeError(f"{len(missing)} of {num_rows} rows are missing from {shard_dir} (first: {missing[:5]}); "
                           f"rerun the same command to compute them")
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(f".{output.name}.tmp{os.getpid()}")
    files = [open(p, "rb") for p in paths]
    try:
        with open(tmp, "wb", buffering=1 << 20) as out:
            for i in range(num_rows):
                f = files[where[i]]
                f.seek(offsets[i])
                line = f.readline()
                out.write(line[line.find(_ROW) + len(_ROW):-2])
                out.write(b"\n")
            out.flush()
            os.fsync(out.fileno())
    finally:
        for f in files:
            f.close()
    os.replace(tmp, output)
    _fsync_dir(output.parent)


def remove_stale_temps(output: Path) -> None:
    """Temp files of a merge that was killed before its rename."""
    for p in output.parent.glob(f".{output.name}.tmp*"):
        p.unlink(missing_ok=True)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)

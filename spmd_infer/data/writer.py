"""Output shards (one per DP group, appended by its TP leader) and their merge into the output in input order."""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any, Iterator, Optional

log = logging.getLogger(__name__)


def shard_dir_for(output: Path) -> Path:
    """Where a job keeps its partial output: beside the output, so a rerun of the same command finds it."""
    return output.with_name(output.name + ".shards")


class ShardWriter:
    """Appends `{"index": i, "row": {...}}` lines; flushes and fsyncs every few rows or seconds."""

    def __init__(self, path: Optional[Path], sync_rows: int = 64, sync_seconds: float = 2.0):
        self.path = path
        self.sync_rows = sync_rows
        self.sync_seconds = sync_seconds
        self._file = None
        self._pending = 0
        self._last_sync = time.monotonic()
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(path, "a", encoding="utf-8")

    def write(self, index: int, row: dict[str, Any]) -> None:
        if self._file is None:
            return
        self._file.write(json.dumps({"index": index, "row": row}, ensure_ascii=False) + "\n")
        self._pending += 1
        if self._pending >= self.sync_rows or time.monotonic() - self._last_sync > self.sync_seconds:
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


def read_shard_rows(shard_dir: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Every complete row in every shard; a torn last line (the job was killed mid-write) is skipped."""
    for path in sorted(shard_dir.glob("*.jsonl")):
        with open(path, encoding="utf-8") as f:
            for line in f:
                if not line.endswith("\n"):
                    break
                rec = json.loads(line)
                yield rec["index"], rec["row"]


def merge_shards(shard_dir: Path, output: Path, num_rows: int) -> None:
    """Write rows 0..num_rows-1 in input order to `output` atomically (temp file, fsync, rename)."""
    rows: dict[int, dict[str, Any]] = {}
    for index, row in read_shard_rows(shard_dir):
        if index in rows:
            raise RuntimeError(f"row {index} appears twice in {shard_dir}; the shards are inconsistent")
        rows[index] = row
    missing = [i for i in range(num_rows) if i not in rows]
    if missing or len(rows) != num_rows:
        raise RuntimeError(f"{len(missing)} of {num_rows} rows are missing from {shard_dir} (first: {missing[:5]})")
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(f".{output.name}.tmp{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as f:
        for i in range(num_rows):
            f.write(json.dumps(rows[i], ensure_ascii=False) + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, output)
    _fsync_dir(output.parent)
    shutil.rmtree(shard_dir, ignore_errors=True)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)

"""Progress on global rank 0: a tqdm bar on a terminal, a plain line every few seconds in logs (Slurm)."""

from __future__ import annotations

import logging
import os
import sys
import time
from typing import Optional

from .parallel.dp_meta import DPMeta, Field, Phase

log = logging.getLogger(__name__)

COUNT_LINES_UP_TO = 1 << 30  # bytes; counting a larger input's lines would hold up the start for seconds


class Progress:
    """Requests finished over all DP ranks (from DPMeta) with prompt and generated tokens per second."""

    def __init__(self, enabled: bool, interval_s: float = 30.0, input_path: Optional[str] = None,
                 terminal: Optional[bool] = None, already_done: int = 0):
        self.enabled = enabled
        self.already_done = already_done  # rows finished by earlier runs of a resumed job
        self.interval_s = interval_s
        self.started = time.perf_counter()
        self._last_line = self.started
        self._bar = None
        self.prefill_tokens = 0
        self.total = _count_lines(input_path) if enabled and input_path else None
        if terminal is None:
            # A bar redrawn with \r only makes sense on a terminal; Slurm and torchrun --tee write files.
            terminal = sys.stdout.isatty() and sys.stderr.isatty()
        if enabled and terminal:
            from tqdm import tqdm

            self._bar = tqdm(total=self.total, initial=already_done, desc="requests", unit="req", dynamic_ncols=True,
                             file=sys.stderr)

    def update(self, meta: DPMeta, errors: int = 0) -> None:
        """Account one step; `errors`: rows that became error rows so far (they finish at once)."""
        if not self.enabled:
            return
        self.prefill_tokens += sum(t for t, p in zip(meta.column(Field.NUM_TOKENS), meta.column(Field.PHASE))
                                   if p == Phase.PREFILL)
        done = self.already_done + sum(meta.column(Field.FINISHED)) + errors
        output_tokens = sum(meta.column(Field.OUTPUT_TOKENS))
        now = time.perf_counter()
        elapsed = max(now - self.started, 1e-9)
        rates = f"in {self.prefill_tokens / elapsed:.0f} tok/s, out {output_tokens / elapsed:.0f} tok/s"
        if self._bar is not None:
            self._bar.n = done
            self._bar.set_postfix_str(rates, refresh=False)
            self._bar.refresh()
        elif now - self._last_line >= self.interval_s:
            self._last_line = now
            log.info("progress: %s requests done, %s, %d tokens generated, elapsed %s%s",
                     f"{done}/{self.total}" if self.total else done, rates, output_tokens, _clock(elapsed),
                     self._eta(done, elapsed))

    def _eta(self, done: int, elapsed: float) -> str:
        this_run = done - self.already_done  # the rate to extrapolate is this run's
        if not self.total or this_run <= 0 or done >= self.total:
            return ""
        return f", eta {_clock(elapsed * (self.total - done) / this_run)}"

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def _clock(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


def _count_lines(path: str) -> Optional[int]:
    """Non-blank lines of the input (one request each), or None when the file is too large to count quickly."""
    try:
        if os.path.getsize(path) > COUNT_LINES_UP_TO:
            return None
        with open(path, "rb") as f:
            return sum(1 for line in f if line.strip())
    except OSError:
        return None

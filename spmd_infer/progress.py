"""Progress on global rank 0: a tqdm bar on a terminal, a plain line every few seconds in logs (Slurm)."""

from __future__ import annotations

import logging
import sys
import time

log = logging.getLogger(__name__)


class Progress:
    def __init__(self, enabled: bool, interval_s: float = 10.0):
        self.enabled = enabled
        self.interval_s = interval_s
        self.started = time.perf_counter()
        self._last_line = self.started
        self._bar = None
        if enabled and sys.stderr.isatty():
            from tqdm import tqdm

            self._bar = tqdm(desc="requests", unit="req", dynamic_ncols=True)

    def update(self, finished: int, total: int, output_tokens: int) -> None:
        if not self.enabled:
            return
        elapsed = time.perf_counter() - self.started
        rate = output_tokens / max(elapsed, 1e-9)
        if self._bar is not None:
            self._bar.total = total
            self._bar.n = finished
            self._bar.set_postfix_str(f"{rate:.0f} out tok/s", refresh=False)
            self._bar.refresh()
        elif time.perf_counter() - self._last_line >= self.interval_s:
            self._last_line = time.perf_counter()
            log.info("progress: %d/%d requests finished, %d tokens generated, %.1f out tok/s",
                     finished, total, output_tokens, rate)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()

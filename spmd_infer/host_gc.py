"""Keeps Python's cyclic garbage collector off the step loop: the startup heap is frozen, full collections counted.

After startup the interpreter holds ~400k container objects (torch, transformers, Triton, the model's modules),
and a full (generation-2) collection walks all of them: 0.1-0.3 s, during which the host launches nothing and an
overlapped step loop lets the GPU run dry. Frozen (`gc.freeze`), they sit in the permanent generation and a full
collection walks only what the job made since; collections of young objects are unaffected.
"""

from __future__ import annotations

import atexit
import gc
import time

_exit_hook = False


def freeze_startup_heap() -> int:
    """Collect once, then move every object alive now out of the collector's reach (Engine.start, once warm);
    returns how many objects are frozen."""
    global _exit_hook
    gc.collect()
    gc.freeze()
    if not _exit_hook:
        # At exit the interpreter collects what is left; frozen objects it would skip, and Triton's bindings
        # (nanobind) would then report their instances as leaked.
        atexit.register(gc.unfreeze)
        _exit_hook = True
    return gc.get_freeze_count()


def thaw() -> None:
    """Give frozen objects back to the collector: before dropping an engine whose memory must come back
    (reference cycles among its objects are freed only by a collection that can reach them)."""
    gc.unfreeze()


class FullCollections:
    """Counts the full collections that run inside a `with` block, and the seconds they took."""

    def __init__(self):
        self.count = 0
        self.seconds = 0.0
        self._started = 0.0

    def _callback(self, phase: str, info: dict) -> None:
        if info.get("generation") != 2:
            return
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.count += 1
            self.seconds += time.perf_counter() - self._started

    def __enter__(self) -> "FullCollections":
        gc.callbacks.append(self._callback)
        return self

    def __exit__(self, *exc) -> None:
        gc.callbacks.remove(self._callback)

"""Timing helper shared by the benchmark scripts (run as `python benchmarks/NAME.py`)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def best_of(fn: Callable[[], Any], n: int = 3) -> tuple[float, Any]:
    """The fastest of `n` wall-clock runs of `fn`, in seconds, and its last result."""
    out, best = None, float("inf")
    for _ in range(n):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out

"""Helpers shared by the benchmark scripts (run as `python benchmarks/NAME.py`): timing, and writing a result
table between two markers of a docs page."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def best_of(fn: Callable[[], Any], n: int = 3) -> tuple[float, Any]:
    """The fastest of `n` wall-clock runs of `fn`, in seconds, and its last result."""
    out, best = None, float("inf")
    for _ in range(n):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def write_block(doc: Path, name: str, text: str) -> None:
    """Put `text` between the page's `<!-- NAME: start -->` and `<!-- NAME: end -->` markers (appended with them if
    the page has none)."""
    start, end = f"<!-- {name}: start -->", f"<!-- {name}: end -->"
    block = f"{start}\n{text}\n{end}"
    page = doc.read_text()
    pattern = re.escape(start) + ".*?" + re.escape(end)
    page = re.sub(pattern, lambda _: block, page, flags=re.S) if start in page else page + "\n" + block + "\n"
    doc.write_text(page)

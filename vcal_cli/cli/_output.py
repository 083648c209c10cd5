"""Two streams: stdout for results (tables, --json), stderr for progress, notes and errors."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from typing import Any

from rich.console import Console
from rich.progress import track

out = Console()
err = Console(stderr=True)


def progress(enabled: bool = True) -> Callable[..., Iterable[Any]]:
    """A `rich.progress.track` bound to stderr; off under --json or when stderr is not a terminal."""
    return functools.partial(track, console=err, transient=True, disable=not (enabled and err.is_terminal))


def note(message: str) -> None:
    err.print(f"[dim]{message}[/dim]", highlight=False)

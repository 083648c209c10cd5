"""Two streams: stdout for results (tables, --json), stderr for progress, notes, warnings and errors.

Off a terminal (a CI log) the consoles are wide, so tables are not cut to 80 columns, and progress is a
plain line every ~15 s instead of a live bar.
"""

from __future__ import annotations

import sys
import time
import weakref
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from rich.console import Console

LOG_WIDTH = 160  # columns for tables written to a file or a log
LOG_EVERY_S = 15.0  # a progress line at least this often in a log

out = Console(width=None if sys.stdout.isatty() else LOG_WIDTH)
err = Console(stderr=True, width=None if sys.stderr.isatty() else LOG_WIDTH)


class _Loop:
    """A progress loop that is still open; an error line silences its closing line."""

    silent = False


_open: weakref.WeakSet[_Loop] = weakref.WeakSet()


def mark_failed() -> None:
    """An `error:` line is being printed: the loops it interrupted say nothing more (the error stays the last line)."""
    for loop in list(_open):
        loop.silent = True


def _log_track(
    it: Iterable[Any], *, total: float | None = None, description: str = "working", **_: Any
) -> Iterator[Any]:
    """A plain `description: i/total (p%), t s` line on stderr at the start, every LOG_EVERY_S and at the end."""
    if total is None and hasattr(it, "__len__"):
        total = len(it)  # type: ignore[arg-type]
    t0 = last = time.monotonic()
    i = 0
    of = f"/{int(total)}" if total else ""
    print(f"{description}: started ({int(total) if total else '?'} steps)", file=sys.stderr, flush=True)
    loop = _Loop()
    _open.add(loop)
    try:
        for i, x in enumerate(it, 1):
            yield x
            now = time.monotonic()
            if now - last >= LOG_EVERY_S:
                pct = f" ({i / total:.0%})" if total else ""
                print(f"{description}: {i}{of}{pct}, {now - t0:.0f} s", file=sys.stderr, flush=True)
                last = now
    except GeneratorExit:  # the loop ended early (an early-stopped fit): say where, unless an error ended it
        if loop.silent:
            raise
        print(f"{description}: done, stopped at {i}{of} in {time.monotonic() - t0:.1f} s", file=sys.stderr, flush=True)
        raise
    print(f"{description}: done, {i}{of} in {time.monotonic() - t0:.1f} s", file=sys.stderr, flush=True)


def progress(enabled: bool = True) -> Callable[..., Iterable[Any]]:
    """A `rich.progress.track` on a terminal, plain periodic lines in a log; silent when not `enabled` (--json)."""
    if not enabled:
        from vcal_cli._progress import quiet

        return quiet
    if not err.is_terminal:
        return _log_track
    from rich.progress import track

    def live(it: Iterable[Any], **kw: Any) -> Iterable[Any]:
        return track(it, console=err, transient=True, **kw)

    return live


def note(message: str) -> None:
    err.print(f"[dim]{message}[/dim]", highlight=False, soft_wrap=True)


def warn(message: str) -> None:
    """A loud line: numbers that look impossible, data that looks wrong."""
    err.print(f"[bold red]warning:[/bold red] [red]{message}[/red]", highlight=False, soft_wrap=True)


def show_vcal_warnings() -> None:
    """Show the library's `VcalWarning`s (a damaged cache entry rebuilt) as `warning:` lines, every time."""
    import warnings

    from vcal_cli.errors import VcalWarning

    shown = warnings.showwarning
    if getattr(shown, "vcal", False):
        return

    def show(message, category, filename, lineno, file=None, line=None):  # noqa: ANN001, ANN202
        if issubclass(category, VcalWarning):
            warn(str(message))
        else:
            shown(message, category, filename, lineno, file, line)

    show.vcal = True  # type: ignore[attr-defined]
    warnings.showwarning = show
    warnings.simplefilter("always", VcalWarning)

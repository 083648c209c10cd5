"""Map errors to one line on stderr and an exit code; `--debug` or VCAL_DEBUG=1 shows the traceback.

A `VcalError` (bad input) exits 2 with its message; any other exception is a bug in vcal or a library
and exits 1 as `internal error: TYPE: message; rerun with --debug`. Only typer's public API is used.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import typer

from vcal_cli.errors import Terminated, VcalError, WorkerFinished


def debug_enabled(flag: bool = False) -> bool:
    return flag or os.environ.get("VCAL_DEBUG", "") not in ("", "0")


def one_line(text: str) -> str:
    """The text as one printable line: a newline becomes a space, any other character a line splitter or terminal
    would act on (NEL, separators, escapes) is shown escaped, so a hostile value cannot break the one-line error."""
    text = text.replace("\n", " ")
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print `error: message` as one line on stderr and return the Exit to raise."""
    from vcal_cli.cli._output import mark_failed

    mark_failed()
    print(one_line(f"error: {message}"), file=sys.stderr)
    return typer.Exit(code)


@contextmanager
def handle_errors(debug: bool = False) -> Iterator[None]:
    """Inside a command: a VcalError becomes one line and its exit code; other exceptions are bugs. The library's
    warnings (VcalWarning) show as `warning:` lines."""
    from vcal_cli.cli._output import show_vcal_warnings

    show_vcal_warnings()
    try:
        yield
    except (typer.Exit, typer.Abort):
        raise
    except WorkerFinished:  # a torchrun rank > 0 whose share of the extraction is done: rank 0 reports
        raise typer.Exit(0) from None
    except VcalError as e:
        if debug_enabled(debug):
            raise
        raise fail(str(e), e.exit_code) from None
    except KeyboardInterrupt:
        print(file=sys.stderr)  # the signal may have cut a progress line short: the error starts a line of its own
        raise fail(
            "interrupted; nothing partial was written (finished feature shards are kept for the next run)", 130
        ) from None
    except Terminated:
        print(file=sys.stderr)
        raise fail(
            "terminated; nothing partial was written (finished feature shards are kept for the next run)", 143
        ) from None
    except Exception as e:
        if debug_enabled(debug):
            raise
        first = (str(e).strip().splitlines() or [""])[0]
        raise fail(f"internal error: {type(e).__name__}: {first}; rerun with --debug", 1) from None

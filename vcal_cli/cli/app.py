"""The `vcal` command line: typer commands over `vcal_cli.api`.

Start-up imports typer and rich only; torch, timm, matplotlib and pandas load inside the commands that
need them (`vcal --help` stays fast: benchmarks/bench_startup.py).
"""

from __future__ import annotations

import importlib
import os
import signal
import sys
from collections.abc import Sequence
from typing import Any

import typer
from typer.core import TyperGroup

from vcal_cli._version import __version__
from vcal_cli.errors import Terminated

# name: (module, function or typer app, one-line help). Modules load when their command runs, so
# `vcal --help` imports neither torch nor the heads.
COMMANDS: dict[str, tuple[str, str, str]] = {
    "audit": ("audit", "audit_cmd", "Audit a classifier's calibration and write a report."),
    "retrain": ("retrain", "retrain_cmd", "Retrain only the head on cached features and compare it with the original."),
    "features": ("features", "features_cmd", "Export features, logits and labels of one split."),
    "frontier": (
        "frontier",
        "frontier_cmd",
        "Sweep V-TST's rate-distortion-classification frontier on cached features.",
    ),
    "heads": ("heads", "heads_cmd", "List the heads vcal can fit, their papers and defaults."),
    "gate": ("gate", "gate_cmd", "Fail (exit 1) when calibration regressed against a baseline beyond noise."),
    "compare": ("gate", "compare_cmd", "Side-by-side table of reports, reliability diagrams overlaid."),
    "cache": ("cache", "cache_app", "List or clear the feature cache."),
    "hierarchy": ("hierarchy", "hierarchy_app", "Show a class hierarchy."),
}


def _build(name: str) -> Any:
    """The click command for `name`, built by typer from its module on first use."""
    module, attr, _ = COMMANDS[name]
    obj = getattr(importlib.import_module(f"vcal_cli.cli.{module}"), attr)
    if isinstance(obj, typer.Typer):
        cmd = typer.main.get_group(obj)  # a group even with one subcommand (`vcal hierarchy show`)
    else:
        sub = typer.Typer(add_completion=False, pretty_exceptions_show_locals=False)
        sub.command(name)(obj)
        cmd = typer.main.get_command(sub)
    cmd.name = name
    return cmd


_ABORTS = tuple({typer.Abort, getattr(typer.core, "Abort", typer.Abort)})  # one class or two, by typer version


def _mark_failed() -> None:
    from vcal_cli.cli._output import mark_failed

    mark_failed()


class VcalGroup(TyperGroup):
    """Loads each command on first use, and prints typer's own usage errors as one `error:` line (exit 2)
    instead of a boxed panel."""

    def list_commands(self, ctx: Any) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: Any, name: str) -> Any:
        if name not in COMMANDS:
            return None
        if name not in self.commands:
            self.commands[name] = _build(name)
        return self.commands[name]

    def format_commands(self, ctx: Any, formatter: Any) -> None:
        """The command list from the table above: no command module is imported to show it."""
        with formatter.section("Commands"):
            formatter.write_dl([(n, h) for n, (_, _, h) in COMMANDS.items()])

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except typer.TyperException as e:  # click's exceptions (usage errors, bad parameters) derive from it
            if not standalone_mode:
                raise
            ctx = getattr(e, "ctx", None)
            where = f"{ctx.command_path}: " if ctx is not None else ""
            hint = " (see --help)" if ctx is not None else ""
            message = e.format_message() if hasattr(e, "format_message") else str(e)
            _mark_failed()
            from vcal_cli.cli._errors import one_line

            print(one_line(f"error: {where}{message}{hint}"), file=sys.stderr)
            sys.exit(getattr(e, "exit_code", 2))
        except _ABORTS:
            if not standalone_mode:
                raise
            _mark_failed()
            print("error: aborted", file=sys.stderr)
            sys.exit(1)
        except Exception as e:  # a bug outside any command's handler (building a command, parsing)
            from vcal_cli.cli._errors import debug_enabled

            if not standalone_mode or debug_enabled("--debug" in (args or sys.argv)):
                raise
            first = (str(e).strip().splitlines() or [""])[0]
            _mark_failed()
            print(f"error: internal error: {type(e).__name__}: {first}; rerun with --debug", file=sys.stderr)
            sys.exit(1)
        if not standalone_mode:
            return rv
        sys.exit(rv if isinstance(rv, int) else 0)


app = typer.Typer(
    name="vcal",
    cls=VcalGroup,
    rich_markup_mode=None,  # click's plain top-level help: it lists COMMANDS without building them
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
    help="Audit and recalibrate image-classifier checkpoints.",
)


def _version(value: bool) -> None:
    if value:
        print(f"vcal {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
    threads: int | None = typer.Option(
        None,
        "--threads",
        help="CPU threads for torch [default: $VCAL_THREADS, else the cores not busy when vcal starts].",
        show_default=False,
    ),
) -> None:
    """Audit and recalibrate image-classifier checkpoints."""
    from vcal_cli._memory import return_freed_memory
    from vcal_cli._threads import apply_threads
    from vcal_cli.cli._errors import handle_errors

    with handle_errors("--debug" in sys.argv):
        apply_threads(threads)
    return_freed_memory()  # big temporaries go back to the OS when freed (see vcal_cli/_memory.py)


PIPE_COLUMNS = "120"  # help and tables written to a pipe or a log: rich would wrap them at 80 columns


def _terminated(signum: int, frame: Any) -> None:
    raise Terminated()


def main() -> None:
    if not sys.stdout.isatty() and "COLUMNS" not in os.environ:
        os.environ["COLUMNS"] = PIPE_COLUMNS
    signal.signal(signal.SIGTERM, _terminated)  # unwind like Ctrl-C: temp files removed, one line, exit 143
    try:
        app()
    except Terminated:  # before or after a command's own handler (parsing, start-up)
        _mark_failed()
        print("error: terminated", file=sys.stderr)
        sys.exit(143)

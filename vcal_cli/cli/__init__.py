"""The `vcal` command line: typer commands over `vcal_cli.api`."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

import typer
from typer._click import exceptions as click_exc
from typer.core import TyperGroup

from vcal_cli._version import __version__
from vcal_cli.cli.audit import audit_cmd
from vcal_cli.cli.cache import cache_app
from vcal_cli.cli.features import features_cmd
from vcal_cli.cli.frontier import frontier_cmd
from vcal_cli.cli.gate import compare_cmd, gate_cmd
from vcal_cli.cli.heads import heads_cmd
from vcal_cli.cli.hierarchy import hierarchy_app
from vcal_cli.cli.retrain import retrain_cmd


class VcalGroup(TyperGroup):
    """Prints typer's own usage errors as one `error:` line (exit 2) instead of a boxed panel."""

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
        except click_exc.ClickException as e:
            if not standalone_mode:
                raise
            where = f"{e.ctx.command_path}: " if getattr(e, "ctx", None) is not None else ""
            hint = " (see --help)" if isinstance(e, click_exc.UsageError) else ""
            print(f"error: {where}{e.format_message()}{hint}".replace("\n", " "), file=sys.stderr)
            sys.exit(e.exit_code)
        except click_exc.Abort:
            if not standalone_mode:
                raise
            print("error: aborted", file=sys.stderr)
            sys.exit(1)
        if not standalone_mode:
            return rv
        sys.exit(rv if isinstance(rv, int) else 0)


app = typer.Typer(
    name="vcal",
    cls=VcalGroup,
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
) -> None:
    """Audit and recalibrate image-classifier checkpoints."""
    from vcal_cli._memory import return_freed_memory

    return_freed_memory()  # big temporaries go back to the OS when freed (see vcal_cli/_memory.py)


app.command("audit")(audit_cmd)
app.command("retrain")(retrain_cmd)
app.command("features")(features_cmd)
app.command("frontier")(frontier_cmd)
app.command("heads")(heads_cmd)
app.command("gate")(gate_cmd)
app.command("compare")(compare_cmd)
app.add_typer(cache_app, name="cache")
app.add_typer(hierarchy_app, name="hierarchy")


def main() -> None:
    app()

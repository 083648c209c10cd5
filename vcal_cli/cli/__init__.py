"""The `vcal` command line: typer commands over `vcal_cli.api` (the app and its error policy: `cli.app`)."""

from vcal_cli.cli.app import app, main

__all__ = ["app", "main"]

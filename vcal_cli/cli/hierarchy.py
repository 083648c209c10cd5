"""`vcal hierarchy show`: print a class hierarchy as a tree, with its height."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.tree import Tree

from vcal_cli.cli._errors import handle_errors
from vcal_cli.cli._options import DebugOpt
from vcal_cli.cli._output import out
from vcal_cli.hierarchy import load_hierarchy

hierarchy_app = typer.Typer(help="Inspect class hierarchies.", no_args_is_help=True)


@hierarchy_app.command("show")
def show(
    spec: Annotated[
        str,
        typer.Argument(
            help="A .csv (class,parent or class,level1,...) or .json file, or 'cifar100'.", show_default=False
        ),
    ],
    even: Annotated[
        bool,
        typer.Option(
            "--even/--any-depth", help="Require every class at the same depth, as HAFrame and the distance metrics do."
        ),
    ] = True,
    debug: DebugOpt = False,
) -> None:
    """Print the tree and its height; a cycle, two parents or (with --even) uneven leaves exit 2."""
    with handle_errors(debug):
        h = load_hierarchy(spec)
        if even:
            h.distances()  # raises on uneven depth
        root = Tree(f"[bold]{h.source}[/bold]: {len(h.classes)} classes, height {h.height}")
        nodes: dict[tuple[str, ...], Tree] = {(): root}
        for path in h.paths:
            for depth in range(1, len(path) + 1):
                key = path[:depth]
                if key not in nodes:
                    label = path[depth - 1] if depth < len(path) else f"[green]{path[-1]}[/green]"
                    nodes[key] = nodes[key[:-1]].add(label)
        out.print(root)

"""`vcal cache list` and `vcal cache clear`."""

from __future__ import annotations

import json

import typer
from rich.table import Table

from vcal_cli.cli._errors import handle_errors
from vcal_cli.cli._options import CacheDirOpt, JsonOpt
from vcal_cli.cli._output import note, out
from vcal_cli.features import FeatureCache

cache_app = typer.Typer(help="Inspect or empty the feature cache.", no_args_is_help=True)


@cache_app.command("list")
def cache_list(cache_dir: CacheDirOpt = None, as_json: JsonOpt = False) -> None:
    """List cached feature files."""
    with handle_errors():
        cache = FeatureCache(cache_dir)
        entries, orphans = cache.entries(), cache.orphans()
        if as_json:
            rows = [{"key": e.key, "path": str(e.path), "bytes": e.size, **e.info} for e in entries]
            rows += [{"key": None, "path": str(p), "bytes": size, "orphan": what} for p, what, size in orphans]
            print(json.dumps(rows, indent=2))
            return
        t = Table(title=f"feature cache {cache.root} ({len(entries)} entries)", title_justify="left")
        for col in ("key", "checkpoint", "data", "split", "n", "dim", "dtype", "MB", "created"):
            t.add_column(col, justify="right" if col in ("n", "dim", "MB") else "left")
        for e in entries:
            i = e.info
            t.add_row(
                e.key[:12],
                str(i.get("checkpoint", "?")),
                str(i.get("data", "?")),
                str(i.get("split", "?")),
                str(i.get("n", "?")),
                str(i.get("feature_dim", "?")),
                str(i.get("cache_dtype", "float32")),
                f"{e.size / 1e6:.2f}",
                str(i.get("created", "")),
            )
        out.print(t)
        if orphans:
            o = Table(title="left by interrupted runs (`vcal cache clear` removes them)", title_justify="left")
            for col in ("path", "what", "MB"):
                o.add_column(col, justify="right" if col == "MB" else "left")
            for p, what, size in orphans:
                o.add_row(p.name, what, f"{size / 1e6:.2f}")
            out.print(o)


@cache_app.command("clear")
def cache_clear(cache_dir: CacheDirOpt = None) -> None:
    """Delete every cached feature file."""
    with handle_errors():
        cache = FeatureCache(cache_dir)
        left = sum(size for _, _, size in cache.orphans())
        note(f"removed {cache.clear()} entries and {left / 1e6:.2f} MB left by interrupted runs from {cache.root}")

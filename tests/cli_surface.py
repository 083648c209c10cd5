"""Every command's options as users see them in `--help`, option by option: the flags, the type, the default, the
help text, the `--help` panel it is listed under, whether it is required or a switch. `tests/test_cli_surface.py`
compares it with the stored copy (`tests/data/cli_options.json`); `python -m tests.cli_surface --write` rewrites that
copy after a deliberate change."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

STORED = Path(__file__).parent / "data" / "cli_options.json"


ATTRS = (
    "opts",
    "secondary_opts",
    "param_type_name",
    "required",
    "help",
    "is_flag",
    "multiple",
    "hidden",
    "min",
    "max",
    "metavar",
    "count",
    "envvar",
    "rich_help_panel",
)


def _json(v: Any) -> Any:
    return v if v is None or isinstance(v, bool | int | float | str) else repr(v)


def _params(cmd: Any) -> list[dict[str, Any]]:
    """Each parameter's user-visible attributes (typer vendors its own click: read them by name)."""
    out = []
    for p in cmd.params:
        row = {"name": p.name, "default": None if callable(p.default) else _json(p.default)}
        for attr in ATTRS:
            v = getattr(p, attr, None)
            row[attr] = [_json(x) for x in v] if isinstance(v, list | tuple) else _json(v)
        bare = getattr(p, "bare_type", None)
        row["type"] = _json(bare() if callable(bare) else bare)
        out.append(row)
    return out


def surface() -> dict[str, Any]:
    from vcal_cli.cli.app import COMMANDS, _build

    out: dict[str, Any] = {}
    for name in COMMANDS:
        cmd = _build(name)
        if hasattr(cmd, "commands"):
            for sub, c in cmd.commands.items():
                out[f"{name} {sub}"] = {"help": c.help, "params": _params(c)}
        else:
            out[name] = {"help": cmd.help, "params": _params(cmd)}
    return out


if __name__ == "__main__":
    if sys.argv[1:] == ["--write"]:
        STORED.write_text(json.dumps(surface(), indent=1, sort_keys=True) + "\n")
    else:
        print(json.dumps(surface(), indent=1, sort_keys=True))

"""`vcal heads`: the registered heads, their papers and default hyperparameters."""

from __future__ import annotations

import dataclasses
import json

from rich.table import Table

from vcal_cli.cli._options import JsonOpt
from vcal_cli.cli._output import out
from vcal_cli.heads import HEADS


def defaults(name: str) -> dict[str, object]:
    return {f.name: f.default for f in dataclasses.fields(HEADS.get(name).Params) if f.name != "seed"}


def heads_cmd(as_json: JsonOpt = False) -> None:
    """List the heads `vcal retrain --head` can fit."""
    if as_json:
        print(
            json.dumps(
                [
                    {"name": n, "summary": HEADS.describe(n), "paper": HEADS.get(n).paper, "defaults": defaults(n)}
                    for n in HEADS.names()
                ],
                indent=2,
            )
        )
        return
    t = Table(title="heads (vcal retrain --head NAME)", title_justify="left")
    for col in ("head", "what it is", "paper", "defaults"):
        t.add_column(col)
    for n in HEADS.names():
        t.add_row(
            n,
            HEADS.describe(n),
            HEADS.get(n).paper,
            ", ".join(f"{k}={'auto' if v is None else v}" for k, v in defaults(n).items()),
        )
    out.print(t)

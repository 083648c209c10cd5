"""The `vcal frontier` report: frontier.csv (every point), frontier.png and frontier.json, and the terminal table."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from rich.table import Table

from vcal_cli._version import __version__
from vcal_cli.evaluations.frontier import FrontierModule
from vcal_cli.reports.figures import plot_frontier, to_png
from vcal_cli.reports.tables import readable
from vcal_cli.reports.writer import write_files

COLUMNS = (  # every column, with the NLLs, is in frontier.csv
    ("beta", "beta", "g"),
    ("lam", "λ", "g"),
    ("rate", "R", ".2f"),
    ("distortion", "D", ".1f"),
    ("classification", "C", ".3f"),
    ("val_accuracy", "val acc", ".3f"),
    ("val_ece", "val ECE", ".3f"),
    ("test_accuracy", "test acc", ".3f"),
    ("test_ece", "test ECE", ".3f"),
)


@dataclass(kw_only=True)
class FrontierPoint:
    beta: float
    lam: float
    rate: float  # val R, nats
    distortion: float  # val D, nats
    mse: float  # val mean squared reconstruction error per standardised feature
    classification: float  # val C, nats
    val_accuracy: float
    val_ece: float
    val_nll: float
    test_accuracy: float
    test_ece: float
    test_nll: float
    iso_reached: bool | None = None  # iso-classification only: the point's val C matches the target
    module: FrontierModule | None = field(default=None, repr=False)


@dataclass(kw_only=True)
class FrontierResult:
    points: list[FrontierPoint]
    selected: int
    reason: str
    settings: dict[str, Any]
    checkpoint: dict[str, Any]
    written: str | None = None
    warnings: list[str] = dataclasses.field(default_factory=list)

    def rows(self) -> list[dict[str, Any]]:
        return [
            {k: v for k, v in dataclasses.asdict(p).items() if k != "module"} | {"selected": i == self.selected}
            for i, p in enumerate(self.points)
        ]

    def to_dict(self) -> dict[str, Any]:
        return {
            "vcal_version": __version__,
            "checkpoint": self.checkpoint,
            "settings": self.settings,
            "warnings": list(self.warnings),
            "points": self.rows(),
            "selected": {"index": self.selected, "reason": self.reason, **self.rows()[self.selected]},
            "written": self.written,
        }


def _schedule(s: dict[str, Any]) -> str:
    """How the points were fitted, for the table's title."""
    if s.get("warm_epochs"):
        return f"walk: {s['epochs']} epochs, then <= {s['warm_epochs']} at lr {s['warm_lr']:g}"
    return f"{s['epochs']} epochs a point"


def frontier_table(result: Any) -> Table:
    s = result.settings
    t = Table(
        title=f"{s['head']} frontier on {s['data']} (R, D, C in nats on val; Z={s['hidden']}, {_schedule(s)})",
        title_justify="left",
    )
    for _, label, _ in COLUMNS:
        t.add_column(label, justify="right", no_wrap=True)
    for row in result.rows():
        cells = [format(row[k], f) for k, _, f in COLUMNS]
        t.add_row(*cells, style="bold green" if row["selected"] else None)
    return readable(t)


def write_frontier_report(result: Any, out_dir: str | Path, *, inputs: tuple[Path, ...] = ()) -> Path:
    rows = result.rows()
    return write_files(
        out_dir,
        {
            "frontier.png": to_png(plot_frontier(rows)),
            "frontier.csv": pd.DataFrame(rows).to_csv(index=False),
            "frontier.json": json.dumps(result.to_dict(), indent=2) + "\n",
        },
        inputs,
    )

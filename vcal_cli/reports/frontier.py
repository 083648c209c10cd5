"""The `vcal frontier` report: frontier.csv (every point), frontier.png and frontier.json, and the terminal table."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
from rich.table import Table

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


def frontier_table(result: Any) -> Table:
    s = result.settings
    t = Table(
        title=f"{s['head']} frontier on {s['data']} (R, D, C in nats on val; Z={s['hidden']}, {s['epochs']} epochs)",
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

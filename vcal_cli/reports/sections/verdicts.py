"""Each retrained head against the original and temperature scaling: the paired-bootstrap change on test."""

from __future__ import annotations

from vcal_cli.reports.sections.base import Report, Section, TableSpec, no_terminal, register_section
from vcal_cli.reports.summary import VERDICT_METRICS


def _tables(report: Report) -> list[TableSpec]:
    rows = [
        [name, against] + [f"{v[k]['verdict']} ({v[k]['delta']:+.4f})" if k in v else "-" for k in VERDICT_METRICS]
        for name, h in report.get("heads", {}).items()
        for against, v in (h.get("verdicts") or {}).items()
        if against != name
    ]
    cols = ["head", "against", *VERDICT_METRICS.values()]
    caption = "Each head against the original and temperature scaling: change on test, 95% paired bootstrap"
    return [(caption, cols, rows)] if rows else []


# the terminal says each head's verdicts in one line under the table (`vcal retrain`)
register_section(Section(key="verdicts", title="Verdicts per head", tables=_tables, terminal=no_terminal, order=20))

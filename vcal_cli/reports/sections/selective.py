"""Risk and coverage: accuracy of the most confident samples at each coverage, AURC, the risk-coverage curve."""

from __future__ import annotations

from vcal_cli.reports.figures import plot_risk_coverage, to_png
from vcal_cli.reports.sections.base import Raw, Report, Section, TableSpec, heads_of, no_terminal, register_section


def _details(report: Report) -> dict:
    return {n: h["details"] for n, h in heads_of(report).items() if h.get("details")}


def _tables(report: Report) -> list[TableSpec]:
    heads = _details(report)
    if not heads:
        return []
    first = next(iter(heads.values()))
    rows = [
        [f"{float(k.split('_')[1]):.0%}"] + [f"{d['selective'][k]:.4f}" for d in heads.values()]
        for k in first["selective"]
    ]
    rows.append(["AURC"] + [f"{heads_of(report)[n]['metrics']['aurc']:.4f}" for n in heads])
    return [("Selective accuracy: accuracy of the most confident samples at each coverage", ["coverage", *heads], rows)]


def _figures(report: Report, raw: Raw) -> dict[str, bytes]:
    heads = _details(report)
    if not heads:
        return {}
    where = f"{report['data']['name']}:{report['data']['split']}"
    curves = {n: x["risk_coverage"] for n, x in heads.items()}
    return {"risk_coverage.png": to_png(plot_risk_coverage(curves, title=f"Risk-coverage on {where}"))}


# the metrics table already shows selective accuracy and AURC in the terminal
register_section(
    Section(
        key="selective",
        title="Risk and coverage",
        tables=_tables,
        images=("risk_coverage",),
        figures=_figures,
        terminal=no_terminal,
        order=40,
    )
)

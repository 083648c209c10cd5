"""Mistake severity under a class hierarchy (Bertinetto et al. 2020): how far the mistakes land, per head."""

from __future__ import annotations

from rich.console import RenderableType

from vcal_cli.reports.sections.base import Report, Section, TableSpec, heads_of, register_section, rich_table
from vcal_cli.reports.tables import hier_label, hierarchy_rows


def _sections(report: Report) -> dict:
    return {n: h.get("hierarchy") for n, h in heads_of(report).items()}


def _tables(report: Report) -> list[TableSpec]:
    sections = _sections(report)
    if not any(sections.values()):
        return []
    first = next(s for s in sections.values() if s)
    caption = f"Mistake severity in {first['source']} (height {first['height']}; LCA heights, lower is better)"
    return [(caption, ["metric", *sections], hierarchy_rows(sections))] + _verdicts(sections)


def _verdicts(sections: dict) -> list[TableSpec]:
    """Each retrained head's paired-bootstrap verdict per hierarchy metric, against the original and temperature."""
    judged = {name: s for name, s in sections.items() if s and s.get("verdicts")}
    if not judged:
        return []
    metrics = list(next(iter(judged.values()))["metrics"])  # every head has the same metrics
    rows = [
        [name, against] + [f"{v[m]['verdict']} ({v[m]['delta']:+.4f})" if m in v else "-" for m in metrics]
        for name, s in judged.items()
        for against, v in s["verdicts"].items()
        if against != name
    ]
    if not rows:
        return []
    caption = "Mistake severity, each head against the original and temperature scaling: change, 95% paired bootstrap"
    return [(caption, ["head", "against", *(hier_label(m) for m in metrics)], rows)]


def _terminal(report: Report) -> list[RenderableType]:
    sections = _sections(report)
    if not any(sections.values()):
        return []
    first = next(s for s in sections.values() if s)
    caption = (
        f"mistake severity in {first['source']} (height {first['height']}; LCA heights, lower is better; 95% intervals)"
    )
    cols = ["metric", *(sections if "heads" in report else ["value"])]
    return [rich_table((caption, cols, hierarchy_rows(sections)))] + [rich_table(t) for t in _verdicts(sections)]


register_section(Section(key="hierarchy", title="Mistake severity", tables=_tables, terminal=_terminal, order=60))

"""Mistake severity under a class hierarchy (Bertinetto et al. 2020): how far the mistakes land, per head."""

from __future__ import annotations

from rich.console import RenderableType

from vcal_cli.reports.sections.base import Report, Section, TableSpec, heads_of, register_section, rich_table
from vcal_cli.reports.tables import hierarchy_rows


def _sections(report: Report) -> dict:
    return {n: h.get("hierarchy") for n, h in heads_of(report).items()}


def _tables(report: Report) -> list[TableSpec]:
    sections = _sections(report)
    if not any(sections.values()):
        return []
    first = next(s for s in sections.values() if s)
    caption = f"Mistake severity in {first['source']} (height {first['height']}; LCA heights, lower is better)"
    return [(caption, ["metric", *sections], hierarchy_rows(sections))]


def _terminal(report: Report) -> list[RenderableType]:
    sections = _sections(report)
    if not any(sections.values()):
        return []
    first = next(s for s in sections.values() if s)
    caption = (f"mistake severity in {first['source']} (height {first['height']}; LCA heights, lower is better; "
               "95% intervals)")  # fmt: skip
    cols = ["metric", *(sections if "heads" in report else ["value"])]
    return [rich_table((caption, cols, hierarchy_rows(sections)))]


register_section(Section("hierarchy", "Mistake severity", _tables, terminal=_terminal, order=60))

"""A deep ensemble's members: each member's metrics with intervals, and the ensemble's paired verdict against its best
member (report.json `ensemble`, written by `vcal audit A B ...`)."""

from __future__ import annotations

from typing import Any

from vcal_cli.reports.sections.base import Report, Section, TableSpec, register_section

SHOWN = ("accuracy", "nll", "ece", "brier")


def _cell(row: dict[str, Any], m: str) -> str:
    iv = (row.get("intervals") or {}).get(m)
    return f"{row[m]:.4f}" + (f" [{iv[0]:.4f}, {iv[1]:.4f}]" if iv else "")


def _tables(report: Report) -> list[TableSpec]:
    e = report.get("ensemble")
    if not e:
        return []
    rows = [[f"member {r['member']}", r["path"], *(_cell(r, m) for m in SHOWN)] for r in e["members"]]
    rows.append(
        [
            "ensemble",
            e["combine"],
            *(_cell({**report["metrics"], "intervals": report.get("intervals")}, m) for m in SHOWN),
        ]
    )  # the report's own figures
    tables: list[TableSpec] = [
        (
            f"Ensemble of {len(e['members'])} (best member: {e['best_member']}, by NLL on this split)",
            ["", "checkpoint", "accuracy", "NLL", "ECE", "Brier"],
            rows,
        )
    ]
    vs = e.get("vs_best_member")
    if vs:
        cols = ["metric", "ensemble - best member", "95% paired interval", "verdict"]
        body = [
            [m, f"{v['delta']:+.4f}", f"[{v['interval'][0]:+.4f}, {v['interval'][1]:+.4f}]", v["verdict"]]
            for m, v in vs.items()
        ]
        tables.append(("The ensemble against its best member (paired bootstrap)", cols, body))
    return tables


register_section(Section(key="ensemble", title="Ensemble", tables=_tables, order=12))

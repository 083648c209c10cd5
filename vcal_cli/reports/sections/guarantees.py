"""The sentences a person reads under the tables for the prediction sets and the abstention, one per head and level."""

from __future__ import annotations

from vcal_cli.reports.sections.base import Report, heads_of
from vcal_cli.reports.sections.conformal import below_target, rows_of, verdict
from vcal_cli.reports.sections.risk_control import verdict as risk_verdict


def guarantee_lines(report: Report) -> list[str]:
    """Per head: for each alpha, the smallest sets among the scores whose coverage is not below 1 - alpha beyond the
    noise (else all of them), then the abstention."""
    out = []
    for name, h in heads_of(report).items():
        who = f"{name}: " if "heads" in report else ""
        rows = rows_of(h.get("conformal") or {})
        for alpha in dict.fromkeys(r["alpha"] for r in rows):
            at = [r for r in rows if r["alpha"] == alpha]
            ok = [r for r in at if not below_target(r)] or at
            out.append(who + verdict(min(ok, key=lambda r: r["set_size"])))
        if h.get("risk_control"):
            out.append(who + risk_verdict(h["risk_control"]))
    return out

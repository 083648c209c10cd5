"""A paper's table (`--protocol`): every head in the published conventions, column by column."""

from __future__ import annotations

from typing import Any

from vcal_cli.reports.sections.base import Report, Section, TableSpec, heads_of, register_section


def _x(v: float | None, scale: float = 100.0, digits: int = 2) -> str:
    return "-" if v is None else f"{v * scale:.{digits}f}"


def _tables(report: Report) -> list[TableSpec]:
    p: dict[str, Any] = report.get("settings", {}).get("protocol") or {}
    rows_of = {n: h["protocol"] for n, h in heads_of(report).items() if h.get("protocol")}
    if not rows_of:
        return []
    scale = p.get("scale", 100.0)
    sevs = sorted({s for r in rows_of.values() for s in (r.get("shift") or {}).get("ece_by_severity", {})}, key=int)
    rows, shift_rows, sev_rows = [], [], []
    for name, r in rows_of.items():
        t, s, o = r["test"], r.get("shift") or {}, r.get("ood") or {}
        rows.append(
            [
                name,
                _x(t["accuracy"]),
                _x(t["ece"], scale),
                _x(t["mce"], scale),
                f"{t['nll']:.4f}",
                f"{t['brier_k']:.5f}",
            ]
        )
        shift_rows.append(
            [
                name,
                _x(s.get("accuracy")),
                _x(s.get("ece"), scale),
                _x(s.get("mce"), scale),
                _x(o.get("auroc"), 1, 4),
                _x(o.get("fpr95"), 1, 4),
            ]
        )
        if s:
            sev_rows.append([name] + [_x(s["ece_by_severity"].get(v), scale) for v in sevs])
    corr = p.get("corruptions") or []
    missing = p.get("papers_corruptions_not_used") or []
    not_used = f", {len(missing)} of the paper's not used" if missing else ""
    ood = " + ".join(p.get("ood_sets") or []) or "no --ood set"
    out = [  # short captions: the documents do not wrap them (report.json's settings.protocol has the details)
        (
            f"Paper protocol '{p.get('name', '?')}': clean test; ECE, MCE x{scale:g} with "
            f"{p.get('ece_bins', '?')} bins; Brier/K",
            ["head", "acc. %", "ECE", "MCE", "NLL", "Brier/K"],
            rows,
        ),
        (
            f"Shift: {len(corr)} corruptions x {len(p.get('severities', []))} severities pooled{not_used}; OOD: MSP on "
            f"{ood}, ID positive",
            ["head", "shift acc. %", "shift ECE", "shift MCE", "OOD AUROC", "FPR95"],
            shift_rows,
        ),
    ]
    if sev_rows:
        out.append((f"Shift ECE x{scale:g} per severity, mean over corruptions", ["head", *sevs], sev_rows))
    return out


register_section(Section(key="protocol", title="Paper protocol", tables=_tables, order=85))

"""Risk-controlled abstention: the confidence threshold found on val (SGR) whose selective risk is at most the target
with probability 1 - delta, and what it does on test."""

from __future__ import annotations

from typing import Any

from vcal_cli.reports.sections.base import Report, Section, TableSpec, heads_of, register_section


def verdict(r: dict[str, Any]) -> str:
    """'Accept the 87.1% of test images with confidence >= 0.912: error 1.4% among them (target 2%, held).'"""
    if r["threshold"] is None:
        return (
            f"no confidence threshold keeps the error under {r['target_risk']:.1%} with probability "
            f"{1 - r['delta']:.0%} on {r['n_val']} val images: abstain on everything, or raise "
            "--target-risk"
        )
    held = "held" if r["held"] else "NOT held on test (the guarantee is on average over val draws)"
    return (
        f"accept the {r['coverage']:.1%} of test images with confidence >= {r['threshold']:.4f}: error "
        f"{r['selective_risk']:.2%} among them (target {r['target_risk']:.1%} at delta {r['delta']:g}, {held})"
    )


def _tables(report: Report) -> list[TableSpec]:
    heads = {n: h["risk_control"] for n, h in heads_of(report).items() if h.get("risk_control")}
    if not heads:
        return []
    cols = [
        "head",
        "target risk",
        "delta",
        "threshold",
        "risk bound (val)",
        "val coverage",
        "test coverage",
        "test selective risk",
        "held",
    ]
    rows = [
        [
            n,
            f"{r['target_risk']:g}",
            f"{r['delta']:g}",
            "-" if r["threshold"] is None else f"{r['threshold']:.4f}",
            "-" if r["bound"] is None else f"{r['bound']:.4f}",
            f"{r['val_coverage']:.4f}",
            f"{r['coverage']:.4f}",
            f"{r['selective_risk']:.4f}",
            "yes" if r["held"] else "no",
        ]
        for n, r in heads.items()
    ]
    first = next(iter(heads.values()))
    return [(f"Risk-controlled abstention: {first['method']}", cols, rows)]


register_section(Section(key="risk_control", title="Risk-controlled abstention", tables=_tables, order=46))

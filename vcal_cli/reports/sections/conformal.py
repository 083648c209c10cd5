"""Prediction sets with a coverage guarantee (split conformal, calibrated on val): coverage, set sizes, size-stratified
and class-conditional coverage per score and alpha, per head, and under corruption with the val thresholds."""

from __future__ import annotations

import math
from typing import Any

from rich.console import RenderableType

from vcal_cli.reports.figures import plot_conformal, to_png
from vcal_cli.reports.sections.base import (
    Raw,
    Report,
    Section,
    TableSpec,
    fmt_ci,
    heads_of,
    register_section,
    rich_table,
)


def rows_of(data: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """report.json's {score: {alpha: row}} as a list of rows."""
    return [row for by_alpha in data.values() for row in by_alpha.values()]


def verdict(row: dict[str, Any]) -> str:
    """One sentence a person reads: '90% sets (lac) hold 1.3 labels on average; coverage 0.902 [0.896, 0.908]; worst
    class Shirt 0.84'."""
    iv = (row.get("intervals") or {}).get("coverage")
    ci = f" [{iv[0]:.3f}, {iv[1]:.3f}]" if iv else ""
    held = (
        ""
        if not below_target(row)
        else (f" (below {row['target']:.0%} beyond the noise of val and test: they may not be exchangeable)")
    )
    return (
        f"{row['target']:.0%} sets ({row['score']}) hold {row['set_size']:.2f} labels on average; coverage "
        f"{row['coverage']:.3f}{ci}{held}; worst class {row['worst_class']['class']} "
        f"{row['worst_class']['coverage']:.2f}"
    )


def below_target(row: dict[str, Any]) -> bool:
    """Coverage below 1 - alpha by more than 1.96 combined standard errors: test's (its bootstrap interval) and val's
    (the calibration's own spread, `calibration_sd`). Only then is a shortfall more than the luck of one split."""
    iv = (row.get("intervals") or {}).get("coverage")
    if not iv:
        return False
    se = math.hypot((iv[1] - iv[0]) / 3.92, row.get("calibration_sd", 0.0))
    return row["coverage"] < row["target"] - 1.96 * se


def _conformal(report: Report) -> dict[str, list[dict[str, Any]]]:
    return {n: rows_of(h["conformal"]) for n, h in heads_of(report).items() if h.get("conformal")}


def _ci(row: dict[str, Any], key: str) -> str:
    return fmt_ci((row.get("intervals") or {}).get(key))


def _tables(report: Report) -> list[TableSpec]:
    heads = _conformal(report)
    if not heads:
        return []
    cols = [
        "head",
        "score",
        "1 - alpha",
        "coverage [95%]",
        "mean size [95%]",
        "median",
        "empty",
        "singleton",
        "SSC",
        "CovGap (floor)",
        "worst class",
        "threshold",
    ]
    rows = [
        [
            head,
            r["score"],
            f"{r['target']:.3f}",
            f"{r['coverage']:.4f} {_ci(r, 'coverage')}",
            f"{r['set_size']:.3f} {_ci(r, 'set_size')}",
            f"{r['set_size_median']:g}",
            f"{r['empty']:.3f}",
            f"{r['singleton']:.3f}",
            f"{r['ssc']:.3f}",
            _cov_gap(r),
            f"{r['worst_class']['class']} {r['worst_class']['coverage']:.3f}",
            _threshold(r),
        ]
        for head, rs in heads.items()
        for r in rs
    ]
    out = [
        (
            "Prediction sets: split conformal, calibrated on val, scored on test (SSC: the lowest coverage over set-"
            "size strata; CovGap: mean over classes of |coverage - (1 - alpha)|; its floor: what sets exact in "
            "every class show by chance at 95%)",
            cols,
            rows,
        )
    ]
    return out + _shift_tables(report)


def _cov_gap(r: dict[str, Any], digits: int = 4) -> str:
    """CovGap and, when the bootstrap ran, its noise floor in brackets."""
    floor = r.get("cov_gap_noise_floor")
    return f"{r['cov_gap']:.{digits}f}" + (f" ({floor:.{digits}f})" if floor is not None else "")


def _threshold(r: dict[str, Any]) -> str:
    t = r["threshold"]
    return f"{t:.4f}" if isinstance(t, float) else f"{t['min']:.3f}..{t['max']:.3f}"


def _shift_tables(report: Report) -> list[TableSpec]:
    """Coverage / mean size under corruption (mean over corruptions per severity), with the val thresholds."""
    out = []
    for head, h in heads_of(report).items():
        rows_in = [r for r in h.get("shift") or [] if r.get("sets")]
        if not rows_in or not h.get("conformal"):
            continue
        sevs = sorted({r["severity"] for r in rows_in})
        rows = []
        for score, by_alpha in h["conformal"].items():
            for alpha, clean in by_alpha.items():
                cells = [f"{clean['coverage']:.3f} / {clean['set_size']:.2f}"]
                for s in sevs:
                    sel = [r["sets"][score][alpha] for r in rows_in if r["severity"] == s]
                    cov, size = (sum(x[k] for x in sel) / len(sel) for k in ("coverage", "set_size"))
                    cells.append(f"{cov:.3f} / {size:.2f}")
                rows.append([f"{score} @ {1 - float(alpha):.0%}", *cells])
        cols = ["sets", "clean: coverage / size", *(f"severity {s}" for s in sevs)]
        out.append((f"Prediction sets under corruption ({head}): val thresholds, mean over corruptions", cols, rows))
    return out


def _terminal(report: Report) -> list[RenderableType]:
    heads = _conformal(report)
    if not heads:
        return []
    rows = [
        [
            head,
            r["score"],
            f"{r['target']:.2f}",
            f"{r['coverage']:.4f} {_ci(r, 'coverage')}",
            f"{r['set_size']:.2f}",
            _cov_gap(r, digits=3),
            f"{r['worst_class']['class']} {r['worst_class']['coverage']:.2f}",
        ]
        for head, rs in heads.items()
        for r in rs
    ]
    cols = ["head", "score", "1 - alpha", "coverage [95%]", "mean size", "CovGap (floor)", "worst class"]
    table = rich_table(("prediction sets (split conformal: calibrated on val, scored on test)", cols, rows))
    return [table, *(rich_table(t) for t in _shift_tables(report))]


def _figures(report: Report, raw: Raw) -> dict[str, bytes]:
    heads = _conformal(report)
    if not heads:
        return {}
    first = next(iter(heads.values()))[0]
    picked = {
        n: next(r for r in rs if r["score"] == first["score"] and r["alpha"] == first["alpha"])
        for n, rs in heads.items()
    }
    names = report.get("class_names")
    return {"conformal.png": to_png(plot_conformal(picked, names))}


def summary(data: dict[str, Any]) -> dict[str, Any]:
    """Gate figures: `conformal.lac.0.1.coverage` reads report.json's `conformal` itself; this adds the worst
    coverage and the largest mean set over scores per alpha (`conformal_summary.0.1.min_coverage`)."""
    out: dict[str, Any] = {}
    for row in rows_of(data):
        a = out.setdefault(f"{row['alpha']:g}", {"min_coverage": 1.0, "max_set_size": 0.0})
        a["min_coverage"] = min(a["min_coverage"], row["coverage"])
        a["max_set_size"] = max(a["max_set_size"], row["set_size"])
    return out


register_section(
    Section(
        key="conformal",
        title="Prediction sets",
        tables=_tables,
        images=("conformal",),
        figures=_figures,
        terminal=_terminal,
        summary=("conformal_summary", summary),
        order=45,
    )
)

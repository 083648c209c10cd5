"""Calibration evidence: how miscalibrated by each estimator (with its debiased value, interval and the noise floor
of a calibrated model of the same size), the calibration tests, and the reliability diagrams with their bands.

Everything comes from report.json's `estimators`, `tests` and `calibration` (see `vcal_cli.metrics.evidence`);
an older report without them shows nothing here."""

from __future__ import annotations

from pathlib import Path

from rich.console import RenderableType
from rich.table import Table

from vcal_cli.metrics import ReliabilityBin
from vcal_cli.metrics.evidence import ESTIMATOR_LABELS
from vcal_cli.reports.figures import plot_corp, plot_reliability, to_png
from vcal_cli.reports.sections.base import Raw, Report, Section, TableSpec, register_section
from vcal_cli.reports.tables import readable

TEST_LABELS = {
    "ece": "ECE vs its noise floor",
    "tcal": "T-Cal (debiased L2)",
    "kuiper": "Kuiper (cumulative)",
    "ks": "Kolmogorov-Smirnov (cumulative)",
    "spiegelhalter": "Spiegelhalter Z",
}


def _p(v: float | None) -> str:
    return "-" if v is None else ("< 0.001" if v < 0.001 else f"{v:.3f}")


def _tables(report: Report) -> list[TableSpec]:
    est, tests = report.get("estimators"), report.get("tests")
    if not est or not tests or "heads" in report:  # a retrain: each head's evidence is in its report.json row
        return []
    bins = report["settings"].get("bins", 15)
    lead = report.get("calibration", {}).get("lead")
    rows = []
    for k, e in est.items():
        label = ESTIMATOR_LABELS.get(k, k).replace("ECE (equal width)", f"ECE-{bins} (equal width)")
        rows.append(
            [
                label + (" (leads)" if k == lead else ""),
                f"{e['value']:.4f}",
                f"{e['debiased']:.4f}",
                f"[{e['interval'][0]:.4f}, {e['interval'][1]:.4f}]",
                "-" if e.get("noise_floor") is None else f"{e['noise_floor']:.4f}",
                _p(e.get("p_value")),
            ]
        )
    est_table = (
        "How miscalibrated, by each estimator (noise floor: the most a calibrated model of this size shows)",
        ["estimator", "estimate", "debiased", "95% interval", "noise floor (95%)", "p (calibrated)"],
        rows,
    )
    test_rows = [
        [TEST_LABELS.get(k, k), f"{t['statistic']:.4g}", _p(t["p_value"]), "yes" if t.get("rejected") else "no"]
        for k, t in tests.items()
    ]
    test_table = (
        "Calibration tests (rejected: by Holm's rule, family-wise 5%)",
        ["test", "statistic", "p-value", "rejected"],
        test_rows,
    )
    return [est_table, test_table]


def _terminal(report: Report) -> list[RenderableType]:
    out = []
    for caption, cols, rows in _tables(report):
        t = Table(title=caption, title_justify="left")
        for i, c in enumerate(cols):
            t.add_column(c, justify="left" if i == 0 else "right")
        for r in rows:
            t.add_row(*r)
        out.append(readable(t))
    return out


def _figures(report: Report, raw: Raw) -> dict[str, bytes]:
    """reliability_bands.png (the binned diagram with consistency bands) and corp_reliability.png."""
    cal = report.get("calibration")
    if not cal or "heads" in report:
        return {}
    data = report["data"]
    name = Path(str(report["checkpoint"].get("path"))).name
    bins = [ReliabilityBin(**b) for b in report["reliability"]]
    title = f"{name} on {data['name']}:{data['split']}"
    fig = plot_reliability(bins, ece=report["metrics"]["ece"], title=title, bands=cal["bands"])
    corp = report.get("estimators", {}).get("ece_corp", {}).get("value")
    return {
        "reliability_bands.png": to_png(fig),
        "corp_reliability.png": to_png(plot_corp(cal["corp"], title=f"CORP: {title}", score=corp)),
    }


register_section(
    Section(
        key="calibration",
        title="Calibration evidence",
        tables=_tables,
        images=("reliability_bands", "corp_reliability"),
        figures=_figures,
        terminal=_terminal,
        order=15,
    )
)

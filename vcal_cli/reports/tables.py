"""Rich tables built from report dicts (pure functions: easy to test, no printing)."""

from __future__ import annotations

from typing import Any

from rich.table import Table

from vcal_cli.metrics import LOWER_IS_BETTER, METRIC_NAMES

LABELS = {
    "accuracy": "Accuracy",
    "nll": "NLL",
    "brier": "Brier",
    "ece": "ECE",
    "ece_adaptive": "Adaptive ECE",
    "mce": "MCE",
    "classwise_ece": "Classwise ECE",
    "aurc": "AURC",
}


def metric_label(name: str, n_bins: int) -> str:
    return f"{LABELS[name]}-{n_bins}" if name in ("ece", "ece_adaptive", "mce", "classwise_ece") else LABELS[name]


def audit_table(report: dict[str, Any]) -> Table:
    ck, data, s = report["checkpoint"], report["data"], report["settings"]
    title = f"{ck.get('path') or '?'}  on  {data['name']}:{data['split']}  (n={data['n']})"
    t = Table(title=title, title_justify="left")
    t.add_column("metric")
    t.add_column("value", justify="right")
    t.add_column("95% interval", justify="right")
    t.add_column("", justify="left")
    for name in METRIC_NAMES:
        v = report["metrics"][name]
        lo, hi = report["intervals"].get(name, (None, None))
        ci = f"[{lo:.4f}, {hi:.4f}]" if lo is not None else "-"
        t.add_row(
            metric_label(name, s.get("bins", 15)),
            f"{v:.4f}",
            ci,
            "lower is better" if LOWER_IS_BETTER[name] else "higher is better",
        )
    return t

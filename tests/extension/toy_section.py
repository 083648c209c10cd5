"""A toy report section, written the way a new section is added: this one file (and, in a real section, one
import line in `vcal_cli/reports/sections/__init__.py`). It computes, per predictor, the share of test samples
predicted with confidence 0.9 or more; `tests/test_extension.py` checks it in the terminal, report.md,
report.html and report.json."""

from __future__ import annotations

from typing import Any

from torch import Tensor

from vcal_cli.reports.sections.base import Report, Section, TableSpec, heads_of, register_section


def _compute(log_probs: Tensor, labels: Tensor) -> dict[str, Any]:
    confident = log_probs.exp().max(dim=1).values >= 0.9
    return {"confident": int(confident.sum()), "share": float(confident.double().mean())}


def _tables(report: Report) -> list[TableSpec]:
    rows = [
        [name, str(h["toy"]["confident"]), f"{h['toy']['share']:.4f}"]
        for name, h in heads_of(report).items()
        if h.get("toy")
    ]
    return [("Toy: samples with confidence >= 0.9", ["head", "n", "share"], rows)] if rows else []


register_section(
    Section(
        key="toy", title="Toy section", tables=_tables, compute=_compute, summary=("toy_summary", lambda d: d["share"])
    )
)

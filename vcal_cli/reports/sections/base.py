"""What a report section is, and the registry of them.

A section is one part of every report, held in one place: its key (the HTML anchor, and its report.json key
when it computes data of its own), its title, its tables (built from the report dict alone; report.md,
report.html and, unless it says otherwise, the terminal render the same tables), the images it draws and
shows, the keyed figures gate rules can address, and optionally the data it computes from each predictor's
test predictions. A new section is one file in this folder that calls `register_section`, plus its import
line in `__init__.py`; the documents, the terminal, report.json and the browser test pick it up, in the
order its `order` gives (ruff sorts the import lines, so the import order says nothing).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from rich.console import RenderableType
from rich.table import Table
from torch import Tensor

from vcal_cli.errors import VcalError
from vcal_cli.reports.tables import readable

TableSpec = tuple[str, list[str], list[list[str]]]  # caption, columns, rows (strings)
Report = dict[str, Any]  # report.json's dict
Raw = dict[str, dict[str, Any]]  # per predictor, what report.json does not keep (raw OOD scores)


@dataclass(frozen=True, kw_only=True)
class Section:
    key: str  # the HTML anchor; report.json's key for what `compute` returns
    title: str
    tables: Callable[[Report], list[TableSpec]]  # report.md and report.html (and the terminal by default)
    images: tuple[str, ...] = ()  # file-name prefixes of the images shown in this section
    figures: Callable[[Report, Raw], dict[str, bytes]] | None = None  # the PNGs it draws, by file name
    terminal: Callable[[Report], list[RenderableType]] | None = None  # None: `tables` as rich tables
    summary: tuple[str, Callable[[Any], Any]] | None = None  # (report.json key, keyed figures for gate rules)
    compute: Callable[[Tensor, Tensor], Any] | None = None  # (log_probs (N, C), labels (N,)) -> JSON data
    order: int = 1000  # where reports show it: ascending, ties in registration order (built-ins: 10, 20, ...)


_SECTIONS: dict[str, Section] = {}
# report.json's own keys: a section that computes data stores it under its key, so it may not take one of these
RESERVED = {
    "schema_version",
    "vcal_version",
    "created",
    "checkpoint",
    "data",
    "metrics",
    "intervals",
    "reliability",
    "settings",
    "warnings",
    "hierarchy",
    "details",
    "class_names",
    "suggestion",
    "summary",
    "heads",
    "params",
    "fitted",
    "verdicts",
    "ood_scores",
    "debiased",
    "estimators",
    "tests",
    "calibration",
}


def register_section(section: Section) -> Section:
    """Add `section` to every report, after the ones registered before it."""
    if section.key in _SECTIONS:
        raise VcalError(f"report section '{section.key}' is registered twice")
    if section.compute is not None and section.key in RESERVED:
        raise VcalError(f"report section '{section.key}' computes data under a key report.json already uses")
    _SECTIONS[section.key] = section
    return section


def list_sections() -> list[Section]:
    """Every section in the order reports show them."""
    return sorted(_SECTIONS.values(), key=lambda s: s.order)  # stable: ties keep registration order


def no_terminal(report: Report) -> list[RenderableType]:
    """For sections shown in the documents only (a terminal with 100 classes would scroll for pages)."""
    return []


# --- helpers the sections share --------------------------------------------------------------------------


def heads_of(report: Report) -> dict[str, dict[str, Any]]:
    """Every evaluated predictor: the audit's single 'original', or the retrain's heads."""
    return report.get("heads") or {"original": report}


def fmt_ci(iv: Any) -> str:
    return f"[{iv[0]:.4f}, {iv[1]:.4f}]" if iv else "-"


def rich_table(spec: TableSpec) -> Table:
    """A table spec as a rich table: the first column text, the others numbers."""
    caption, cols, rows = spec
    t = Table(title=caption, title_justify="left")
    for i, c in enumerate(cols):
        t.add_column(c, justify="left" if i == 0 else "right")
    for r in rows:
        t.add_row(*r)
    return readable(t)


# --- what the commands and writers call ------------------------------------------------------------------


def compute_sections(scores: Tensor, labels: Tensor, *, probs: bool = False) -> dict[str, Any]:
    """The data of every section that computes its own from a predictor's test logits (or log-probabilities, or
    with `probs` probabilities); nothing is converted when no section computes anything."""
    computing = [s for s in list_sections() if s.compute is not None]
    if not computing:
        return {}
    scores = torch.as_tensor(scores).double()
    log_probs = scores.clamp_min(1e-12).log() if probs else torch.log_softmax(scores, dim=1)
    labels = torch.as_tensor(labels)
    return {s.key: s.compute(log_probs, labels) for s in computing if s.compute is not None}


def section_json(data: dict[str, Any]) -> dict[str, Any]:
    """report.json's keys for the sections' data in `data` (one predictor's): each non-empty section under its
    key, and its gate summary beside it (`shift_mean.severity_5.ece`, `ood_summary.svhn.msp.auroc`)."""
    out: dict[str, Any] = {}
    for s in list_sections():
        if data.get(s.key):
            out[s.key] = data[s.key]
            if s.summary:
                out[s.summary[0]] = s.summary[1](data[s.key])
    return out


def section_figures(report: Report, raw: Raw | None = None) -> dict[str, bytes]:
    """Every section's images, in section order."""
    images: dict[str, bytes] = {}
    for s in list_sections():
        if s.figures is not None:
            images |= s.figures(report, raw or {})
    return images


def terminal_view(report: Report) -> list[RenderableType]:
    """What the terminal shows of every section, in section order."""
    out: list[RenderableType] = []
    for s in list_sections():
        out += s.terminal(report) if s.terminal is not None else [rich_table(t) for t in s.tables(report) if t[2]]
    return out

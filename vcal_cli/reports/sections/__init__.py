"""The report sections, one file each, registered on import in the order reports show them
(`vcal_cli.reports.sections.base` says what a section holds)."""

from vcal_cli.reports.sections import (  # noqa: F401  (each import registers its section)
    adversarial,
    calibration,
    conformal,
    ensemble,
    hierarchy,
    metrics,
    ood,
    per_class,
    protocol,
    reliability,
    risk_control,
    selective,
    shift,
    verdicts,
)
from vcal_cli.reports.sections.base import (
    Section,
    TableSpec,
    compute_sections,
    list_sections,
    register_section,
    section_figures,
    section_json,
    terminal_view,
)
from vcal_cli.reports.sections.guarantees import guarantee_lines

__all__ = [
    "guarantee_lines",
    "Section",
    "TableSpec",
    "compute_sections",
    "list_sections",
    "register_section",
    "section_figures",
    "section_json",
    "terminal_view",
]

"""What `vcal retrain` returns and writes into report.json: the original head and every retrained one."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from vcal_cli.reports.schema import AuditReport, dump_json, evidence_json
from vcal_cli.reports.sections import section_json
from vcal_cli.reports.summary import audit_summary, retrain_summary


@dataclass(kw_only=True)
class HeadResult:
    """One head of a retrain: its fitted estimator, test metrics and the files written for it."""

    name: str
    result: Any  # MetricsResult on the test split
    head: Any = None  # the fitted Head (None for the original)
    checkpoint: str | None = None
    hierarchy: dict[str, Any] | None = None  # mistake-severity metrics, when a hierarchy is known
    robustness: dict[str, Any] | None = None  # ood / shift / adversarial sections (see RobustnessOptions)
    verdicts: dict[str, Any] | None = None  # against the original and temperature scaling (metrics.paired)
    sections: dict[str, Any] = field(default_factory=dict)  # what sections compute (reports.sections.compute_sections)
    log_probs: Any = field(default=None, repr=False)  # test log-probabilities (not written)


@dataclass
class RetrainReport:
    """The original head and every retrained head, audited on the same test split."""

    original: AuditReport  # the original checkpoint's audit (top-level report keys)
    heads: dict[str, HeadResult]

    def to_dict(self) -> dict[str, Any]:
        d = self.original._dict()
        d["heads"] = {
            name: {
                "metrics": h.result.metrics.as_dict(),
                "intervals": {k: list(v) for k, v in h.result.intervals.items()},
                "reliability": [asdict(b) for b in h.result.reliability],
                "checkpoint": h.checkpoint,
                **({"hierarchy": h.hierarchy} if h.hierarchy else {}),
                **({"params": asdict(h.head.params), "fitted": h.head.extra_report()} if h.head else {}),
                **({"verdicts": h.verdicts} if h.verdicts else {}),
                **section_json({**h.sections, **(h.robustness or {})}),
                **({"details": h.result.details.to_dict()} if h.result.details else {}),
                **evidence_json(h.result),
            }
            for name, h in self.heads.items()
        }
        d.pop("suggestion", None)  # the retrain itself is the fix
        d["summary"] = retrain_summary(d)
        d["summary"]["lines"] += [f"Original head: {x}" for x in audit_summary(d)["lines"][:2]]  # verdict, where
        return d

    def to_json(self) -> str:
        return dump_json(self.to_dict())

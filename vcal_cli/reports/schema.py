"""The report contract: what `report.json` holds. `gate` and `compare` read reports through this module.

report.json (schema_version 2; version 1 lacked `details`, `class_names`, `suggestion` and `summary`):

    schema_version  int
    vcal_version    str
    created         ISO-8601 UTC time
    checkpoint      {path, sha256, arch, num_classes, head_module}   (arch/head_module null for --logits)
    data            {name, split, n}
    metrics         {accuracy, nll, brier, ece, ece_adaptive, mce, classwise_ece, aurc}
    intervals       the same keys but mce, each [low, high]: the 95% interval (settings.intervals says how: the
                    estimate -/+ 1.96 bootstrap sd, or for the ECEs bias-bounded around the estimate
                    (docs/metrics.md), reaching 0 when the noise-floor test does not reject; mce has none)
    debiased        {ece, ece_adaptive, classwise_ece: {value, debiased, interval, p_value, noise_floor,
                    null_mean}}: the point each interval is built around, and the noise floor of a
                    calibrated model with these confidences and this size
    estimators      {ece, ece_adaptive, ece_sweep, ece_l2_debiased, ece_corp, ece_smooth: the same fields}
    tests           {ece, tcal, kuiper, ks, spiegelhalter: {statistic, p_value, reference, rejected}}
    calibration     {lead, lead_why, multiplicity, bands (per reliability bin, where a calibrated model's
                    accuracy falls), corp (the CORP diagram and its band), ranges (confidence ranges off
                    beyond noise), draws}
    reliability     list of {lo, hi, count, confidence, accuracy} per equal-width bin (null when empty)
    settings        {bins, bootstrap, seed, preprocessing, device, batch_size, cache, intervals}; preprocessing
                    holds {input_size, mean, std, source} and, when probed, `probe`: the candidates and their
                    accuracy; intervals names how each interval is made (per metric, gap, paired, hierarchy,
                    conformal)
    warnings        list of str: numbers that look impossible (chance-level accuracy, collapsed predictions,
                    a val split that looks like training data); empty when all is well
    hierarchy       (when a class hierarchy is known) {source, height, metrics: {top1_error,
                    mistake_severity, avg_hdist_at_1, avg_hdist_at_5, avg_hdist_at_20}, intervals}
    ood             (with --ood) list of {dataset, score, auroc, aupr, fpr95}; OOD is the positive class
    ood_summary     the same keyed {dataset: {score: {auroc, aupr, fpr95}}} (for gate rules)
    adversarial     (with --adversarial) list of {attack, eps, accuracy, ece, nll}
    adversarial_summary  the same keyed {attack: {"8/255": {accuracy, ece, nll}}} (for gate rules)
    shift           (with --shift) list of {corruption, severity, accuracy, nll, ece}
    shift_mean      {"severity_N": {accuracy, nll, ece}}: means over corruptions (gate rules can reach
                    them, e.g. shift_mean.severity_5.ece)
    protocol        (with --protocol) {test: {accuracy, ece, mce, nll, brier_k}, shift: {the same pooled over
                    every corrupted split, ece_by_severity, splits}, ood: {auroc, fpr95, ood_n}} in the paper's
                    conventions (settings.protocol names them; ECE as a fraction, tables print x100)
    details         {gap, gap_interval, smooth: {smece, sigma}, smooth_curve, selective: {coverage_0.90, ...},
                    risk_coverage: [[coverage, risk]], per_class: [{index, count, accuracy, confidence, ece}]
                    worst first, confusion: [true][predicted] counts (<= 100 classes, else null),
                    top_confusions: [{true, predicted, count, share}] the 20 most frequent mistakes (added in
                    0.x without a schema bump: a new optional field, older readers ignore it)}
    class_names     the checkpoint's class names, when it has them
    suggestion      {temperature, ece, nll, command} (temperature scaling fitted on val, scored on test) or
                    {reason, command} when val was not at hand
    summary         {verdict, lines}: the verdict in words (see vcal_cli.reports.summary)
    <section key>   what a registered report section computes from the test predictions, under its key

Added fields never break an older reader; `read_report` fills what an older report lacks where it can.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from vcal_cli._version import __version__
from vcal_cli.errors import ReportError
from vcal_cli.metrics import METRIC_NAMES, MetricsResult
from vcal_cli.metrics.compute import INTERVAL_METHODS
from vcal_cli.metrics.conformal import CONFORMAL_INTERVALS
from vcal_cli.metrics.details import GAP_INTERVAL
from vcal_cli.metrics.hierarchy import HIERARCHY_INTERVALS
from vcal_cli.metrics.paired import PAIRED_INTERVALS
from vcal_cli.reports.sections import section_json
from vcal_cli.reports.summary import audit_summary

SCHEMA_VERSION = 2
# the metrics each schema version guarantees: a report is read by what its own version promised, so a metric
# added later never makes an older report unreadable
_V1_METRICS = ("accuracy", "nll", "brier", "ece", "ece_adaptive", "mce", "classwise_ece", "aurc")
SCHEMA_METRICS: dict[int, tuple[str, ...]] = {1: _V1_METRICS, 2: _V1_METRICS}
assert set(SCHEMA_METRICS[SCHEMA_VERSION]) == set(METRIC_NAMES), "a new metric needs a new schema version"
TOP_KEYS = (
    "schema_version",
    "vcal_version",
    "created",
    "checkpoint",
    "data",
    "metrics",
    "intervals",
    "reliability",
    "settings",
)


@dataclass(kw_only=True)
class AuditReport:
    checkpoint: dict[str, Any]
    data: dict[str, Any]
    result: MetricsResult
    settings: dict[str, Any] = field(default_factory=dict)
    hierarchy: dict[str, Any] | None = None  # mistake-severity metrics, when a class hierarchy is known
    ood: list[dict[str, Any]] | None = None  # {dataset, score, auroc, aupr, fpr95} per OOD set and score
    ood_scores: dict[str, Any] | None = field(default=None, repr=False)  # raw scores for the histograms
    adversarial: list[dict[str, Any]] | None = None  # {attack, eps, accuracy, ece, nll}
    shift: list[dict[str, Any]] | None = None  # {corruption, severity, accuracy, nll, ece}
    protocol: dict[str, Any] | None = None  # a paper's table row (`vcal_cli.evaluations.protocol`)
    warnings: list[str] = field(default_factory=list)  # see vcal_cli.metrics.sanity
    class_names: list[str] | None = None
    suggestion: dict[str, Any] | None = None  # see vcal_cli.reports.summary
    sections: dict[str, Any] = field(default_factory=dict)  # what sections compute (reports.sections.compute_sections)
    created: str = field(default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))

    @property
    def metrics(self) -> dict[str, float]:
        return self.result.metrics.as_dict()

    def robustness_sections(self) -> dict[str, Any]:
        return {
            "ood": self.ood,
            "ood_scores": self.ood_scores,
            "adversarial": self.adversarial,
            "shift": self.shift,
            "protocol": self.protocol,
        }

    def set_robustness(self, sections: dict[str, Any]) -> None:
        """Take the `ood`, `ood_scores`, `adversarial`, `shift` and `protocol` sections of a robustness evaluation."""
        for k in ("ood", "ood_scores", "adversarial", "shift", "protocol"):
            if k in sections:
                setattr(self, k, sections[k])

    def to_dict(self) -> dict[str, Any]:
        d = self._dict()
        d["summary"] = audit_summary(d)
        return d

    def _dict(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "vcal_version": __version__,
            "created": self.created,
            "checkpoint": self.checkpoint,
            "data": self.data,
            "metrics": self.metrics,
            "intervals": {k: list(v) for k, v in self.result.intervals.items()},
            "reliability": [asdict(b) for b in self.result.reliability],
            "settings": {
                **self.settings,
                "intervals": {
                    **INTERVAL_METHODS,
                    "gap": GAP_INTERVAL,
                    "paired": PAIRED_INTERVALS,
                    "hierarchy": HIERARCHY_INTERVALS,
                    "conformal": CONFORMAL_INTERVALS,
                },
            },
            "warnings": list(self.warnings),
            **({"hierarchy": self.hierarchy} if self.hierarchy else {}),
            **section_json({**self.sections, **self.robustness_sections()}),
            **({"details": self.result.details.to_dict()} if self.result.details else {}),
            **evidence_json(self.result),
            **({"class_names": self.class_names} if self.class_names else {}),
            **({"suggestion": self.suggestion} if self.suggestion else {}),
        }

    def to_json(self) -> str:
        return dump_json(self.to_dict())


def finite_json(node: Any) -> Any:
    """The report with every NaN or inf number as null: an undefined figure (AURC of one row) is said to be
    missing, never written as a number no JSON reader accepts or a gate could pass on."""
    if isinstance(node, float):
        return node if math.isfinite(node) else None
    if isinstance(node, dict):
        return {k: finite_json(v) for k, v in node.items()}
    if isinstance(node, list | tuple):
        return [finite_json(v) for v in node]
    return node


def dump_json(d: dict[str, Any]) -> str:
    return json.dumps(finite_json(d), indent=2, allow_nan=False) + "\n"


def evidence_json(result: MetricsResult) -> dict[str, Any]:
    """report.json's `debiased`, `estimators`, `tests` and `calibration` keys (empty without a bootstrap)."""
    out: dict[str, Any] = {}
    if result.debiased:
        out["debiased"] = {k: e.to_dict() for k, e in result.debiased.items()}
    if result.evidence:
        ev = result.evidence.to_dict()
        out["estimators"], out["tests"] = ev.pop("estimators"), ev.pop("tests")
        out["calibration"] = ev
    return out


def _no_constant(token: str) -> float:
    raise ValueError(token)


def read_report(path: str | Path) -> dict[str, Any]:
    """Read and check a report.json; a missing file or key is a `ReportError` naming it."""
    path = Path(path)
    if not path.is_file():
        raise ReportError(f"report '{path}' does not exist")
    try:
        rep = json.loads(path.read_text(encoding="utf-8"), parse_constant=_no_constant)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ReportError(f"report '{path}' is not valid JSON ({e})") from None
    except ValueError as e:  # NaN, Infinity: never a number a gate may pass on
        raise ReportError(f"report '{path}' holds {e}; a report with NaN or inf is not one vcal wrote") from None
    if not isinstance(rep, dict):
        raise ReportError(f"report '{path}' is not a JSON object")
    version = rep.get("schema_version")
    if isinstance(version, int) and version > SCHEMA_VERSION:
        raise ReportError(
            f"report '{path}' has schema {version}; this vcal reads up to {SCHEMA_VERSION}", hint="upgrade vcal"
        )
    promised = SCHEMA_METRICS.get(version, METRIC_NAMES) if isinstance(version, int) else METRIC_NAMES
    metrics = rep.get("metrics") if isinstance(rep.get("metrics"), dict) else {}
    missing = [k for k in TOP_KEYS if k not in rep] + [f"metrics.{k}" for k in promised if k not in metrics]
    if missing:
        raise ReportError(f"report '{path}' lacks {', '.join(missing[:4])}", hint="is it a vcal report.json?")
    kinds = {
        "checkpoint": dict,
        "data": dict,
        "metrics": dict,
        "intervals": dict,
        "settings": dict,
        "reliability": list,
    }
    wrong = [k for k, kind in kinds.items() if not isinstance(rep[k], kind)]
    if wrong:
        raise ReportError(
            f"report '{path}': {wrong[0]} must be a JSON {kinds[wrong[0]].__name__.replace('dict', 'object')}",
            hint="is it a vcal report.json?",
        )
    if "summary" not in rep and "heads" not in rep:  # an older audit: its verdict from what it has
        rep["summary"] = audit_summary(rep)
    return rep

"""Gate rules: what may not regress, by how much. From flags or `[tool.vcal.gate]` / `vcal.toml`.

A rule names a figure of report.json (a metric key such as `ece`, or a dotted path such as
`heads.vtst.metrics.ece`) and one of four limits:

- `max_increase` (lower-is-better figures): current - baseline may not exceed the threshold;
- `max_decrease` (higher-is-better figures): baseline - current may not exceed the threshold;
- `max` / `min`: an absolute bound on the current value.

Relative rules fail only when the change is also beyond noise (see `vcal_cli.gate.evaluate`).
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vcal_cli.errors import VcalError
from vcal_cli.metrics import METRIC_NAMES

KINDS = ("max_increase", "max_decrease", "max", "min")


class GateRuleError(VcalError):
    """A gate rule is malformed or names an unknown figure."""


@dataclass(frozen=True)
class Rule:
    metric: str  # a metric key, or a dotted path into report.json
    kind: str  # one of KINDS
    threshold: float

    @property
    def label(self) -> str:
        return f"{self.kind.replace('_', '-')} {self.metric}={self.threshold:g}"


# Defaults: calibration may not get worse and accuracy may not fall beyond these, when beyond noise.
DEFAULT_RULES = (
    Rule("ece", "max_increase", 0.01),
    Rule("ece_adaptive", "max_increase", 0.01),
    Rule("nll", "max_increase", 0.02),
    Rule("brier", "max_increase", 0.01),
    Rule("accuracy", "max_decrease", 0.005),
)


def check_metric_name(metric: str, where: str) -> str:
    if "." not in metric and metric not in METRIC_NAMES:
        raise GateRuleError(
            f"{where}: unknown metric '{metric}'",
            hint=f"choose one of: {', '.join(METRIC_NAMES)}, or a dotted path into report.json",
        )
    return metric


def parse_rule(text: str, kind: str) -> Rule:
    """'ece=0.01' for the flag `--<kind>`."""
    flag = f"--{kind.replace('_', '-')}"
    name, sep, value = text.partition("=")
    if not sep:
        raise GateRuleError(f"{flag} '{text}' must be METRIC=VALUE, e.g. ece=0.01")
    try:
        threshold = float(value)
    except ValueError:
        raise GateRuleError(f"{flag} '{text}': '{value}' is not a number") from None
    if not math.isfinite(threshold):
        raise GateRuleError(f"{flag} '{text}': the threshold must be a finite number, not {value}")
    return Rule(check_metric_name(name.strip(), flag), kind, threshold)


def rules_from_config(table: dict[str, Any], source: str) -> list[Rule]:
    """Rules from a `[tool.vcal.gate]`-style table: `max-increase = {ece = 0.01}` and so on."""
    rules = []
    for key, entries in table.items():
        kind = key.replace("-", "_")
        if kind not in KINDS:
            raise GateRuleError(
                f"{source}: unknown gate key '{key}'", hint=f"use {', '.join(k.replace('_', '-') for k in KINDS)}"
            )
        if not isinstance(entries, dict):
            raise GateRuleError(f"{source}: '{key}' must be a table such as {{ece = 0.01}}")
        for name, value in entries.items():
            if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
                raise GateRuleError(f"{source}: {key}.{name} must be a finite number")
            rules.append(Rule(check_metric_name(name, source), kind, float(value)))
    return rules


def load_config(start: str | Path = ".") -> tuple[list[Rule], str | None]:
    """Rules from `vcal.toml` ([gate]) or `pyproject.toml` ([tool.vcal.gate]) in `start` or a parent."""
    here = Path(start).resolve()
    for d in (here, *here.parents):
        for name, keys in (("vcal.toml", ("gate",)), ("pyproject.toml", ("tool", "vcal", "gate"))):
            path = d / name
            if not path.is_file():
                continue
            try:
                data = tomllib.loads(path.read_text(encoding="utf-8"))
            except tomllib.TOMLDecodeError as e:
                raise GateRuleError(f"'{path}' is not valid TOML ({e})") from None
            for k in keys:
                data = data.get(k, {}) if isinstance(data, dict) else {}
            if data:
                return rules_from_config(data, str(path)), str(path)
    return [], None


def resolve(report: dict[str, Any], metric: str, source: str) -> float:
    """The figure `metric` of a report: `metrics[metric]`, or a dotted path."""
    if "." not in metric:
        metrics = report.get("metrics")
        node = metrics.get(metric) if isinstance(metrics, dict) else None
        if node is None and not (isinstance(metrics, dict) and metric in metrics):
            raise GateRuleError(f"report '{source}' has no figure '{metric}'")
    else:
        node = _walk(report, metric.split("."))
        if node is None:
            raise GateRuleError(f"report '{source}' has no figure '{metric}'")
    if not isinstance(node, int | float) or isinstance(node, bool):
        raise GateRuleError(f"'{metric}' in report '{source}' is not a number ({_short(node)})")
    if not math.isfinite(node):
        raise GateRuleError(f"'{metric}' in report '{source}' is {node}: a report with NaN or inf cannot pass a gate")
    return float(node)


def _short(value: Any, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def _walk(node: Any, parts: list[str]) -> Any:
    """Follow a dotted path, the longest key first, so keys holding dots (a budget of 7.65/255, an alpha of 0.1) are
    reachable: `conformal.lac.0.1.coverage`. None where the path leads nowhere."""
    while parts:
        j = next((j for j in range(len(parts), 0, -1) if isinstance(node, dict) and ".".join(parts[:j]) in node), 0)
        if not j:
            return None
        node, parts = node[".".join(parts[:j])], parts[j:]
    return node


def interval(report: dict[str, Any], metric: str) -> tuple[float, float] | None:
    """The bootstrap interval of a figure, where the report has one."""
    if "." not in metric:
        iv = report.get("intervals", {}).get(metric)
    elif ".metrics." in metric:
        head, _, leaf = metric.rpartition(".metrics.")
        node: Any = report
        for part in head.split("."):
            node = node.get(part, {}) if isinstance(node, dict) else {}
        iv = node.get("intervals", {}).get(leaf) if leaf and isinstance(node, dict) else None
    else:  # a row that holds its own intervals beside its figures (conformal.lac.0.1.coverage)
        parent, _, name = metric.rpartition(".")
        row = _walk(report, parent.split("."))
        iv = row.get("intervals", {}).get(name) if isinstance(row, dict) else None
    if not iv:
        return None
    ok = isinstance(iv, list | tuple) and len(iv) == 2 and all(isinstance(v, int | float) for v in iv)
    if not ok or not all(math.isfinite(v) for v in iv) or iv[0] > iv[1]:
        raise GateRuleError(
            f"the interval of '{metric}' in a report is {_short(iv)}: it must be [low, high], two finite numbers"
        )
    return (float(iv[0]), float(iv[1]))

"""The CI gate: compare a current report (or checkpoint) with a baseline, rule by rule.

A relative rule fails only when the change exceeds its threshold *and* is beyond noise:
- both sides checkpoints: a paired bootstrap on the same test samples (the same resampled indices for
  both models); the change is beyond noise when the 95% interval of the difference excludes 0;
- otherwise (reports): the difference must exceed 1.96 standard errors, with each side's standard
  error read off its 95% interval ((high - low) / 3.92) and the two combined as if independent.
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass, field
from typing import Any
from xml.etree import ElementTree as ET

from vcal_cli.gate.rules import DEFAULT_RULES, GateRuleError, Rule, interval, load_config, parse_rule, resolve
from vcal_cli.metrics.paired import paired_deltas  # the gate's noise model (re-exported)

__all__ = [
    "Rule",
    "RuleResult",
    "GateResult",
    "evaluate",
    "paired_deltas",
    "parse_rule",
    "load_config",
    "DEFAULT_RULES",
    "GateRuleError",
    "to_junit",
    "to_markdown",
]


@dataclass(frozen=True, kw_only=True)
class RuleResult:
    rule: Rule
    baseline: float
    current: float
    interval: str  # the evidence about noise, as shown to people
    beyond_noise: bool
    passed: bool

    @property
    def delta(self) -> float:
        return self.current - self.baseline

    @property
    def message(self) -> str:
        if self.passed:
            return "ok"
        r = self.rule
        if r.kind in ("max", "min"):
            return f"{r.metric} = {self.current:.4f} is {'above' if r.kind == 'max' else 'below'} {r.threshold:g}"
        return (
            f"{r.metric} {'rose' if r.kind == 'max_increase' else 'fell'} by {abs(self.delta):.4f} "
            f"(limit {r.threshold:g}), beyond noise"
        )


@dataclass(frozen=True, kw_only=True)
class GateResult:
    results: list[RuleResult]
    method: str  # how noise was judged
    baseline: str
    current: str
    warnings: list[str] = field(default_factory=list)  # sanity warnings of either report

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.results)

    @property
    def exit_code(self) -> int:
        return 0 if self.passed else 1

    def to_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "method": self.method,
            "baseline": self.baseline,
            "current": self.current,
            "warnings": list(self.warnings),
            "rules": [
                {
                    "rule": r.rule.label,
                    "metric": r.rule.metric,
                    "kind": r.rule.kind,
                    "threshold": r.rule.threshold,
                    "baseline": r.baseline,
                    "current": r.current,
                    "delta": r.delta,
                    "interval": r.interval,
                    "beyond_noise": r.beyond_noise,
                    "passed": r.passed,
                    "message": r.message,
                }
                for r in self.results
            ],
        }


def evaluate(
    rules: list[Rule],
    baseline: dict[str, Any],
    current: dict[str, Any],
    *,
    paired: dict[str, tuple[float, float]] | None = None,
    names: tuple[str, str] = ("baseline", "current"),
) -> list[RuleResult]:
    """Apply every rule; `paired` holds the paired-bootstrap delta intervals when both sides were checkpoints."""
    out = []
    for rule in rules:
        b, c = resolve(baseline, rule.metric, names[0]), resolve(current, rule.metric, names[1])
        if rule.kind in ("max", "min"):
            bad = c > rule.threshold if rule.kind == "max" else c < rule.threshold
            out.append(
                RuleResult(
                    rule=rule, baseline=b, current=c, interval="absolute bound", beyond_noise=True, passed=not bad
                )
            )
            continue
        worse = (c - b) > rule.threshold if rule.kind == "max_increase" else (b - c) > rule.threshold
        if paired is not None and rule.metric in paired:
            lo, hi = paired[rule.metric]
            noise = lo > 0 if rule.kind == "max_increase" else hi < 0
            shown = f"delta [{lo:+.4f}, {hi:+.4f}]"
        else:
            ib, ic = interval(baseline, rule.metric), interval(current, rule.metric)
            if ib and ic:
                # standard errors implied by the 95% intervals, combined as if independent (conservative:
                # both reports usually score the same test samples, whose errors correlate positively)
                se = math.hypot((ib[1] - ib[0]) / 3.92, (ic[1] - ic[0]) / 3.92)
                noise = abs(c - b) > 1.96 * se and ((c > b) == (rule.kind == "max_increase"))
                shown = f"[{ib[0]:.4f}, {ib[1]:.4f}] vs [{ic[0]:.4f}, {ic[1]:.4f}]"
            else:
                noise, shown = True, "no intervals"
        out.append(
            RuleResult(
                rule=rule, baseline=b, current=c, interval=shown, beyond_noise=noise, passed=not (worse and noise)
            )
        )
    return out


def to_junit(result: GateResult) -> str:
    """JUnit XML: one test case per rule, a <failure> for each failing one."""
    suite = ET.Element(
        "testsuite",
        name="vcal gate",
        tests=str(len(result.results)),
        failures=str(sum(not r.passed for r in result.results)),
        errors="0",
    )
    for r in result.results:
        case = ET.SubElement(suite, "testcase", classname="vcal.gate", name=r.rule.label)
        text = (
            f"baseline {r.baseline:.6f}, current {r.current:.6f}, delta {r.delta:+.6f}; {r.interval}; "
            f"noise judged by {result.method}"
        )
        if r.passed:
            ET.SubElement(case, "system-out").text = text
        else:
            ET.SubElement(case, "failure", message=r.message).text = text
    root = ET.Element("testsuites")
    root.append(suite)
    ET.indent(root)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def to_markdown(result: GateResult) -> str:
    """A summary fit for a pull-request comment or $GITHUB_STEP_SUMMARY."""
    e = html.escape
    head = "passed" if result.passed else f"**failed** ({sum(not r.passed for r in result.results)} rules)"
    lines = [
        f"### vcal gate: {head}",
        "",
        f"Baseline `{e(result.baseline)}`, current `{e(result.current)}`; noise judged by {result.method}.",
        "",
        "| rule | baseline | current | delta | interval | verdict |",
        "| --- | ---: | ---: | ---: | --- | --- |",
    ]
    for r in result.results:
        verdict = "pass" if r.passed else f"**FAIL**: {e(r.message)}"
        lines.append(
            f"| `{e(r.rule.label)}` | {r.baseline:.4f} | {r.current:.4f} | {r.delta:+.4f} | "
            f"{e(r.interval)} | {verdict} |"
        )
    return "\n".join(lines) + "\n"

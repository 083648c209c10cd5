"""The CI gate: compare a current report (or checkpoint) with a baseline, rule by rule
(`vcal_cli.gate.result` evaluates and renders; `vcal_cli.gate.rules` parses the rules)."""

from vcal_cli.gate.result import GateResult, RuleResult, evaluate, to_junit, to_markdown
from vcal_cli.gate.rules import DEFAULT_RULES, GateRuleError, Rule, load_config, parse_rule
from vcal_cli.metrics.paired import paired_deltas  # the gate's noise model

__all__ = [
    "DEFAULT_RULES",
    "GateResult",
    "GateRuleError",
    "Rule",
    "RuleResult",
    "evaluate",
    "load_config",
    "paired_deltas",
    "parse_rule",
    "to_junit",
    "to_markdown",
]

"""`vcal gate` and `vcal compare`: verdicts, noise handling, rule sources, outputs and bad input."""

from __future__ import annotations

import json
from pathlib import Path
from xml.etree import ElementTree as ET

import pytest
import torch

from vcal_cli import load_checkpoint, save_checkpoint
from vcal_cli.cli import app
from vcal_cli.gate import Rule, evaluate, paired_deltas
from vcal_cli.gate.rules import GateRuleError, load_config, parse_rule

from .conftest import SAMPLES
from .helpers import one_line_error

CNN = SAMPLES / "cnn_digits.safetensors"


@pytest.fixture
def overconfident(tmp_path: Path) -> Path:
    """The cnn sample with its logits scaled up 3x: same accuracy, much worse NLL."""
    m = load_checkpoint(CNN)
    with torch.no_grad():
        m.head.weight.mul_(3)
        m.head.bias.mul_(3)
    return save_checkpoint(m, tmp_path / "over.safetensors")


def _report(metrics: dict[str, float], intervals: dict[str, list[float]]) -> dict:
    return {"metrics": metrics, "intervals": intervals}


def test_evaluate_rules_by_hand() -> None:
    base = _report({"ece": 0.02, "accuracy": 0.9}, {"ece": [0.01, 0.03], "accuracy": [0.88, 0.92]})
    cur = _report({"ece": 0.10, "accuracy": 0.80}, {"ece": [0.09, 0.11], "accuracy": [0.78, 0.82]})
    rules = [
        Rule("ece", "max_increase", 0.01),
        Rule("accuracy", "max_decrease", 0.005),
        Rule("ece", "max", 0.2),
        Rule("accuracy", "min", 0.85),
    ]
    res = evaluate(rules, base, cur)
    assert [r.passed for r in res] == [False, False, True, False]
    assert "ece rose by 0.0800" in res[0].message and "accuracy fell" in res[1].message
    # a change inside the noise passes even above the threshold: se = hypot(0.2/3.92, 0.2/3.92) ~ 0.072
    wide = _report({"ece": 0.05}, {"ece": [0.0, 0.2]})
    assert evaluate([Rule("ece", "max_increase", 0.01)], _report({"ece": 0.02}, {"ece": [0.0, 0.2]}), wide)[0].passed
    # paired intervals decide when given
    res = evaluate([Rule("ece", "max_increase", 0.01)], base, cur, paired={"ece": (-0.01, 0.2)})
    assert res[0].passed and not res[0].beyond_noise


def test_paired_deltas_of_a_model_with_itself_are_zero() -> None:
    g = torch.Generator().manual_seed(0)
    logits, labels = torch.randn(200, 4, generator=g), torch.randint(0, 4, (200,), generator=g)
    d = paired_deltas(logits, logits, labels, n_bins=15, n_bootstrap=50, seed=0)
    assert all(lo == 0 and hi == 0 for lo, hi in d.values())
    d2 = paired_deltas(logits, logits * 3, labels, n_bins=15, n_bootstrap=50, seed=0)
    assert d2["nll"][0] > 0  # sharpening random logits makes NLL worse in every resample


def test_gate_checkpoint_against_itself_passes(runner) -> None:
    r = runner.invoke(app, ["gate", str(CNN), "--baseline", str(CNN), "--bootstrap", "50"])
    assert r.exit_code == 0, r.output
    assert "paired bootstrap" in r.stdout and "FAIL" not in r.stdout


def test_gate_overconfident_checkpoint_fails_and_writes_junit_and_markdown(
    runner, overconfident: Path, tmp_path: Path
) -> None:
    r = runner.invoke(
        app,
        [
            "gate",
            str(overconfident),
            "--baseline",
            str(CNN),
            "--bootstrap",
            "100",
            "--junit",
            "gate.xml",
            "--markdown",
            "gate.md",
        ],
    )
    assert r.exit_code == 1, r.output
    assert "gate failed: max-increase nll=0.02" in r.stderr and "FAIL" in r.stdout
    suite = ET.parse(tmp_path / "gate.xml").getroot().find("testsuite")
    assert suite.get("tests") == "5" and suite.get("failures") == "1"
    failed = [c.get("name") for c in suite.iter("testcase") if c.find("failure") is not None]
    assert failed == ["max-increase nll=0.02"]
    md = (tmp_path / "gate.md").read_text()
    assert "**failed**" in md and "| `max-increase nll=0.02` |" in md


def test_gate_between_reports_and_rules_from_flags_and_config(runner, overconfident: Path, tmp_path: Path) -> None:
    assert runner.invoke(app, ["audit", str(CNN), "-o", "base"]).exit_code == 0
    assert runner.invoke(app, ["audit", str(overconfident), "-o", "new"]).exit_code == 0
    r = runner.invoke(app, ["gate", "new/report.json", "-b", "base/report.json", "--json"])
    out = json.loads(r.stdout)
    assert r.exit_code == 1 and "intervals" in out["method"]
    assert [x["metric"] for x in out["rules"] if not x["passed"]] == ["nll"]
    r = runner.invoke(app, ["gate", "base/report.json", "-b", "base/report.json", "--max", "ece=0.01", "--json"])
    # regression value: the shipped CNN's ECE-15 on digits:test as vcal computes it (the README's first audit shows
    # the same 0.0255); torchmetrics agrees on this sample to 1e-6 (tests/test_metrics.py)
    assert r.exit_code == 1 and json.loads(r.stdout)["rules"][0]["message"] == "ece = 0.0255 is above 0.01"
    (tmp_path / "pyproject.toml").write_text("[tool.vcal.gate]\nmax = {ece = 0.5}\nmin = {accuracy = 0.99}\n")
    r = runner.invoke(app, ["gate", "base/report.json", "-b", "base/report.json", "--json"])
    rules = json.loads(r.stdout)["rules"]
    assert r.exit_code == 1 and [x["rule"] for x in rules] == ["max ece=0.5", "min accuracy=0.99"]


def test_config_files(tmp_path: Path) -> None:
    (tmp_path / "vcal.toml").write_text('[gate]\nmax-increase = {ece = 0.02, "heads.vtst.metrics.ece" = 0.01}\n')
    rules, source = load_config(tmp_path)
    assert source.endswith("vcal.toml") and rules[1].metric == "heads.vtst.metrics.ece"
    (tmp_path / "vcal.toml").write_text("[gate]\nmax-increase = {ecee = 0.02}\n")
    with pytest.raises(GateRuleError, match="unknown metric 'ecee'"):
        load_config(tmp_path)
    with pytest.raises(GateRuleError, match="METRIC=VALUE"):
        parse_rule("ece", "max")


@pytest.mark.parametrize(
    "case",
    ["malformed report", "missing baseline", "unknown metric", "bad rule value", "missing dotted figure", "not json"],
)
def test_gate_bad_input(runner, tmp_path: Path, case: str) -> None:
    assert runner.invoke(app, ["audit", str(CNN), "-o", "base", "--bootstrap", "0"]).exit_code == 0
    (tmp_path / "bad.json").write_text(json.dumps({"schema_version": 1, "metrics": {"ece": 0.1}}))
    (tmp_path / "junk.json").write_text("{not json")
    args, expect = {
        "malformed report": (["bad.json", "-b", "base/report.json"], "lacks"),
        "missing baseline": (["base/report.json", "-b", "nope.json"], "baseline 'nope.json' does not exist"),
        "unknown metric": (["base/report.json", "-b", "base/report.json", "--max", "ecee=0.1"], "unknown metric"),
        "bad rule value": (["base/report.json", "-b", "base/report.json", "--max", "ece=high"], "not a number"),
        "missing dotted figure": (
            ["base/report.json", "-b", "base/report.json", "--max", "shift.ece=0.1"],
            "no figure 'shift.ece'",
        ),
        "not json": (["junk.json", "-b", "base/report.json"], "not valid JSON"),
    }[case]
    line = one_line_error(runner.invoke(app, ["gate", *args]))
    assert expect in line, line


def test_compare_table_and_png(runner, overconfident: Path, tmp_path: Path) -> None:
    assert runner.invoke(app, ["audit", str(CNN), "-o", "a", "--bootstrap", "0"]).exit_code == 0
    assert runner.invoke(app, ["audit", str(overconfident), "-o", "b", "--bootstrap", "0"]).exit_code == 0
    r = runner.invoke(app, ["compare", "a/report.json", "b/report.json", "-o", "cmp"])
    assert r.exit_code == 0, r.output
    assert "a/report.json" in r.stdout and "ECE-15" in r.stdout
    assert (tmp_path / "cmp" / "compare.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "at least two" in one_line_error(runner.invoke(app, ["compare", "a/report.json"]))


def test_read_report_reads_a_schema_1_report(tmp_path) -> None:
    """A report written before `details` and `summary` existed still reads, and gets a summary."""
    from vcal_cli.reports import read_report

    metrics = {k: 0.1 for k in ("accuracy", "nll", "brier", "ece", "ece_adaptive", "mce", "classwise_ece", "aurc")}
    old = {
        "schema_version": 1,
        "vcal_version": "0.1.0",
        "created": "2026-11-01T00:00:00Z",
        "checkpoint": {"path": "m.safetensors"},
        "data": {"name": "digits", "split": "test", "n": 10},
        "metrics": metrics,
        "intervals": {},
        "reliability": [],
        "settings": {"bins": 15},
    }
    (tmp_path / "old.json").write_text(json.dumps(old))
    rep = read_report(tmp_path / "old.json")
    assert rep["metrics"] == metrics and rep["summary"]["verdict"] == "unknown"
    (tmp_path / "new.json").write_text(json.dumps({**old, "schema_version": 99}))
    with pytest.raises(Exception, match="schema 99"):
        read_report(tmp_path / "new.json")

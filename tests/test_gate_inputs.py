"""`vcal gate` on bad input: outputs that would overwrite an input, NaN anywhere, values that are not numbers. Each is
one `error:` line with exit 2, and no input is changed."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from vcal_cli.cli import app

from .helpers import hand_report, one_line_error


def _report(path: Path, **metrics: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(hand_report(metrics)))
    return path


def _sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


@pytest.mark.parametrize("flag", ["--junit", "--markdown"])
@pytest.mark.parametrize("which", ["baseline", "current"])
def test_an_output_that_is_an_input_is_refused(runner, tmp_path: Path, flag: str, which: str) -> None:
    base, cur = _report(tmp_path / "base" / "report.json"), _report(tmp_path / "cur" / "report.json")
    target = base if which == "baseline" else cur
    before = _sha(target)
    line = one_line_error(runner.invoke(app, ["gate", str(cur), "--baseline", str(base), flag, str(target)]))
    assert flag in line and "input" in line
    assert _sha(target) == before


def test_an_output_through_a_link_is_refused(runner, tmp_path: Path) -> None:
    base, cur = _report(tmp_path / "b.json"), _report(tmp_path / "c.json")
    (tmp_path / "link.xml").symlink_to(base)
    line = one_line_error(runner.invoke(app, ["gate", str(cur), "--baseline", str(base), "--junit", "link.xml"]))
    assert "--junit" in line and "input" in line


def test_an_output_that_is_a_directory_is_refused(runner, tmp_path: Path) -> None:
    base, cur = _report(tmp_path / "b.json"), _report(tmp_path / "c.json")
    (tmp_path / "d").mkdir()
    line = one_line_error(runner.invoke(app, ["gate", str(cur), "--baseline", str(base), "--junit", "d"]))
    assert "--junit" in line and "directory" in line


@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity"])
def test_nan_in_a_report_never_passes(runner, tmp_path: Path, value: str) -> None:
    base = _report(tmp_path / "b.json")
    cur = tmp_path / "c.json"
    cur.write_text(_report(tmp_path / "tmp.json").read_text().replace('"ece": 0.02', f'"ece": {value}', 1))
    line = one_line_error(runner.invoke(app, ["gate", str(cur), "--baseline", str(base)]))
    assert value in line and str(cur) in line


@pytest.mark.parametrize("value", ["0.02", None, [0.02], True])
def test_a_figure_that_is_not_a_number_is_one_line(runner, tmp_path: Path, value: object) -> None:
    base, cur = _report(tmp_path / "b.json"), _report(tmp_path / "c.json", ece=value)
    line = one_line_error(runner.invoke(app, ["gate", str(cur), "--baseline", str(base)]))
    assert "'ece'" in line and "not a number" in line


@pytest.mark.parametrize("threshold", ["nan", "inf", "-inf"])
def test_a_rule_threshold_that_is_not_finite_is_refused(runner, tmp_path: Path, threshold: str) -> None:
    base, cur = _report(tmp_path / "b.json"), _report(tmp_path / "c.json")
    line = one_line_error(
        runner.invoke(app, ["gate", str(cur), "--baseline", str(base), "--max-increase", f"ece={threshold}"])
    )
    assert "--max-increase" in line and "finite" in line


@pytest.mark.parametrize("iv", [[0.02], [0.03, 0.01], ["a", "b"], [0.01, None]])
def test_a_malformed_interval_is_one_line(runner, tmp_path: Path, iv: list) -> None:
    base = _report(tmp_path / "b.json")
    cur = _report(tmp_path / "c.json", ece=0.5)
    rep = json.loads(cur.read_text())
    rep["intervals"]["ece"] = iv
    cur.write_text(json.dumps(rep))
    line = one_line_error(runner.invoke(app, ["gate", str(cur), "--baseline", str(base)]))
    assert "interval of 'ece'" in line

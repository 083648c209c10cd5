"""Extending vcal: a toy head is one file (tests/extension/toy_head.py) and appears in `vcal heads`,
`vcal retrain --help` and the registry-driven head tests; a toy report section is one file
(tests/extension/toy_section.py) and appears in the terminal, report.md, report.html and report.json."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
RUN = (
    "import sys; sys.path.insert(0, {d!r}); import {plugin}; from vcal_cli.cli import main; sys.argv = {argv!r}; main()"
)


def _vcal(*argv: str, plugin: str = "toy_head") -> subprocess.CompletedProcess[str]:
    code = RUN.format(d=str(HERE / "extension"), plugin=plugin, argv=["vcal", *argv])
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=False)


def test_a_toy_head_is_one_file() -> None:
    heads = _vcal("heads")
    assert heads.returncode == 0 and "toy" in heads.stdout and "a toy: the original logits" in heads.stdout
    help_ = _vcal("retrain", "--help")
    words = " ".join(help_.stdout.replace("│", " ").split())  # the help as text, whatever the panel's wrapping
    assert help_.returncode == 0 and "--shrink" in words and "(toy head)" in words
    # the registry-driven tests pick it up: the head contract runs on it
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "toy_head",
            str(HERE / "test_heads.py"),
            "-k",
            "contract and toy",
            "-p",
            "no:cacheprovider",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={**os.environ, "PYTHONPATH": str(HERE / "extension")},
    )
    assert r.returncode == 0 and "1 passed" in r.stdout, r.stdout[-2000:] + r.stderr[-2000:]


def test_a_toy_section_is_one_file(tmp_path: Path) -> None:
    """tests/extension/toy_section.py computes its data per predictor; it shows up in the terminal, report.md,
    report.html and report.json (with its gate summary), for an audit and for every head of a retrain."""
    sample = str(HERE.parent / "sample_checkpoints" / "mlp_digits.safetensors")
    common = ["--data", "digits", "--bins", "10", "--bootstrap", "0", "--cache-dir", str(tmp_path / "cache")]
    audit = _vcal("audit", sample, *common, "--no-suggest", "--out", str(tmp_path / "a"), plugin="toy_section")
    assert audit.returncode == 0, audit.stderr[-2000:]
    rep = json.loads((tmp_path / "a" / "report.json").read_text())
    # independent check: the samples at confidence >= 0.9 are those of the last equal-width bin of 10
    above = sum(b["count"] for b in rep["reliability"] if b["lo"] >= 0.9 - 1e-12)
    assert 0 < above < rep["data"]["n"]
    assert "Toy:" in audit.stdout and f"original │ {above} " in audit.stdout  # the terminal table (title wraps)
    assert rep["toy"] == {"confident": above, "share": pytest.approx(above / rep["data"]["n"], abs=1e-12)}
    assert rep["toy_summary"] == rep["toy"]["share"]
    assert "## Toy section" in (tmp_path / "a" / "report.md").read_text()
    assert "<section id=toy><h2>Toy section</h2>" in (tmp_path / "a" / "report.html").read_text()
    assert "<a href=#toy>" in (tmp_path / "a" / "report.html").read_text()
    retrain = _vcal(
        "retrain", sample, *common, "--head", "temperature", "--out", str(tmp_path / "r"), plugin="toy_section"
    )
    assert retrain.returncode == 0, retrain.stderr[-2000:]
    heads = json.loads((tmp_path / "r" / "report.json").read_text())["heads"]
    assert heads["original"]["toy"] == rep["toy"]  # the same test predictions as the audit
    assert 0 <= heads["temperature"]["toy"]["confident"] <= rep["data"]["n"]
    assert "Toy:" in retrain.stdout and f"temperature │ {heads['temperature']['toy']['confident']} " in retrain.stdout
    md = (tmp_path / "r" / "report.md").read_text()
    assert f"| temperature | {heads['temperature']['toy']['confident']} |" in md


def test_sections_come_in_their_order_whatever_the_import_order() -> None:
    from vcal_cli.reports.sections import list_sections

    keys = [s.key for s in list_sections()]
    expected = [
        "metrics",
        "ensemble",
        "calibration",
        "verdicts",
        "reliability",
        "selective",
        "conformal",
        "risk_control",
        "per-class",
        "hierarchy",
        "ood",
        "shift",
        "protocol",
    ]
    assert keys[: len(expected) + 1] == [*expected, "adversarial"]

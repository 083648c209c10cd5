"""Extending vcal: a toy head is one file (tests/extension/toy_head.py) and appears in `vcal heads`,
`vcal retrain --help` and the registry-driven head tests; a toy report section is one `Section` and appears
in report.md and report.html (the terminal and report.json take theirs from the report dict)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from vcal_cli.reports import documents

HERE = Path(__file__).resolve().parent
RUN = (
    "import sys; sys.path.insert(0, {d!r}); import toy_head; from vcal_cli.cli import main; sys.argv = {argv!r}; main()"
)


def _vcal(*argv: str) -> subprocess.CompletedProcess[str]:
    code = RUN.format(d=str(HERE / "extension"), argv=["vcal", *argv])
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=False)


def test_a_toy_head_is_one_file() -> None:
    heads = _vcal("heads")
    assert heads.returncode == 0 and "toy" in heads.stdout and "a toy: the original logits" in heads.stdout
    help_ = _vcal("retrain", "--help")
    assert help_.returncode == 0 and "--shrink" in help_.stdout and "toy head" in help_.stdout
    # the registry-driven tests pick it up: the head contract runs on it
    r = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "toy_head", str(HERE / "test_heads.py"), "-k", "contract and toy",
         "-p", "no:cacheprovider"],
        capture_output=True, text=True, timeout=300, check=False,
        env={**os.environ, "PYTHONPATH": str(HERE / "extension")},
    )  # fmt: skip
    assert r.returncode == 0 and "1 passed" in r.stdout, r.stdout[-2000:] + r.stderr[-2000:]


def test_a_toy_section_is_one_entry(monkeypatch) -> None:  # noqa: ANN001
    toy = documents.Section("toy", "Toy section", lambda rep: [("toy caption", ["a", "b"], [["x", "1.0000"]])])
    monkeypatch.setattr(documents, "SECTIONS", [*documents.SECTIONS, toy])
    report = {"checkpoint": {"path": "m"}, "data": {"name": "d", "split": "test", "n": 1}, "settings": {"bins": 15},
              "metrics": {k: 0.5 for k in ("accuracy", "nll", "brier", "ece", "ece_adaptive", "mce", "classwise_ece",
                                           "aurc")},
              "intervals": {}, "reliability": [], "vcal_version": "0", "created": "now"}  # fmt: skip
    md = documents.to_markdown(report, {}, "t")
    page = documents.to_html(report, {}, "t")
    assert "## Toy section" in md and "| x | 1.0000 |" in md
    assert "<section id=toy><h2>Toy section</h2>" in page and "<a href=#toy>" in page

"""The coverage ledger in docs/metrics.md: up to date with the studies' tables, and what it claims holds."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture(scope="module")
def ledger():
    sys.path.insert(0, str(BENCH))  # the script imports its sibling `_timing`
    try:
        spec = importlib.util.spec_from_file_location("coverage_summary", BENCH / "coverage_summary.py")
        mod = importlib.util.module_from_spec(spec)
        sys.modules["coverage_summary"] = mod  # its dataclass looks its module up there
        spec.loader.exec_module(mod)
        yield mod
    finally:
        sys.path.remove(str(BENCH))
        sys.modules.pop("coverage_summary", None)


def test_the_docs_ledger_is_the_studies_tables_read_now(ledger):
    cells, exact = ledger.all_cells()
    _, rows = ledger.block(ledger.DOCS / "metrics.md", "bench_intervals")
    assert len(rows) >= 150  # the main table was read, not an empty block
    page = (ledger.DOCS / "metrics.md").read_text()
    assert ledger.ledger(cells, exact) in page, "rerun benchmarks/coverage_summary.py --write-docs"


def test_no_interval_is_short_beyond_chance_but_the_monotone_estimators_on_a_non_monotone_curve(ledger):
    cells, _ = ledger.all_cells()
    short = [cells[i] for i in ledger.beyond_chance(cells)[0]]
    assert {c.where.split(",")[0] for c in short} <= {"two-sided"}
    # sweep, and CORP against the true L1 error: both fit a monotone curve to one that is not
    assert {c.where.rsplit(", ", 1)[1] for c in short} <= {"ece_sweep", "ece_corp"}
    assert all(c.family.startswith("CORP against the true L1") for c in short if c.where.endswith("ece_corp"))
    assert not any(c.where.endswith("ece_corp_iso") for c in short)  # CORP holds its own estimand
    assert all(c.own_point == 1.0 for c in cells if c.own_point is not None)
    normal = [c.coverage for c in cells if c.method == ledger.NORMAL]
    assert abs(sum(normal) / len(normal) - 0.95) < 0.01  # centred on the nominal level, over 300 cells


def test_a_cell_is_flagged_only_beyond_its_draws_noise(ledger):
    cell = ledger.Cell("f", "m", "w", 0.0, 200)
    for coverage, below, above in (
        (0.95, False, False),
        (0.915, False, False),
        (0.85, True, False),
        (1.0, False, True),
    ):
        cell.coverage = coverage
        # one test alone at 5%: 0.915 of 200 is within noise of 0.93, 0.85 is not; 200 of 200 has p = 0.97^200 = 0.002
        # (alone; not after Holm over the ledger's thousand hypotheses)
        assert (cell.p_below() < 0.05, cell.p_above() < 0.05) == (below, above)
    cell.coverage, cell.draws = 1.0, 1000
    assert cell.p_above() == pytest.approx(0.97**1000)


def test_no_test_rejects_a_calibrated_model_beyond_its_size(ledger):
    metrics = ledger.DOCS / "metrics.md"
    text, over = ledger.size_section(metrics)
    assert over == []  # every test's rate on the calibrated models within chance of at most 0.05
    assert "| verdict (Holm) |" in text and "false alarms" in text  # the tests and the gate were read
    assert text in metrics.read_text(), "rerun benchmarks/coverage_summary.py --write-docs"

"""The coverage ledger: every interval vcal prints, across every coverage study, in one table.

The studies (`bench_intervals.py`, `bench_paired_intervals.py`, `bench_hierarchy_intervals.py`,
`bench_conformal_intervals.py`, `bench_ood_intervals.py`) each write their table into a docs page. This script reads
those tables back, groups their cells by the interval method that made them, and asks of each cell the question
the target "93-97% coverage" really poses at a finite number of draws: is the observed coverage beyond chance below
0.93, or beyond chance above 0.97? A cell of 200 draws whose true coverage is 0.95 lands outside [0.93, 0.97] about
one time in seven (0.14), so counting raw cells outside the band measures the draw count, not the interval. Each
cell gets two exact binomial p-values (below: P(X <= x | 0.93); above: P(X >= x | 0.97)), and Holm's step-down
rule over every cell and both directions keeps the ledger's family-wise error at 5%.

Cells whose truth is exact by construction are left out and counted (a paired change between a model and itself, the
accuracy change under a temperature, a figure whose interval has width 0): they cover trivially. The tests' size is
read the same way: each test's rejection rate on every calibrated case of `bench_intervals.py`, against at most 0.05
(P(X >= x | 0.05), Holm), with the gate's false alarms and power beside it.

    python benchmarks/coverage_summary.py [--write-docs]

Reads docs/metrics.md, docs/conformal.md and docs/robustness.md; `--write-docs` puts the ledger in docs/metrics.md
between the `coverage_summary` markers. It runs in a second; rerun it after any study.
"""

from __future__ import annotations

import argparse
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from _timing import write_block
from scipy.stats import binom

from vcal_cli.metrics.calibration_tests import holm

DOCS = Path(__file__).resolve().parents[1] / "docs"
LOW, HIGH = 0.93, 0.97
SIZE = 0.05  # a test's claimed size at alpha 0.05
NORMAL = "normal (estimate -/+ 1.96 bootstrap sd)"
BIAS = "bias-bounded"
NORMAL_FIGURES = {"accuracy", "nll", "brier", "aurc", "gap"}
BINNED = {"ece", "ece_adaptive", "classwise_ece"}
ESTIMATORS = {"ece_sweep", "ece_l2_debiased", "ece_corp", "ece_smooth"}
CORP_L1 = "CORP against the true L1 error (a non-monotone curve: not its estimand)", BIAS


def p_at_least(hits: int, draws: int, rate: float) -> float:
    """P(X >= hits) for X ~ Binomial(draws, rate)."""
    return float(binom.sf(hits - 1, draws, rate))


@dataclass
class Cell:
    family: str
    method: str
    where: str
    coverage: float
    draws: int
    own_point: float | None = None

    @property
    def hits(self) -> int:
        return round(self.coverage * self.draws)

    def p_below(self) -> float:
        return float(binom.cdf(self.hits, self.draws, LOW))

    def p_above(self) -> float:
        return p_at_least(self.hits, self.draws, HIGH)


def _body(page: Path, name: str) -> str:
    text = page.read_text()
    m = re.search(rf"<!-- {re.escape(name)}: start -->(.*?)<!-- {re.escape(name)}: end -->", text, re.S)
    if not m:
        raise SystemExit(f"{page}: no block {name}; run its study with --write-docs first")
    return m.group(1)


def block(page: Path, name: str, table: int = 0) -> tuple[int, list[dict[str, str]]]:
    """The draws per case and the rows (column name -> cell) of one table (the first by default) in a page's
    block."""
    body = _body(page, name)
    draws = int(re.search(r"(\d+) (?:draws|pairs of reports) per", body).group(1))
    groups, run = [], []
    for ln in [*body.splitlines(), ""]:
        if ln.startswith("|"):
            run.append(ln)
        elif run:
            groups.append(run)
            run = []
    lines = groups[table]
    head = [c.strip() for c in lines[0].strip("|").split("|")]
    rows = [dict(zip(head, [c.strip() for c in ln.strip("|").split("|")], strict=True)) for ln in lines[2:]]
    return draws, rows


def _interval_blocks(page: Path) -> list[str]:
    """The names of the page's `bench_intervals*` blocks."""
    return re.findall(r"<!-- (bench_intervals[a-z0-9_]*): start -->", page.read_text())


def _metric_family(fig: str) -> tuple[str, str] | None:
    if fig in NORMAL_FIGURES:
        return "accuracy, NLL, Brier, AURC, gap", NORMAL
    if fig in BINNED:
        return "ECE-15, adaptive, classwise ECE", BIAS
    if fig in ESTIMATORS or fig == "ece_corp_iso":
        return "estimator table (sweep, L2, CORP, smooth)", BIAS
    return None


def metric_cells(page: Path) -> list[Cell]:
    """The coverage rows of every `bench_intervals*` block. CORP is scored against its own estimand, the L1 gap to
    the isotonic fit of the true curve (`ece_corp_iso`), where the case has that row; where that estimand differs from
    the true L1 error (a non-monotone curve), CORP against the true L1 error is a family of its own, shown, not
    counted with the estimators."""
    out = []
    for name in _interval_blocks(page):
        draws, rows = block(page, name)
        iso = {(r["kind"], r["K"], r["n"]): r["population"] for r in rows if r["figure"] == "ece_corp_iso"}
        for r in rows:
            fig, case = r["figure"], (r["kind"], r["K"], r["n"])
            family = _metric_family(fig)
            if fig == "ece_corp" and iso.get(case) == r["population"]:
                continue  # a monotone curve: the ece_corp_iso row is this very cell
            if fig == "ece_corp" and (case in iso or r["kind"] == "two-sided"):
                family = CORP_L1
            if family is None:
                continue
            where = f"{r['kind']}, K={r['K']}, n={r['n']}, {fig}"
            out.append(Cell(*family, where, float(r["coverage"]), draws, float(r["holds own point"])))
    return out


def paired_cells(page: Path) -> tuple[list[Cell], int]:
    draws, rows = block(page, "bench_paired_intervals")
    out, exact = [], 0
    for r in rows:
        for col in ("accuracy (change)", "nll (change)", "brier (change)", "ece (change)"):
            if r["T"] == "1.0" or col.startswith("accuracy"):
                exact += 1  # B = A, or a temperature keeps every argmax: the change is exactly 0
                continue
            cov = float(r[col].split("/")[0])
            fam = ("paired ECE change", BIAS) if col.startswith("ece") else ("paired NLL, Brier changes", NORMAL)
            out.append(Cell(*fam, f"{r['kind']}, n={r['n']}, T={r['T']}, {col}", cov, draws))
    return out, exact


def hierarchy_cells(page: Path) -> tuple[list[Cell], int]:
    draws, rows = block(page, "hierarchy-intervals")
    out, exact = [], 0
    for r in rows:
        if float(r["mean width"]) == 0:
            exact += 1  # avg_hdist_at_K over every class: the same for every ranking
            continue
        where = f"{r['kind']}, K={r['K']}, n={r['n']}, {r['figure']}"
        own = float(r["holds own point"])
        out.append(Cell("hierarchy rows and changes", NORMAL, where, float(r["coverage"]), draws, own))
    return out, exact


def conformal_cells(page: Path) -> list[Cell]:
    draws, rows = block(page, "bench_conformal_intervals")
    out = []
    for r in rows:
        where = f"{r['kind']}, K={r['K']}, n={r['n val / test']}, {r['score']}"
        out.append(Cell("prediction sets: coverage", NORMAL, where, float(r["coverage interval holds"]), draws))
        out.append(Cell("prediction sets: set size", NORMAL, where, float(r["set-size interval holds"]), draws))
        out.append(Cell("prediction sets: CovGap", BIAS, where, float(r["CovGap interval holds"]), draws))
    return out


def ood_cells(page: Path) -> list[Cell]:
    draws, rows = block(page, "bench_ood_intervals")
    out = []
    for r in rows:
        where = f"{r['AUROC gap (delta)']}, rho={r['rho']}, n={r['n ID / OOD']}"
        for col in [c for c in r if c.endswith("cover")]:
            out.append(Cell("OOD: AUROC, AUPR, FPR95, paired", "percentile", f"{where}, {col}", float(r[col]), draws))
    return out


def size_section(page: Path) -> tuple[str, list[tuple[str, float]]]:
    """Every test's rejection rate on the calibrated models (its size; at most 0.05 is the claim), with the tests
    of a rate above 0.05 beyond chance (exact binomial, Holm over every cell), and the gate's line."""
    cells: dict[str, list[tuple[str, float, int]]] = defaultdict(list)
    for name in _interval_blocks(page):
        draws, rows = block(page, name, table=1)
        for r in rows:
            if r["kind"] != "calibrated":
                continue
            for test, rate in list(r.items())[3:]:
                cells[test].append((f"K={r['K']}, n={r['n']}", float(rate), draws))
    p = {
        f"{test}|{where}": p_at_least(round(rate * draws), draws, SIZE)
        for test, rows in cells.items()
        for where, rate, draws in rows
    }
    over = {k for k, v in holm(p).items() if v}
    lines = [
        f"Each test's rejection rate at 5% on the calibrated models (its size), {len(p)} cells; above {SIZE} "
        "beyond chance: the exact binomial test, Holm over every cell.",
        "",
        "| test | cases | rate (min-max) | mean | above 0.05 | above 0.05 beyond chance |",
        "| --- | ---: | --- | ---: | ---: | ---: |",
    ]
    for test, rows in cells.items():
        rates = [r for _, r, _ in rows]
        beyond = sum(f"{test}|{w}" in over for w, _, _ in rows)
        lines.append(
            f"| {test} | {len(rows)} | {min(rates):.3f}-{max(rates):.3f} | {sum(rates) / len(rates):.3f} | "
            f"{sum(r > SIZE for r in rates)} | {beyond} |"
        )
    gate = re.search(r"Gate, default rules.*", _body(page, "bench_intervals"))
    if gate:
        lines += ["", gate.group(0)]
    return "\n".join(lines), [(k, p[k]) for k in sorted(over)]


def all_cells() -> tuple[list[Cell], int]:
    """Every coverage cell of the docs' studies, and the count of those left out as exact by construction."""
    metrics = DOCS / "metrics.md"
    paired, exact_paired = paired_cells(metrics)
    hierarchy, exact_hier = hierarchy_cells(metrics)
    cells = metric_cells(metrics) + paired + hierarchy
    cells += conformal_cells(DOCS / "conformal.md") + ood_cells(DOCS / "robustness.md")
    return cells, exact_paired + exact_hier


def beyond_chance(cells: list[Cell]) -> tuple[set[int], set[int]]:
    """The indices of the cells below LOW and above HIGH beyond chance, Holm over every cell and both sides."""
    p = {f"below {i}": c.p_below() for i, c in enumerate(cells)} | {
        f"above {i}": c.p_above() for i, c in enumerate(cells)
    }
    rejected = [key.split() for key, r in holm(p).items() if r]
    return {int(i) for side, i in rejected if side == "below"}, {int(i) for side, i in rejected if side == "above"}


def ledger(cells: list[Cell], exact: int) -> str:
    short, over = beyond_chance(cells)
    fams: dict[tuple[str, str], list[int]] = defaultdict(list)
    for i, c in enumerate(cells):
        fams[(c.family, c.method)].append(i)
    lines = [
        f"Every cell of the coverage studies, by interval; a cell is one figure of one case. Beyond chance: the exact "
        f"binomial test at the cell's draw count that its coverage is below {LOW} or above {HIGH}, Holm over all "
        f"{len(cells)} cells and both sides (family-wise 5%). {exact} cells whose truth is exact by construction "
        f"are left out.",
        "",
        "| figures | interval | cells | coverage (min-max) | mean | outside 0.93-0.97 | below 0.93 beyond chance "
        "| above 0.97 beyond chance | holds own point |",
        "| --- | --- | ---: | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    flagged = []
    for (fam, method), idx in fams.items():
        cov = [cells[i].coverage for i in idx]
        below = [i for i in idx if i in short]
        above = [i for i in idx if i in over]
        flagged += [(cells[i], "below") for i in below] + [(cells[i], "above") for i in above]
        own = [cells[i].own_point for i in idx if cells[i].own_point is not None]
        lines.append(
            f"| {fam} | {method} | {len(idx)} | {min(cov):.3f}-{max(cov):.3f} | {sum(cov) / len(cov):.3f} | "
            f"{sum(not LOW <= c <= HIGH for c in cov)} | {len(below)} | {len(above)} | "
            f"{f'{min(own):.2f}' if own else 'n/a'} |"
        )
    lines += ["", "Cells beyond chance:", ""]
    lines += [f"- {side} {LOW if side == 'below' else HIGH}: {c.where} ({c.coverage:.3f})" for c, side in flagged]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--write-docs", action="store_true")
    a = ap.parse_args()
    metrics = DOCS / "metrics.md"
    text = ledger(*all_cells()) + "\n\n" + size_section(metrics)[0]
    print(text)
    if a.write_docs:
        write_block(metrics, "coverage_summary", text)


if __name__ == "__main__":
    main()

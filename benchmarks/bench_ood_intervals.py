"""Coverage of the OOD metrics' intervals and of the paired differences between detectors, by simulation.

Two detectors score the same samples: in-distribution scores are standard normal, OOD scores normal with mean `d`
(one detector) and `d + delta` (the other), each detector's scores correlated across detectors by `rho` (they read
the same inputs). The population values are known in closed form: AUROC = Phi(d / sqrt 2), FPR@95TPR = 1 - Phi(d -
z95) with z95 = Phi^-1(0.95); AUPR from a 2,000,000-row reference sample. Each draw is a fresh sample of `--id` ID
and `--ood` OOD rows; vcal's stratified bootstrap (`metrics.ood.resampled_metrics`, 200 resamples, as `vcal audit
--ood` runs it) and vcal's own interval functions (`evaluations.ood.metric_intervals`, `paired_changes`, what an
audit writes) give each metric's 95% percentile interval and the paired interval of the difference between the two
detectors. Printed: each interval's coverage of the population value over `--draws` draws (nominal 0.95), and the
paired difference's; `--write-docs` puts the table in docs/robustness.md.

    python benchmarks/bench_ood_intervals.py [--draws 400] [--id 1000] [--ood 500] [--write-docs]
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import torch
from _timing import write_block

from vcal_cli.evaluations.ood import metric_intervals, paired_changes
from vcal_cli.metrics.compute import resample_counts
from vcal_cli.metrics.ood import OOD_METRICS, resampled_metrics

DOCS = Path(__file__).resolve().parents[1] / "docs" / "robustness.md"
Z95 = 1.6448536269514722


def phi(x: float) -> float:
    return 0.5 * (1 + math.erf(x / math.sqrt(2)))


def draw(n_id: int, n_ood: int, d: float, delta: float, rho: float, g: torch.Generator) -> tuple:
    """Scores of two detectors on the same ID and OOD rows (correlated by rho)."""

    def pair(n: int, shift_a: float, shift_b: float) -> tuple[torch.Tensor, torch.Tensor]:
        common, own = torch.randn(n, generator=g, dtype=torch.float64), torch.randn(n, generator=g, dtype=torch.float64)
        a = common + shift_a
        b = rho * common + math.sqrt(1 - rho**2) * own + shift_b
        return a, b

    ia, ib = pair(n_id, 0.0, 0.0)
    oa, ob = pair(n_ood, d, d + delta)
    return (ia, oa), (ib, ob)


def population(d: float, n_ref: int, g: torch.Generator) -> dict[str, float]:
    """Every metric's population value for ID N(0, 1) against OOD N(d, 1) (AUPR at this class ratio, from a
    large reference sample; the others in closed form)."""
    from vcal_cli.metrics.ood import aupr, aupr_in

    ref_id = torch.randn(n_ref, generator=g, dtype=torch.float64)
    ref_ood = torch.randn(n_ref // 2, generator=g, dtype=torch.float64) + d
    return {
        "auroc": phi(d / math.sqrt(2)),
        "fpr95": 1 - phi(d - Z95),
        "aupr": aupr(ref_id, ref_ood),
        "aupr_in": aupr_in(ref_id, ref_ood),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--draws", type=int, default=400)
    ap.add_argument("--id", type=int, default=1000)
    ap.add_argument("--ood", type=int, default=500)
    ap.add_argument("--write-docs", action="store_true")
    a = ap.parse_args()
    g = torch.Generator().manual_seed(0)
    rows = [
        "| AUROC gap (delta) | rho | n ID / OOD | "
        + " | ".join(f"{m} cover" for m in OOD_METRICS)
        + " | paired AUROC diff cover |",
        "| ---: | ---: | --- |" + " ---: |" * (len(OOD_METRICS) + 1),
    ]
    for d, delta, rho in ((1.0, 0.0, 0.5), (1.5, 0.3, 0.5), (2.5, 0.2, 0.8)):
        assert a.ood * 2 == a.id  # the reference AUPR is made at this class ratio
        pop_a, pop_b = population(d, 2_000_000, g), population(d + delta, 2_000_000, g)
        hits = {m: 0 for m in OOD_METRICS} | {"diff": 0}
        for i in range(a.draws):
            (ia, oa), (ib, ob) = draw(a.id, a.ood, d, delta, rho, g)
            ci, co = resample_counts(a.id, 200, 2 * i), resample_counts(a.ood, 200, 2 * i + 1)
            va, vb = resampled_metrics(ia, oa, ci, co), resampled_metrics(ib, ob, ci, co)
            for m, (lo, hi) in metric_intervals(va).items():  # vcal's own intervals, as an audit writes them
                hits[m] += lo <= pop_a[m] <= hi
            lo, hi = paired_changes(vb, va)["auroc"]["interval"]
            hits["diff"] += lo <= pop_b["auroc"] - pop_a["auroc"] <= hi
        cov = {k: v / a.draws for k, v in hits.items()}
        cells = " | ".join(f"{cov[m]:.3f}" for m in OOD_METRICS)
        gap = f"{pop_b['auroc'] - pop_a['auroc']:.3f} (AUROC {pop_a['auroc']:.3f})"
        line = f"| {gap} | {rho} | {a.id} / {a.ood} | {cells} | {cov['diff']:.3f} |"
        rows.append(line)
        print(line, flush=True)
    se = math.sqrt(0.95 * 0.05 / a.draws)
    head = f"Coverage of the 95% intervals, {a.draws} draws per row (one standard error at that count: {se:.3f}):"
    text = "\n".join([head, "", *rows])
    print(text)
    if a.write_docs:
        write_block(DOCS, "bench_ood_intervals", text)


if __name__ == "__main__":
    main()

"""Coverage of the paired-bootstrap intervals of a change between two predictors (retrain verdicts, the gate).

The simulated classifiers of `bench_intervals.py`. Predictor A is the classifier; predictor B the same logits
divided by a temperature T (the change a recalibration makes). Both are scored on the same draws of n rows and
labels; `metrics.paired.verdicts` gives every metric's change B - A with its paired 95% interval (200 resamples,
each side's noise floor passed as `vcal retrain` and `vcal gate` pass them: the ECE change bias-bounded, the others
the change -/+ 1.96 bootstrap sd). The population change comes from the conditional label distribution q on a
reference sample of 1,000,000 rows (never from labels): accuracy, NLL and Brier exactly, the binned ECE as the
population ECE (sum over bins of |E[(q_top - conf) 1(conf in bin)]|). Printed: how often each interval holds the
population change, how often the verdict is wrong (says better or worse while the population change has the other
sign) and how often it detects the change (says better or worse with the population change's sign: the power, where
the change is not 0).

    python benchmarks/bench_paired_intervals.py [--draws 200] [--cases 2000:1.0,2000:1.3,10000:1.0,10000:1.2]
                                                [--seed 0] [--write-docs]

Each case is n rows and a temperature T; 10,000 rows at T = 1.2 is the regression the gate must catch.
"""

from __future__ import annotations

import argparse
import itertools
import math
from pathlib import Path

import torch
from _timing import write_block
from bench_intervals import Case, full_q, logits, truth_top

from vcal_cli.metrics import compute_metrics
from vcal_cli.metrics.calibration import bin_index
from vcal_cli.metrics.paired import noise_floors, verdicts

DOCS = Path(__file__).resolve().parents[1] / "docs" / "metrics.md"
REF_ROWS = 1_000_000  # the population change's own Monte Carlo error: a tenth of a 10,000-row draw's standard error
SHOWN = ("accuracy", "nll", "brier", "ece")


def population(p: torch.Tensor, q: torch.Tensor, n_bins: int = 15) -> dict[str, float]:
    c, top = p.max(1)
    q_top = q.gather(1, top[:, None])[:, 0]
    gaps = torch.zeros(n_bins, dtype=torch.float64).index_add_(0, bin_index(c, n_bins), q_top - c)
    return {
        "accuracy": float(q_top.mean()),
        "nll": float(-(q * p.clamp_min(1e-300).log()).sum(1).mean()),
        "brier": float(((p * p).sum(1) - 2 * (p * q).sum(1) + 1).mean()),
        "ece": float(gaps.abs().sum() / len(p)),
    }


def study(kind: str, k: int, n: int, t: float, draws: int, seed: int = 0) -> tuple[dict, dict, dict, dict]:
    """One case's coverage, wrong-sign and power shares, and the population change. The draws' generator depends on K
    and `seed` only: every case of one K starts from the same draws (their luck is shared)."""
    case = Case(kind, k)
    gen = torch.Generator().manual_seed(4343 + k)
    z = logits(REF_ROWS, k, gen)
    pa = torch.softmax(z, 1)
    q = full_q(pa, truth_top(kind, pa.max(1).values, k, case.pivot))
    pop_a, pop_b = population(pa, q), population(torch.softmax(z / t, 1), q)
    change = {m: pop_b[m] - pop_a[m] for m in SHOWN}
    holds, wrong, found = dict.fromkeys(SHOWN, 0), dict.fromkeys(SHOWN, 0), dict.fromkeys(SHOWN, 0)
    g = torch.Generator().manual_seed(99 + k + 1_000_003 * seed)
    for i in range(draws):
        zd, y = case.sample(n, g)
        # each side's noise floor, as `vcal retrain` takes them from the heads' own results
        sides = [compute_metrics(y, logits=z, n_bootstrap=200, seed=i, with_details=False) for z in (zd, zd / t)]
        floors = (noise_floors(sides[0].debiased), noise_floors(sides[1].debiased))
        v = verdicts(zd, zd / t, y, n_bins=15, n_bootstrap=200, seed=i, floors=floors)
        for m in SHOWN:
            lo, hi = v[m]["interval"]
            holds[m] += lo <= change[m] <= hi
            wrong[m] += (lo > 0 and change[m] < 0) or (hi < 0 and change[m] > 0)
            found[m] += (lo > 0 and change[m] > 0) or (hi < 0 and change[m] < 0)
    share = lambda c: {m: c[m] / draws for m in SHOWN}  # noqa: E731
    return share(holds), share(wrong), share(found), change


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--draws", type=int, default=200)
    ap.add_argument("--cases", default="2000:1.0,2000:1.3,10000:1.0,10000:1.2", help="n:T pairs")
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--kinds", default="calibrated,over")
    ap.add_argument("--seed", type=int, default=0, help="another sequence of draws (0: the table's sequence)")
    ap.add_argument("--write-docs", action="store_true")
    a = ap.parse_args()
    se = math.sqrt(0.95 * 0.05 / a.draws)
    rows = [
        f"Paired 95% intervals of the change B - A (B: A's logits / T), K = {a.k}, {a.draws} draws per case (one "
        f"standard error: {se:.3f}); a cell is coverage / share of wrong-sign verdicts / share of verdicts that "
        "detect the change (the power; the population change in brackets):",
        "",
        "| kind | n | T | " + " | ".join(f"{m} (change)" for m in SHOWN) + " |",
        "| --- | ---: | ---: |" + " ---: |" * len(SHOWN),
    ]
    cases = [(int(n), float(t)) for n, t in (c.split(":") for c in a.cases.split(","))]
    for (n, t), kind in itertools.product(cases, a.kinds.split(",")):
        cover, wrong, found, change = study(kind, a.k, n, t, a.draws, a.seed)
        cells = " | ".join(f"{cover[m]:.3f} / {wrong[m]:.3f} / {found[m]:.3f} ({change[m]:+.4f})" for m in SHOWN)
        rows.append(f"| {kind} | {n} | {t} | {cells} |")
        print(rows[-1], flush=True)
    text = "\n".join(rows)
    print(text)
    if a.write_docs:
        write_block(DOCS, "bench_paired_intervals", text)


if __name__ == "__main__":
    main()

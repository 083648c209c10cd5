"""Do the prediction sets' intervals hold their population values? Coverage of the conformal intervals by simulation.

The simulated classifiers of `bench_intervals.py` (logits with one boosted class, labels from a known conditional
distribution q; kinds calibrated, over, under). Each draw: a fresh val split (calibration) and test split; `vcal`
calibrates each score on val at alpha 0.1 (`metrics.conformal.calibrate`) and reports test coverage, mean set size
and CovGap with their 95% intervals (`set_metrics`, 200 resamples, as `vcal audit --conformal` does). The estimand of
those intervals is the calibrated rule's population behaviour given this val split, over a 200,000-row reference
sample of the same classifier (no labels drawn): its coverage E[sum of q over the set], its mean set size, and its
CovGap, the mean over classes c of |P(c in set | y = c) - (1 - alpha)|, P(c in set | y = c) = (sum of q_c over the
rows whose set holds c) / (sum of q_c). Printed: how often each interval holds it, and how often the population
coverage is at least 1 - alpha (the split-conformal guarantee holds on average over val draws, not for each one).
Each kind draws its own logits (its own seed), so the kinds' cells are independent.

    python benchmarks/bench_conformal_intervals.py [--draws 200] [--cases 10x1000x2000,100x2000x5000] [--write-docs]
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import torch
from _timing import write_block
from bench_intervals import Case, full_q, logits, truth_top

from vcal_cli.metrics.conformal import calibrate, set_metrics

DOCS = Path(__file__).resolve().parents[1] / "docs" / "conformal.md"
REF_ROWS = 200_000
SCORES = ("lac", "aps", "raps")
KINDS = ("calibrated", "over", "under")
ALPHA = 0.1


def reference(case: Case) -> tuple[torch.Tensor, torch.Tensor]:
    """(probabilities, q) of the reference sample: the population the calibrated rule is judged on."""
    gen = torch.Generator().manual_seed(4242 + case.k)
    p = torch.softmax(logits(REF_ROWS, case.k, gen), 1)
    return p, full_q(p, truth_top(case.kind, p.max(1).values, case.k, case.pivot))


def study(kind: str, k: int, n_val: int, n_test: int, draws: int) -> dict[str, dict[str, float]]:
    case = Case(kind, k)
    p_ref, q_ref = reference(case)
    q_mass = q_ref.sum(0)  # (K,): the population weight of each class
    hits = {s: {"coverage": 0, "set_size": 0, "cov_gap": 0, "guarantee": 0} for s in SCORES}
    gen = torch.Generator().manual_seed(7 + k + 1000 * KINDS.index(kind))
    for i in range(draws):
        zv, yv = case.sample(n_val, gen)
        zt, yt = case.sample(n_test, gen)
        pv, pt = torch.softmax(zv, 1), torch.softmax(zt, 1)
        for score in SCORES:
            cal = calibrate(pv, yv, score, ALPHA, seed=i, k_reg=1 if score == "raps" else None, lam=0.01)
            iv = set_metrics(cal.sets(pt), yt, ALPHA, n_bootstrap=200, seed=i)["intervals"]
            ref_sets = cal.sets(p_ref)
            truth = {
                "coverage": float((q_ref * ref_sets).sum(1).mean()),
                "set_size": float(ref_sets.sum(1).double().mean()),
                "cov_gap": float(((q_ref * ref_sets).sum(0) / q_mass - (1 - ALPHA)).abs().mean()),
            }
            for name, t in truth.items():
                hits[score][name] += iv[name][0] - 1e-12 <= t <= iv[name][1] + 1e-12
            hits[score]["guarantee"] += truth["coverage"] >= 1 - ALPHA
    return {s: {k2: v / draws for k2, v in h.items()} for s, h in hits.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--draws", type=int, default=200)
    ap.add_argument("--cases", default="10x1000x2000,100x2000x5000", help="KxN_valxN_test")
    ap.add_argument("--kinds", default=",".join(KINDS))
    ap.add_argument("--write-docs", action="store_true")
    a = ap.parse_args()
    se = math.sqrt(0.95 * 0.05 / a.draws)
    rows = [
        f"Coverage of the 95% intervals of test coverage, mean set size and CovGap at alpha {ALPHA}, {a.draws} draws "
        f"per case "
        f"(one standard error: {se:.3f}); last column: the share of draws whose population coverage is at least "
        f"{1 - ALPHA:.2f}.",
        "",
        "| kind | K | n val / test | score | coverage interval holds | set-size interval holds | CovGap interval holds "
        "| population >= 0.90 |",
        "| --- | ---: | --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for case in a.cases.split(","):
        k, nv, nt = map(int, case.split("x"))
        for kind in a.kinds.split(","):
            res = study(kind, k, nv, nt, a.draws)
            for score, r in res.items():
                cells = (r["coverage"], r["set_size"], r["cov_gap"], r["guarantee"])
                rows.append(f"| {kind} | {k} | {nv} / {nt} | {score} | " + " | ".join(f"{c:.3f}" for c in cells) + " |")
                print(rows[-1], flush=True)
    text = "\n".join(rows)
    print(text)
    if a.write_docs:
        write_block(DOCS, "bench_conformal_intervals", text)


if __name__ == "__main__":
    main()

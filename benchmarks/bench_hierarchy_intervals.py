"""Coverage of the hierarchy rows' intervals: mistake severity and average hierarchical distance, and their paired
changes between two classifiers, against population values from the conditional label distribution.

    python benchmarks/bench_hierarchy_intervals.py [--draws 200] [--cases 10x1000,10x10000,100x1000,100x10000]
                                                   [--kinds calibrated,over] [--write-docs]

The simulated classifiers are the coverage study's (`bench_intervals.py`: p = softmax(z), labels from a known q).
The class tree: K classes in groups of 2 (K = 10) or 5 (K = 100) under one root, so the LCA height D is 0 for the
class itself, 1 within a group and 2 across. Population values on a reference sample of 1,000,000 rows, from q, never
from labels: top-1 error E[1 - q(top)]; mistake severity E[sum_y q_y D(top, y)] / E[1 - q(top)];
avg_hdist_at_k E[(1/k) sum_{j<=k} sum_y q_y D(r_j, y)] (r_j the j-th most probable class). The paired change is
between A (p) and B, A's logits plus a fixed per-class offset (N(0, 0.5^2), seeded: another ranking, the same labels),
B - A on the same draws, with `hierarchy_verdicts` (200 resamples, its defaults). Printed per case: coverage of the
95% interval, mean width, the point's bias, and the share of draws whose interval holds its own point.
`--write-docs` puts the table in docs/metrics.md.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from _timing import write_block
from bench_intervals import Case, logits

from vcal_cli.metrics.hierarchy import DEFAULT_KS, hierarchy_metrics, hierarchy_verdicts

DOCS = Path(__file__).resolve().parents[1] / "docs" / "metrics.md"
GROUP = {10: 2, 100: 5}
REF_ROWS = 1_000_000  # the population's own Monte Carlo error: a tenth of a 10,000-row draw's standard error


def distances(k: int) -> torch.Tensor:
    group = torch.arange(k) // GROUP.get(k, 5)
    same = group[:, None] == group[None, :]
    d = torch.where(same, 1.0, 2.0).double()
    d.fill_diagonal_(0.0)
    return d


def offset(k: int) -> torch.Tensor:
    return 0.5 * torch.randn(k, generator=torch.Generator().manual_seed(77), dtype=torch.float64)


def population(case: Case, d: torch.Tensor, shift: torch.Tensor) -> dict[str, dict[str, float]]:
    """Each figure of A and of B (A's logits + `shift`), from q on the reference sample."""
    from bench_intervals import full_q, truth_top

    k = case.k
    ks = tuple(sorted({min(x, k) for x in DEFAULT_KS}))
    gen = torch.Generator().manual_seed(999 + k)
    sums = {side: {"wrong": 0.0, "sev": 0.0, **{f"avg_hdist_at_{x}": 0.0 for x in ks}} for side in ("a", "b")}
    step = max(1000, 4_000_000 // k)
    for start in range(0, REF_ROWS, step):
        z = logits(min(step, REF_ROWS - start), k, gen)
        p = torch.softmax(z, 1)
        q = full_q(p, truth_top(case.kind, p.max(1).values, k, case.pivot))
        for side, scores in (("a", z), ("b", z + shift)):
            ranked = scores.topk(max(ks), 1).indices  # (n, kmax)
            cost = q @ d  # (n, K): expected distance of each class to the label
            r = cost.gather(1, ranked)
            s = sums[side]
            s["wrong"] += float((1 - q.gather(1, ranked[:, :1])).sum())
            s["sev"] += float(r[:, 0].sum())
            for x in ks:
                s[f"avg_hdist_at_{x}"] += float(r[:, :x].mean(1).sum())
    out = {}
    for side, s in sums.items():
        out[side] = {"top1_error": s["wrong"] / REF_ROWS, "mistake_severity": s["sev"] / s["wrong"]}
        out[side].update({f"avg_hdist_at_{x}": s[f"avg_hdist_at_{x}"] / REF_ROWS for x in ks})
    return out


def run_case(case: Case, n: int, draws: int) -> list[tuple[str, float, float, float, float, float]]:
    """(figure, population, coverage, mean width, bias, holds own point) for every figure and paired change."""
    d, shift = distances(case.k), offset(case.k)
    pop = population(case, d, shift)
    truth = {**pop["a"], **{f"B - A {m}": pop["b"][m] - pop["a"][m] for m in pop["a"]}}
    rows: dict[str, list[tuple[float, float, float]]] = {m: [] for m in truth}
    gen = torch.Generator().manual_seed(2024 + 7 * case.k + n)
    for i in range(draws):
        z, y = case.sample(n, gen)
        h = hierarchy_metrics(z, y, d, seed=i)
        for m in pop["a"]:
            if h.metrics[m] is not None and h.intervals[m] is not None:
                rows[m].append((h.metrics[m], *h.intervals[m]))
        for m, v in hierarchy_verdicts(z, z + shift, y, d, seed=i).items():
            rows[f"B - A {m}"].append((v["delta"], *v["interval"]))
    out = []
    for m, vals in rows.items():
        t = torch.tensor(vals, dtype=torch.float64)
        point, lo, hi = t[:, 0], t[:, 1], t[:, 2]
        tol = 1e-9  # a figure constant in the ranking (avg_hdist_at_K at k = K) has an interval of width 0
        cover = float(((lo - tol <= truth[m]) & (truth[m] <= hi + tol)).double().mean())
        own = float(((lo - tol <= point) & (point <= hi + tol)).double().mean())
        out.append((m, truth[m], cover, float((hi - lo).mean()), float(point.mean()) - truth[m], own))
    return out


def table(results: dict[tuple[str, int, int], list], draws: int) -> str:
    lines = [
        f"Coverage of the hierarchy rows' 95% intervals, {draws} draws per case (one standard error: "
        f"{(0.05 * 0.95 / draws) ** 0.5:.3f}); K classes in groups of {GROUP[10]} (K = 10) or {GROUP[100]} (K = 100):",
        "",
        "| kind | K | n | figure | population | coverage | mean width | bias | holds own point |",
        "| --- | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for (kind, k, n), rows in results.items():
        for m, pop, cov, width, bias, own in rows:
            lines.append(
                f"| {kind} | {k} | {n} | {m} | {pop:.4f} | {cov:.3f} | {width:.4f} | {bias:+.4f} | {own:.3f} |"
            )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--draws", type=int, default=200)
    ap.add_argument("--cases", default="10x1000,10x10000,100x1000,100x10000")
    ap.add_argument("--kinds", default="calibrated,over")
    ap.add_argument("--write-docs", action="store_true")
    a = ap.parse_args()
    results = {}
    for kind in a.kinds.split(","):
        for spec in a.cases.split(","):
            k, n = (int(v) for v in spec.split("x"))
            t = time.perf_counter()
            results[(kind, k, n)] = run_case(Case(kind, k), n, a.draws)
            print(f"{kind} K={k} n={n}: {time.perf_counter() - t:.0f} s", flush=True)
    text = table(results, a.draws)
    print(text)
    if a.write_docs:
        write_block(DOCS, "hierarchy-intervals", text)


if __name__ == "__main__":
    main()

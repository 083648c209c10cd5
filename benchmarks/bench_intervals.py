"""The coverage study: do vcal's intervals hold their population value, and do its tests keep their size?

    python benchmarks/bench_intervals.py [--draws 200] [--classes 10,100,1000] [--rows 1000,10000,50000]
                                         [--cases 10x1000,100x10000] [--kinds calibrated,over,under,two-sided]
                                         [--seed 0] [--gate] [--write-docs] [--block NAME]

Simulated classifiers with known truth. A model reports p = softmax(z) for logits z (one random class per row
boosted by U(0, 1.5 log K + 3) over N(0, 1) noise); the label comes from a known q whose top-label part is a
function g of the confidence c = max p, and whose other classes keep p's proportions:
q_top = g(c), q_j = p_j (1 - g(c)) / (1 - c). The kinds:

- calibrated: g(c) = c;
- over: g(c) = 1/K + 0.9 (c - 1/K)    (over-confident at every confidence);
- under: g(c) = c + 0.08 (1 - c)       (under-confident at every confidence);
- two-sided: g(c) = c - 0.10 above the 60th percentile of c, c + 0.07 below (clipped to [0, 1]): the
  confidence-dependent case whose gaps cancel in the mean (the issue's example).

Population values come from the conditional label distribution q on a reference sample of max(200,000, 40 n) rows
(never from labels): accuracy E g(c); NLL E[-sum q log p]; Brier E[sum p^2 - 2 p.q + 1]; the gap E[c - g(c)]; binned
ECE sum_b |E[(g(c) - c) 1(c in b)]| (equal-width, and over the population's equal-mass bins for the adaptive ECE);
classwise ECE (1/K) sum_c sum_b |E[(q_c - p_c) 1(p_c in b)]|; AURC the mean over coverages of the selective risk of
E[1 - g(c)] in descending c; sweep and CORP ECE target the true L1 calibration error E|c - g(c)| (`ece_corp_iso`:
CORP's interval again, against its own estimand E|c - iso(g)(c)|, iso the isotonic fit of g over c, which is below
E|c - g(c)| where g falls); the debiased L2 ECE sqrt(sum_b P_b E[g(c) - c | b]^2) over equal-mass bins; smooth ECE
the smECE of (c, g(c)) on the reference sample. Each draw is a fresh sample of n rows (logits and labels); vcal's
`compute_metrics` (200 resamples, its defaults) gives every printed interval, the estimator table and the tests.

Printed per case: for every metric and estimator, coverage of the 95% interval (share of draws holding the
population value), mean width, the point estimate's bias (the plug-in's, and the debiased point's where there
is one) and the share of draws whose interval holds its own point; for every test and for the verdict, the
rejection rate at 5% (size on calibrated cases, power elsewhere). `--gate` adds the gate's false-alarm rate (two
independent test draws of one calibrated model, 10,000 rows, the default rules on the two reports) and its power
(the current model's calibrating temperature 1.0 -> 1.2). `--write-docs` puts the tables in docs/metrics.md.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import torch
from _timing import write_block
from scipy.optimize import isotonic_regression

KINDS = ("calibrated", "over", "under", "two-sided")
REF_ROWS = 200_000


def reference_rows(n: int) -> int:
    """Rows of the population's reference sample for draws of n rows: at least 40 n, so that its own Monte Carlo
    error is at most a sixth of a draw's standard error (at 50,000 rows 200,000 were off by 0.6 of it: the accuracy
    interval's coverage fell to 0.875 in one draw sequence, 0.95 against a 2,000,000-row population)."""
    return max(REF_ROWS, 40 * n)


DOCS = Path(__file__).resolve().parents[1] / "docs" / "metrics.md"


def logits(n: int, k: int, gen: torch.Generator) -> torch.Tensor:
    z = torch.randn(n, k, generator=gen, dtype=torch.float64)
    top = torch.randint(0, k, (n,), generator=gen)
    z[torch.arange(n), top] += torch.rand(n, generator=gen, dtype=torch.float64) * (1.5 * math.log(k) + 3)
    return z


def truth_top(kind: str, c: torch.Tensor, k: int, pivot: float) -> torch.Tensor:
    if kind == "calibrated":
        return c.clone()
    if kind == "over":
        return 1 / k + 0.9 * (c - 1 / k)
    if kind == "under":
        return c + 0.08 * (1 - c)
    return torch.where(c > pivot, c - 0.10, c + 0.07).clamp(0, 1)


def full_q(p: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    c, top = p.max(1)
    scale = torch.where(c < 1, (1 - g) / (1 - c).clamp_min(1e-300), torch.zeros_like(c))
    q = p * scale[:, None]
    q[torch.arange(len(p)), top] = g
    return q


def draw_labels(p: torch.Tensor, g: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    top = p.argmax(1)
    rest = p.clone()
    rest[torch.arange(len(p)), top] = 0
    rest[rest.sum(1) <= 0, 0] = 1  # a one-hot p: any other label (drawn with probability 1 - g = 0 anyway)
    other = torch.multinomial(rest, 1, generator=gen)[:, 0]
    hit = torch.rand(len(p), generator=gen, dtype=torch.float64) < g
    return torch.where(hit, top, other)


class Case:
    def __init__(self, kind: str, k: int):
        self.kind, self.k = kind, k
        gen = torch.Generator().manual_seed(12345 + k)
        self.pivot = float(torch.quantile(torch.softmax(logits(100_000, k, gen), 1).max(1).values.float(), 0.6))

    def sample(self, n: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        z = logits(n, self.k, gen)
        p = torch.softmax(z, 1)
        return z, draw_labels(p, truth_top(self.kind, p.max(1).values, self.k, self.pivot), gen)

    def population(self, n_bins: int = 15, rows: int = REF_ROWS) -> dict[str, float]:
        from vcal_cli.metrics.calibration import bin_index
        from vcal_cli.metrics.smooth import smooth_ece

        gen = torch.Generator().manual_seed(999 + self.k)
        k = self.k
        sums = {"acc": 0.0, "nll": 0.0, "brier": 0.0, "gap": 0.0, "l1": 0.0}
        ece_b = torch.zeros(n_bins, dtype=torch.float64)
        slots = torch.zeros(k * n_bins, dtype=torch.float64)
        confs, gs = [], []
        step = max(1000, 4_000_000 // k)
        for a in range(0, rows, step):
            p = torch.softmax(logits(min(step, rows - a), k, gen), 1)
            c = p.max(1).values
            g = truth_top(self.kind, c, k, self.pivot)
            q = full_q(p, g)
            sums["acc"] += float(g.sum())
            sums["nll"] += float(-(q * p.clamp_min(1e-300).log()).sum())
            sums["brier"] += float(((p * p).sum(1) - 2 * (p * q).sum(1) + 1).sum())
            sums["gap"] += float((c - g).sum())
            sums["l1"] += float((c - g).abs().sum())
            ece_b.index_add_(0, bin_index(c, n_bins), g - c)
            slots.index_add_(0, (torch.arange(k) * n_bins + bin_index(p, n_bins)).reshape(-1), (q - p).reshape(-1))
            confs.append(c)
            gs.append(g)
        n = rows
        c, g = torch.cat(confs), torch.cat(gs)
        order = torch.sort(c, stable=True).indices
        cs, g_s = c[order], g[order]
        chunks = torch.tensor_split(torch.arange(n), n_bins)
        adaptive = sum(abs(float((g_s[i] - cs[i]).sum())) for i in chunks) / n
        l2 = math.sqrt(sum(float((g_s[i] - cs[i]).mean()) ** 2 * len(i) for i in chunks) / n)
        risks = (1 - g_s.flip(0)).cumsum(0) / torch.arange(1, n + 1, dtype=torch.float64)
        pop = {
            "accuracy": sums["acc"] / n,
            "nll": sums["nll"] / n,
            "brier": sums["brier"] / n,
            "ece": float(ece_b.abs().sum()) / n,
            "ece_adaptive": adaptive,
            "classwise_ece": float(slots.abs().sum()) / (n * k),
            "aurc": float(risks.mean()),
            "gap": sums["gap"] / n,
            "ece_sweep": sums["l1"] / n,
            "ece_corp": sums["l1"] / n,
            # CORP's own estimand: the L1 gap to the isotonic (monotone) fit of the true curve, below E|c - g(c)|
            # where the curve falls (two-sided); equal to it where g is monotone
            "ece_corp_iso": float((cs - torch.from_numpy(isotonic_regression(g_s.numpy()).x)).abs().mean()),
            "ece_l2_debiased": l2,
            "ece_smooth": smooth_ece(c, g),
        }
        if self.kind == "calibrated":  # exactly 0 by construction (the reference sample's rounding aside)
            zero = ("ece", "ece_adaptive", "classwise_ece", "gap", "ece_sweep", "ece_corp", "ece_corp_iso")
            pop.update({m: 0.0 for m in zero})
            pop.update(ece_l2_debiased=0.0, ece_smooth=0.0)
        return pop


def one_draw(case: Case, n: int, gen: torch.Generator, seed: int) -> dict[str, tuple[float, float, float, float]]:
    """Per figure: (plug-in, own point, low, high); per test: (p-value, ...); 'verdict' rejected or not."""
    from vcal_cli.metrics import compute_metrics

    z, y = case.sample(n, gen)
    r = compute_metrics(y, logits=z, seed=seed)
    out: dict[str, tuple[float, ...]] = {}
    for m, v in r.metrics.as_dict().items():
        if m in r.intervals:
            own = r.debiased[m].debiased if m in r.debiased else v
            out[m] = (v, own, *r.intervals[m])
    d = r.details
    out["gap"] = (d.gap, d.gap, *d.gap_interval)
    for m, e in r.evidence.estimators.items():
        if m not in out:
            out[m] = (e.value, e.debiased, *e.interval)
    out["ece_corp_iso"] = out["ece_corp"]  # the same interval, against CORP's own (monotone) estimand
    for t, res in r.evidence.tests.items():
        out[f"test:{t}"] = (res.p_value,)
    out["verdict"] = (0.0 if r.evidence.calibrated else 1.0,)
    return out


def study(kind: str, k: int, n: int, draws: int, seed: int = 0) -> list[str]:
    """One case's coverage lines and its row of rejection rates. The draws' generator depends on K, n and `seed`, not
    on the kind: the kinds of one case share their logits and label uniforms (and so their luck)."""
    case = Case(kind, k)
    pop = case.population(rows=reference_rows(n))
    gen = torch.Generator().manual_seed(2024 + 7 * k + n + 1_000_003 * seed)
    rows: dict[str, list[tuple[float, ...]]] = {}
    t0 = time.perf_counter()
    for d in range(draws):
        for key, v in one_draw(case, n, gen, d).items():
            rows.setdefault(key, []).append(v)
    secs = time.perf_counter() - t0
    lines = []
    for m, vals in rows.items():
        if m.startswith("test:") or m == "verdict":
            continue
        t = pop[m]
        cover = sum(lo - 1e-12 <= t <= hi + 1e-12 for _, _, lo, hi in vals) / len(vals)
        own = sum(lo - 1e-12 <= o <= hi + 1e-12 for _, o, lo, hi in vals) / len(vals)
        width = sum(hi - lo for *_, lo, hi in vals) / len(vals)
        bias = sum(v for v, *_ in vals) / len(vals) - t
        dbias = sum(o for _, o, *_ in vals) / len(vals) - t
        cells = [
            kind,
            k,
            n,
            m,
            f"{t:.4f}",
            f"{cover:.3f}",
            f"{width:.4f}",
            f"{bias:+.4f}",
            f"{dbias:+.4f}",
            f"{own:.2f}",
        ]
        lines.append("| " + " | ".join(map(str, cells)) + " |")
    rates = {m[5:]: sum(p < 0.05 for (p,) in v) / len(v) for m, v in rows.items() if m.startswith("test:")}
    rates["verdict (Holm)"] = sum(r for (r,) in rows["verdict"]) / len(rows["verdict"])
    tests = " ".join(f"{name} {rate:.3f}" for name, rate in rates.items())
    print(f"{kind} K={k} n={n}: {draws} draws in {secs:.0f} s; rejection rates at 5%: {tests}", flush=True)
    return lines, f"| {kind} | {k} | {n} | " + " | ".join(f"{r:.3f}" for r in rates.values()) + " |", list(rates)


def gate_study(draws: int, n: int = 10_000, k: int = 10) -> tuple[float, float]:
    """False-alarm rate and power of `vcal gate`'s default rules on two reports."""
    from vcal_cli.gate.result import DEFAULT_RULES, evaluate
    from vcal_cli.metrics import compute_metrics

    case = Case("calibrated", k)
    gen = torch.Generator().manual_seed(77)

    def report(z: torch.Tensor, y: torch.Tensor, seed: int) -> dict:
        r = compute_metrics(y, logits=z, seed=seed, with_details=False)
        return {"metrics": r.metrics.as_dict(), "intervals": {a: list(b) for a, b in r.intervals.items()}}

    false, power = 0, 0
    for d in range(draws):
        base = report(*case.sample(n, gen), d)
        same = report(*case.sample(n, gen), d + 10_000)
        z, y = case.sample(n, gen)
        hot = report(z * 1.2, y, d + 20_000)  # calibrated at temperature 1.2: over-confident
        false += not all(r.passed for r in evaluate(list(DEFAULT_RULES), base, same))
        power += not all(r.passed for r in evaluate(list(DEFAULT_RULES), base, hot))
    return false / draws, power / draws


def main() -> None:
    from vcal_cli._memory import return_freed_memory

    # as the CLI does: the population's 32 MB temporaries fragmented glibc's heap to 24 GB at K = 1,000 (killed by
    # the kernel); mapped on their own, the K = 1,000 x 2,000,000-row population peaks at 2.1 GB
    return_freed_memory()
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--draws", type=int, default=200)
    ap.add_argument("--classes", default="10,100,1000")
    ap.add_argument("--rows", default="1000,10000,50000")
    ap.add_argument("--kinds", default=",".join(KINDS))
    ap.add_argument("--cases", default="", help="KxN pairs instead of the classes x rows grid, e.g. 10x1000,100x10000")
    ap.add_argument("--seed", type=int, default=0, help="another sequence of draws (0: the tables' sequence)")
    ap.add_argument("--gate", action="store_true")
    ap.add_argument("--write-docs", action="store_true")
    ap.add_argument("--block", default="bench_intervals", help="the docs block to write (another for more cases)")
    a = ap.parse_args()
    head = (
        "| kind | K | n | figure | population | coverage | mean width | bias (plug-in) | bias (debiased) "
        "| holds own point |\n| --- | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |"
    )
    cov, tests, names = [head], [], []
    grid = [(int(k), int(n)) for k in a.classes.split(",") for n in a.rows.split(",")]
    pairs = [tuple(map(int, c.split("x"))) for c in a.cases.split(",")] if a.cases else grid
    for kind in a.kinds.split(","):
        for k, n in pairs:
            lines, trow, names = study(kind, k, n, a.draws, a.seed)
            print("\n".join(lines), flush=True)  # each case as it ends: a long run that is stopped keeps them
            cov += lines
            tests.append(trow)
    test_head = f"| kind | K | n | {' | '.join(names)} |\n|" + " --- |" * 3 + " ---: |" * len(names)
    out = [f"Coverage of the 95% intervals, {a.draws} draws per case:", "", *cov, "", "Rejection rates at 5%:", ""]
    out += [test_head, *tests]
    if a.gate:
        far, power = gate_study(a.draws)
        out += [
            "",
            f"Gate, default rules, K=10, 10,000 rows, {a.draws} pairs of reports: false alarms {far:.3f} "
            f"(two test draws of one calibrated model), power {power:.3f} (calibrating temperature 1.0 -> 1.2).",
        ]
    text = "\n".join(out)
    print(text)
    if a.write_docs:
        write_block(DOCS, a.block, text)


if __name__ == "__main__":
    main()

"""Fit every head on cached features of realistic size and time it against temperature scaling;
time the `bayes` closed-form predictive against laplace-torch's KFAC GLM probit on the same posterior.

    python benchmarks/bench_heads.py [--n 50000] [--dim 640] [--classes 10] [--laplace-n 2000]

Synthetic features: Gaussian class clusters with an overconfident linear head (its logits are the
cached "original" logits). Times are wall-clock seconds on this machine, one run each.
"""

from __future__ import annotations

import argparse
import time

import torch

from vcal_cli.heads import FitData, get_head, list_heads
from vcal_cli.hierarchy import Hierarchy


def synthetic(n: int, d: int, k: int, seed: int = 0) -> tuple[FitData, FitData, FitData, torch.nn.Linear]:
    g = torch.Generator().manual_seed(seed)
    means = torch.randn(k, d, generator=g) * 0.15
    total = n + n // 10 + n // 5
    y = torch.randint(0, k, (total,), generator=g)
    x = (means[y] + torch.randn(total, d, generator=g) * 1.0).relu()
    base = torch.nn.Linear(d, k)
    with torch.no_grad():  # a least-squares head, scaled up: accurate but overconfident
        onehot = torch.nn.functional.one_hot(y[:n], k).float()
        a = torch.cat([x[:n], torch.ones(n, 1)], 1)
        w = torch.linalg.lstsq(a, onehot * 2 - 1).solution.T * 8
        base.weight.copy_(w[:, :-1])
        base.bias.copy_(w[:, -1])
        logits = base(x)
    parts = [(0, n), (n, n + n // 10), (n + n // 10, total)]
    return (*(FitData(x[a:b], logits[a:b], y[a:b]) for a, b in parts), base)


def laplace_predictive_time(head, test: FitData, n: int) -> tuple[float, float]:  # noqa: ANN001
    """Seconds per sample for laplace-torch's KFAC GLM probit predictive on the same posterior, and max diff."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tests.test_bayes_vs_laplace import laplace_with_posterior

    mod = head.module_.double()
    la = laplace_with_posterior(mod.weight, mod.cov, float(mod.sigma2), head.params.prior_precision)
    feats = torch.cat([test.features[:n].double(), torch.ones(n, 1, dtype=torch.float64)], 1)
    t = time.perf_counter()
    ref = torch.cat([la(feats[i : i + 100], pred_type="glm", link_approx="probit") for i in range(0, n, 100)])
    lap = (time.perf_counter() - t) / n
    diff = float((mod(test.features[:n].double()).exp() - ref).abs().max())
    head.module_.float()
    return lap, diff


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=50_000)
    ap.add_argument("--dim", type=int, default=640)
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--laplace-n", type=int, default=2000)
    ap.add_argument("--heads", default=",".join(h for h in list_heads() if h != "haframe"))
    args = ap.parse_args()
    train, val, test, base = synthetic(args.n, args.dim, args.classes)
    print(
        f"features: train {tuple(train.features.shape)}, val {len(val.labels)}, test {len(test.labels)}, "
        f"{args.classes} classes, torch threads {torch.get_num_threads()}"
    )
    tree = Hierarchy(
        tuple(map(str, range(args.classes))), tuple((f"g{i % 2}", str(i)) for i in range(args.classes)), "synthetic"
    )
    times, heads = {}, {}
    for name in args.heads.split(","):
        t = time.perf_counter()
        heads[name] = get_head(name)().fit(train, val, base=base, hierarchy=tree)
        times[name] = time.perf_counter() - t
        acc = float((heads[name].predict_log_proba(test.features).argmax(1) == test.labels).double().mean())
        print(f"{name:12s} fit {times[name]:8.2f} s   test acc {acc:.4f}", flush=True)
    ref = times.get("temperature")
    if ref:
        print("\nratio to temperature: " + ", ".join(f"{n} {t / ref:.0f}x" for n, t in times.items()))
    if "bayes" in heads:
        h = heads["bayes"]
        t = time.perf_counter()
        h.predict_log_proba(test.features, batch_size=len(test.labels))
        ours = (time.perf_counter() - t) / len(test.labels)
        try:
            lap, diff = laplace_predictive_time(h, test, args.laplace_n)
        except ImportError:
            print("laplace-torch is not installed: pip install laplace-torch")
            return
        print(
            f"\nbayes predictive: vcal {1 / ours:,.0f} samples/s, laplace-torch KFAC GLM probit "
            f"{1 / lap:,.0f} samples/s: vcal is {lap / ours:,.0f}x faster (max abs diff {diff:.1e})"
        )


if __name__ == "__main__":
    main()

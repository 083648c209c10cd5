"""ImageNet-shaped head fits on one machine: every post-hoc map and `bayes` at 1,000 classes, timed per step with
peak memory, against the cost each step must have (one forward and backward pass of cross-entropy over the same
val logits), in the same run.

The workload: val and test logits of an overconfident 1,000-class classifier whose mistakes are structured (class c
taken for c+1), features of width D (default 2,048) for `bayes`, train rows N for `bayes` (streamed in blocks).
Each step prints its wall time, the ratio to one pass, the peak RSS so far, and the test NLL against the original
logits and temperature scaling's.

    python benchmarks/bench_scale.py [--val 50000] [--k 1000] [--train 64000] [--d 2048] [--heads ...]

Sizes from 64k to 1.28M train rows take `--train`; memory stays O(block) in N for `bayes` (its statistics are
accumulated over row blocks), so the peak grows with D^2 and K D, not with N.
"""

from __future__ import annotations

import argparse
import resource
import time

import torch
import torch.nn.functional as F

from vcal_cli.heads import FitData, get_head


def rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6


def logits_problem(n: int, k: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, k, (n,), generator=g)
    z = torch.randn(n, k, generator=g) * 1.5
    z[torch.arange(n), y] += 5 + torch.randn(n, generator=g)
    z[torch.arange(n), (y + 1) % k] += 4.5 * (torch.rand(n, generator=g) < 0.3)
    return z * 1.6, y  # overconfident: temperature scaling has something to fix


def features_problem(n: int, d: int, k: int, seed: int) -> FitData:
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(k, d, generator=g) * (2.0 / d**0.5)
    y = torch.randint(0, k, (n,), generator=g)
    f = centres[y] + torch.randn(n, d, generator=g) * (1.0 / d**0.5)
    return FitData(f, torch.zeros(n, k), y)  # bayes reads only the class count off the logits


def one_pass(z: torch.Tensor, y: torch.Tensor) -> float:
    """One forward and backward pass of cross-entropy over the val logits: the unit a map's fit is made of."""
    w = torch.ones(z.shape[1], requires_grad=True)
    t = time.perf_counter()
    F.cross_entropy(z * w, y).backward()
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--val", type=int, default=50_000)
    ap.add_argument("--test", type=int, default=20_000)
    ap.add_argument("--k", type=int, default=1000)
    ap.add_argument("--train", type=int, default=64_000, help="train rows for bayes (0: skip it)")
    ap.add_argument("--d", type=int, default=2048)
    ap.add_argument("--heads", default="temperature,vector,matrix,dirichlet")
    a = ap.parse_args()
    torch.manual_seed(0)
    zv, yv = logits_problem(a.val, a.k, 1)
    zt, yt = logits_problem(a.test, a.k, 2)
    base = torch.nn.Linear(a.k, a.k)
    with torch.no_grad():
        base.weight.copy_(torch.eye(a.k))
        base.bias.zero_()
    unit = min(one_pass(zv, yv) for _ in range(3))
    orig = F.cross_entropy(zt, yt).item()
    print(f"val {a.val:,} x {a.k:,} logits; one CE pass (forward + backward) {unit * 1e3:.0f} ms; "
          f"test NLL of the original logits {orig:.4f}; threads {torch.get_num_threads()}")  # fmt: skip
    print(f"{'step':<22}{'wall':>9}{'passes':>9}{'peak RSS':>10}  {'test NLL':>9}  details")
    val, test = FitData(zv, zv, yv), FitData(zt, zt, yt)
    for name in filter(None, a.heads.split(",")):
        cls = get_head(name)
        t = time.perf_counter()
        head = cls(cls.Params()).fit(val, val, base=base)
        dt = time.perf_counter() - t
        nll = -head.predict_log_proba(test.features).gather(1, yt[:, None]).mean().item()
        extra = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in head.extra_report().items()
                 if k not in ("cv", "val_loss")}  # fmt: skip
        print(f"{name:<22}{dt:>8.1f}s{dt / unit:>9.0f}{rss_gb():>9.1f}G  {nll:>9.4f}  {extra}", flush=True)
    if a.train:
        del zv, zt, val, test
        tr, va = features_problem(a.train, a.d, a.k, 3), features_problem(min(a.val, 10_000), a.d, a.k, 4)
        cls = get_head("bayes")
        t = time.perf_counter()
        head = cls(cls.Params(max_iter=20)).fit(tr, va)
        dt = time.perf_counter() - t
        te = features_problem(5_000, a.d, a.k, 5)
        nll = -head.predict_log_proba(te.features).gather(1, te.labels[:, None]).mean().item()
        design = a.train * (a.d + 1) * 8 / 1e9
        print(f"{'bayes (' + format(a.train, ',') + ' train)':<22}{dt:>8.1f}s{'':>9}{rss_gb():>9.1f}G  {nll:>9.4f}  "
              f"{head.extra_report()} (the whole design matrix would be {design:.1f} GB)")  # fmt: skip


if __name__ == "__main__":
    main()

"""ECE on large prediction sets: vcal against torchmetrics on the same tensors, in one run.

    python benchmarks/bench_metrics.py [--n 1000000] [--classes 1000] [--bins 15]

Probabilities are a softmax of random logits (float32), labels uniform. Times, on the same tensors:

1. the top-label ECE: `vcal_cli.metrics.ece` vs torchmetrics' `multiclass_calibration_error` (l1 norm);
2. the audit's metric set: vcal's `compute_metrics` from the logits (all eight metrics: accuracy, NLL,
   Brier, ECE, adaptive ECE, MCE, classwise ECE, AURC) vs torchmetrics computing the three of them it
   has (ECE, MCE, accuracy);
3. vcal's `compute_metrics` with its 200-resample bootstrap (torchmetrics' BootStrapper would recompute
   each metric 200 times);
4. with `--audit 50000x1000`: a whole `vcal audit --logits` at that size, and what the calibration statistics
   (estimator table, tests, bands, consistency resamples) add to it, timed in the same run.

Wall-clock seconds, best of 3 (1 for the slow ones), with glibc's mmap threshold set as the CLI sets it.
"""

from __future__ import annotations

import argparse

import torch
from _timing import best_of


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--classes", type=int, default=1000)
    ap.add_argument("--bins", type=int, default=15)
    ap.add_argument("--audit", default="", help="NxK: also time what the calibration statistics add to an audit")
    a = ap.parse_args()
    from torchmetrics.functional.classification import multiclass_calibration_error

    from vcal_cli import return_freed_memory
    from vcal_cli.metrics import compute_metrics, ece

    return_freed_memory()  # as the CLI does: freed temporaries go back to the OS (for both libraries)

    g = torch.Generator().manual_seed(0)
    logits = torch.randn(a.n, a.classes, generator=g) * 3
    probs = torch.softmax(logits, 1)
    labels = torch.randint(0, a.classes, (a.n,), generator=g)
    print(f"{a.n:,} samples x {a.classes:,} classes, {a.bins} bins, {torch.get_num_threads()} threads")
    t_ref, ref = best_of(lambda: float(multiclass_calibration_error(probs, labels, a.classes, n_bins=a.bins)))
    t_ours, ours = best_of(lambda: ece(probs, labels, n_bins=a.bins))
    print(f"torchmetrics ECE: {t_ref:.3f} s  ({ref:.6f})")
    print(f"vcal ECE:         {t_ours:.3f} s  ({ours:.6f}; |diff| {abs(ours - ref):.1e})")
    print(f"ratio torchmetrics / vcal: {t_ref / t_ours:.2f}x")
    from torchmetrics.functional.classification import multiclass_accuracy

    def torchmetrics_set() -> None:
        multiclass_calibration_error(probs, labels, a.classes, n_bins=a.bins, norm="l1")
        multiclass_calibration_error(probs, labels, a.classes, n_bins=a.bins, norm="max")
        multiclass_accuracy(probs, labels, a.classes, average="micro")

    t_tm, _ = best_of(torchmetrics_set, 1)
    t_all, _ = best_of(lambda: compute_metrics(labels, logits=logits, n_bins=a.bins, n_bootstrap=0), 1)
    print(f"torchmetrics ECE + MCE + accuracy:          {t_tm:.3f} s")
    print(f"vcal compute_metrics (8 metrics, no CIs):   {t_all:.3f} s")
    print(f"ratio torchmetrics (3 metrics) / vcal (8):  {t_tm / t_all:.2f}x")
    t_boot, _ = best_of(lambda: compute_metrics(labels, logits=logits, n_bins=a.bins, n_bootstrap=200), 1)
    print(f"vcal compute_metrics with 200 bootstrap resamples: {t_boot:.3f} s")
    if a.audit:
        audit_cost(a.audit, a.bins)


def audit_cost(rows_classes: str, bins: int) -> None:
    """What the calibration statistics (estimator table, tests, bands, consistency resamples) add to a whole
    `vcal audit --logits` at N x K: the audit timed end to end, and in the same run `compute_metrics` with and
    without them; the share is their extra time over the audit without them."""
    import os
    import subprocess
    import sys
    import tempfile
    import time

    import numpy as np

    from vcal_cli.metrics import compute_metrics

    n, k = map(int, rows_classes.split("x"))
    g = torch.Generator().manual_seed(1)
    z = torch.randn(n, k, generator=g) * 3
    y = torch.distributions.Categorical(logits=z).sample()
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "logits.npz")
        np.savez(path, logits=z.numpy(), labels=y.numpy())
        cmd = [sys.executable, "-m", "vcal_cli", "audit", "--logits", path, "--out", os.path.join(tmp, "r"), "--json"]
        t_audit = []
        for _ in range(2):
            t = time.perf_counter()
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            t_audit.append(time.perf_counter() - t)
    with_t, _ = best_of(lambda: compute_metrics(y, logits=z, n_bins=bins, n_bootstrap=200), 2)
    without, _ = best_of(lambda: compute_metrics(y, logits=z, n_bins=bins, n_bootstrap=200, with_tests=False), 2)
    audit = min(t_audit)
    extra = with_t - without
    print(f"vcal audit --logits at {n:,} x {k:,}: {audit:.2f} s (best of 2), of which the calibration statistics")
    print(f"  compute_metrics with them {with_t:.2f} s, without {without:.2f} s: +{extra:.2f} s")
    print(f"  ratio audit with / without them: {audit / (audit - extra):.2f}x")


if __name__ == "__main__":
    main()

"""Risk-controlled abstention: the lowest confidence threshold whose error rate among the accepted examples is at most
a target, with a finite-sample guarantee, found on val and checked on test.

The method is Geifman & El-Yaniv's Selection with Guaranteed Risk (SGR; "Selective classification for deep neural
networks", NeurIPS 2017, Algorithm 1). The confidence is the top-label probability (their softmax response). On the
n val examples sorted by confidence, a binary search of ceil(log2 n) steps tests thresholds: at each, the exact
binomial upper bound b* on the selective risk at level delta / ceil(log2 n) (the Clopper-Pearson bound: b* solves
P(Binomial(n_accepted, b*) <= errors) = delta / ceil(log2 n)) is compared with the target; the search moves to
accept more when b* <= target and fewer otherwise. By the union bound over the steps, the threshold returned has
true selective risk at most the target with probability at least 1 - delta (their Theorem 3.2; we return the lowest
tested threshold whose bound met the target, which that theorem covers, since each tested bound holds jointly).
When no tested threshold meets it (too few val examples, or a target below what the model can reach), vcal
abstains on everything and says so.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from vcal_cli._defaults import DEFAULT_RISK_DELTA
from vcal_cli.errors import UsageError

METHOD = "SGR (Geifman & El-Yaniv 2017), Clopper-Pearson bound, union bound over the binary search"


def check_risk(target: float | None, delta: float) -> None:
    """A bad --target-risk or --delta fails before any extraction."""
    if target is not None and not (0 < target < 1):
        raise UsageError(f"--target-risk {target} must be an error rate in (0, 1), e.g. 0.02")
    if not (0 < delta < 1):
        raise UsageError(f"--delta {delta} must be a probability in (0, 1), e.g. 0.05")


def risk_bound(errors: int, n: int, delta: float) -> float:
    """The exact (Clopper-Pearson) upper bound on a binomial rate: b with P(Binomial(n, b) <= errors) = delta."""
    from scipy.special import betaincinv

    if n == 0 or errors >= n:
        return 1.0
    return float(1 - betaincinv(n - errors, errors + 1, delta))


def guaranteed_threshold(conf: Tensor, correct: Tensor, target: float, delta: float) -> dict[str, Any]:
    """SGR on val: the threshold, its bound and the val coverage and risk (threshold None: abstain on everything)."""
    order = conf.double().argsort(stable=True)  # ascending: index z accepts rows z.. of the sorted list
    c, err = conf.double()[order], (~correct.bool())[order].double()
    n = len(c)
    tail_err = err.flip(0).cumsum(0).flip(0)  # errors among rows z..n-1
    steps = max(1, math.ceil(math.log2(n))) if n > 1 else 1
    lo, hi, best = 0, n - 1, None
    for _ in range(steps):
        z = (lo + hi + 1) // 2
        z = _first_of_ties(c, z)  # a threshold accepts every row at least as confident: ties move together
        accepted, errors = n - z, int(tail_err[z])
        b = risk_bound(errors, accepted, delta / steps)
        if b <= target:
            best = (z, b)
            hi = z
        else:
            lo = z
    if best is None:
        return {"threshold": None, "bound": None, "val_coverage": 0.0, "val_risk": None, "steps": steps}
    z, b = best
    return {
        "threshold": float(c[z]),
        "bound": b,
        "val_coverage": (n - z) / n,
        "val_risk": float(tail_err[z]) / (n - z),
        "steps": steps,
    }


def _first_of_ties(c: Tensor, z: int) -> int:
    return int(torch.searchsorted(c, c[z], right=False))


def abstention(
    val_probs: Tensor,
    val_labels: Tensor,
    test_probs: Tensor,
    test_labels: Tensor,
    target: float,
    delta: float = DEFAULT_RISK_DELTA,
) -> dict[str, Any]:
    """report.json's `risk_control`: the SGR threshold found on val, and on test the share accepted (coverage), the
    error rate among them (selective risk) and whether it held."""
    check_risk(target, delta)
    vc, vp = val_probs.double().max(1)
    found = guaranteed_threshold(vc, vp == val_labels.long(), target, delta)
    tc, tp = test_probs.double().max(1)
    accept = tc >= found["threshold"] if found["threshold"] is not None else torch.zeros_like(tc, dtype=torch.bool)
    n_acc = int(accept.sum())
    risk = float((tp[accept] != test_labels.long()[accept]).double().mean()) if n_acc else 0.0
    return {
        "method": METHOD,
        "confidence": "top-label probability",
        "target_risk": target,
        "delta": delta,
        **found,
        "n_val": len(val_labels),
        "n_test": len(test_labels),
        "coverage": n_acc / max(len(test_labels), 1),
        "selective_risk": risk,
        "held": risk <= target,
    }

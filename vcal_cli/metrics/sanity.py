"""Numbers that look impossible: a guard so that nonsense is never reported as an ordinary result.

`audit_warnings` flags an audit whose accuracy sits within a few points of chance (1/K, or the majority
class's share) and predictions that collapse onto one or two classes: the marks of a wrong
preprocessing, class order or architecture. `val_warning` flags a val split that behaves like training
data (the original head does about as well on val as on train, far better than on test): a head fitted
there is fitted to seen data.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from vcal_cli.metrics.compute import nll  # the one NLL: row chunks, a mapped cache's pages released as read

CHANCE_MARGIN = 0.05  # "within a few points of chance"
COLLAPSE_SHARE = 0.9  # two classes taking 90% of the predictions ...
COLLAPSE_TRUE_SHARE = 0.6  # ... while they hold at most 60% of the labels

FIX = (
    "likely causes: the preprocessing (set --input-size, --mean, --std), the class order of the data, or the "
    "architecture (--arch, --head-module)"
)


def audit_warnings(scores: Tensor, labels: Tensor) -> list[str]:
    """Warnings for an audit's (N, K) logits or probabilities and labels; [] when the numbers look sane."""
    n, k = scores.shape
    if n == 0 or k < 2:
        return []
    pred = scores.argmax(1)
    labels = labels.long()
    acc = float((pred == labels).float().mean())
    true_share = torch.bincount(labels, minlength=k).double() / n
    pred_share = torch.bincount(pred, minlength=k).double() / n
    chance = max(1.0 / k, float(true_share.max()))
    out = []
    present = int((true_share > 0).sum())
    if present == 1:
        out.append(
            f"the labels hold one class of {k} ({int(true_share.argmax())}): accuracy, ECE and the per-class numbers "
            "describe that class alone; audit on data that holds every class"
        )
    if acc <= chance + CHANCE_MARGIN:
        out.append(
            f"accuracy {acc:.3f} is at chance level (1/K = {1 / k:.3f}, majority class {float(true_share.max()):.3f}): "
            f"these numbers do not describe a working classifier; {FIX}"
        )
    if k >= 3:
        top = pred_share.topk(2).indices
        if float(pred_share[top[0]]) >= COLLAPSE_SHARE:
            top = top[:1]
        if float(pred_share[top].sum()) >= COLLAPSE_SHARE and float(true_share[top].sum()) <= COLLAPSE_TRUE_SHARE:
            which = ", ".join(str(int(c)) for c in top)
            out.append(
                f"predictions collapse onto class{'es' if len(top) > 1 else ''} {which} "
                f"({float(pred_share[top].sum()):.0%} of predictions, {float(true_share[top].sum()):.0%} of labels); "
                f"{FIX}"
            )
    return out


def val_warning(train: tuple[Tensor, Tensor], val: tuple[Tensor, Tensor], test: tuple[Tensor, Tensor]) -> str | None:
    """A warning when val's NLL under the original head is closer to train's than to test's while test is
    clearly worse than train (a generalisation gap): val then looks like data the network was trained on."""
    tr, va, te = nll(*train), nll(*val), nll(*test)
    gap = te > 1.5 * tr + 0.02
    if gap and abs(va - tr) < abs(va - te) and math.isfinite(va):
        return (
            f"val looks like training data: the original head's NLL is {va:.3f} on val, {tr:.3f} on train and "
            f"{te:.3f} on test, so heads fitted and selected on val are fitted to data the network has seen; "
            "if it was trained on the whole official train part, rerun with --val-from test"
        )
    return None

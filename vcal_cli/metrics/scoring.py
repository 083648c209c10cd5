"""Per-sample scores (accuracy, NLL, Brier) and the area under the risk-coverage curve."""

from __future__ import annotations

import torch
from torch import Tensor


def per_sample(probs: Tensor, log_probs: Tensor, labels: Tensor) -> dict[str, Tensor]:
    """Per-sample top-label confidence, correctness, NLL and Brier term; each (N,) float64."""
    conf, pred = probs.max(1)
    onehot = torch.nn.functional.one_hot(labels, probs.shape[1]).double()
    return {
        "conf": conf,
        "correct": (pred == labels).double(),
        "nll": -log_probs.gather(1, labels[:, None])[:, 0],
        "brier": ((probs - onehot) ** 2).sum(1),  # sum over classes, range [0, 2]
    }


def aurc_kernel(conf: Tensor, correct: Tensor) -> Tensor:
    """AURC for each row of (R, N): risk at coverage k/N of the k most confident, trapezoid, / (1 - 1/N).

    This is torch-uncertainty's definition (scores sorted descending, no tie handling). N < 2 gives NaN.
    """
    n = conf.shape[1]
    if n < 2:
        return torch.full((conf.shape[0],), float("nan"), dtype=torch.float64)
    order = torch.sort(conf, dim=1, descending=True, stable=True).indices
    err = 1.0 - correct.gather(1, order)
    risk = err.cumsum(1) / torch.arange(1, n + 1, dtype=torch.float64)
    area = ((risk[:, 1:] + risk[:, :-1]) / 2).sum(1) / n
    return area / (1.0 - 1.0 / n)

"""ReAct (Sun et al. 2021): the penultimate activations clipped at a percentile of the train activations, the
last layer applied to them, and the energy of those logits."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from vcal_cli.detectors.base import Detector, Scored, Train, block_rows, register

REACT_PERCENTILE = 90  # the paper's default
PERCENTILE_ELEMS = 16_000_000  # activations the percentile reads (a seeded sample of rows above this)


@register
class ReAct(Detector):
    name, uses = "react", "features+linear"
    paper = "energy of the logits of activations clipped at the train activations' 90th percentile (Sun et al. 2021)"

    def __init__(self, percentile: float = REACT_PERCENTILE) -> None:
        self.percentile = percentile

    def fit(self, train: Train) -> None:
        assert train.linear is not None
        f = train.features
        rows = max(1, PERCENTILE_ELEMS // f.shape[1])
        if len(f) > rows:
            idx = torch.randperm(len(f), generator=torch.Generator().manual_seed(train.seed + 41))[:rows].sort().values
            sample = f[idx]
        else:
            sample = f[:]
        self.threshold = float(np.percentile(sample.float().numpy().ravel(), self.percentile))
        self.rows_used = len(sample)
        self.linear = train.linear

    def score(self, x: Scored) -> Tensor:
        f = x.features
        out = torch.empty(len(f), dtype=torch.float64)
        step = block_rows(max(f.shape[1], len(self.linear.bias)))
        for a in range(0, len(f), step):
            z = f[a : a + step].double().clamp(max=self.threshold)
            out[a : a + len(z)] = -torch.logsumexp(z @ self.linear.weight.T + self.linear.bias, 1)
        return out

    def settings(self) -> dict[str, object]:
        return {"percentile": self.percentile, "threshold": self.threshold, "train_rows": self.rows_used}

"""KNN (Sun et al. 2022): the distance of an input's L2-normalised features to its k-th nearest normalised train
feature. For unit vectors |z - t|^2 = 2 - 2 z.t, so the k nearest are the k largest dot products: blocked float32
matrix products with a running top-k (no N x N_train matrix), the k-th one's distance then taken in float64. The
train rows may be a seeded sample (the paper keeps 1% of ImageNet's train rows)."""

from __future__ import annotations

import torch
from torch import Tensor

from vcal_cli.detectors.base import Detector, Scored, Train, block_rows, register
from vcal_cli.errors import UsageError

KNN_K = 50  # the paper's k on CIFAR-10 with every train row
KNN_SAMPLED_K = 10  # the paper's k on ImageNet with 1% of the train rows
KNN_SAMPLED_SHARE = 0.01
KNN_FULL_ROWS = 100_000  # up to this many train rows, every one is used by default
TRAIN_BLOCK = 65_536  # train rows per matrix product


def normalise(f: Tensor) -> Tensor:
    f = f.float()
    return f / f.norm(dim=1, keepdim=True).clamp_min(1e-12)


@register
class KNN(Detector):
    name, uses = "knn", "features"
    paper = "k-th nearest neighbour distance on L2-normalised features (Sun et al. 2022)"

    def __init__(self, k: int | None = None, share: float | None = None) -> None:
        self.k, self.share = k, share

    def fit(self, train: Train) -> None:
        n = len(train.features)
        share = self.share if self.share is not None else (1.0 if n <= KNN_FULL_ROWS else KNN_SAMPLED_SHARE)
        if not 0 < share <= 1:
            raise UsageError(f"--knn-share {share} must be in (0, 1]")
        rows = max(1, round(share * n))
        # the default k shrinks to a tiny train split; a k the user gave is checked
        k = self.k if self.k is not None else min(rows, KNN_K if share == 1 else KNN_SAMPLED_K)
        if k < 1 or k > rows:
            raise UsageError(
                f"--knn-k {k} is not between 1 and the {rows:,} train rows KNN uses; lower it or raise --knn-share"
            )
        if rows < n:
            idx = torch.randperm(n, generator=torch.Generator().manual_seed(train.seed + 31))[:rows].sort().values
            bank = torch.cat([normalise(train.features[idx[a : a + TRAIN_BLOCK]]) for a in range(0, rows, TRAIN_BLOCK)])
        else:
            bank = torch.cat([normalise(train.features[a : a + TRAIN_BLOCK]) for a in range(0, n, TRAIN_BLOCK)])
        self.bank, self.k_used, self.share_used = bank, k, share

    def score(self, x: Scored) -> Tensor:
        f = x.features
        out = torch.empty(len(f), dtype=torch.float64)
        step = block_rows(TRAIN_BLOCK) * 2  # float32 similarities: (step, TRAIN_BLOCK) near BLOCK_ELEMS * 2
        for a in range(0, len(f), step):
            z = normalise(f[a : a + step])
            vals = torch.full((len(z), self.k_used), -3.0)
            idx = torch.zeros(len(z), self.k_used, dtype=torch.long)
            for t in range(0, len(self.bank), TRAIN_BLOCK):
                top = (z @ self.bank[t : t + TRAIN_BLOCK].T).topk(min(self.k_used, len(self.bank) - t), 1)
                vals, pos = torch.cat([vals, top.values], 1).topk(self.k_used, 1)
                idx = torch.cat([idx, top.indices + t], 1).gather(1, pos)
            # the k-th neighbour found with float32 products; its distance recomputed in float64
            zz = f[a : a + step].double()
            zz = zz / zz.norm(dim=1, keepdim=True).clamp_min(1e-12)
            out[a : a + len(z)] = (zz - self.bank[idx[:, -1]].double()).norm(dim=1)
        return out

    def settings(self) -> dict[str, object]:
        return {"k": self.k_used, "train_share": self.share_used, "train_rows": len(self.bank)}

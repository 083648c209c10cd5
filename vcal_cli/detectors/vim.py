"""ViM (Wang et al. 2022): a virtual logit from the norm of the features' residual off the train features'
principal subspace, with the origin moved to u = -pinv(W) b, matched to the real logits' scale by alpha, against
the energy of the real logits."""

from __future__ import annotations

import torch
from torch import Tensor

from vcal_cli.detectors.base import Detector, Scored, Train, block_rows, register
from vcal_cli.detectors.gaussian import moments

ALPHA_ROWS = 200_000  # train rows whose residual norms set alpha (a seeded sample above this)


def principal_dim(d: int) -> int:
    """The paper's principal-subspace dimension: 1,000 at 2,048 features and more, 512 at 768 and more, else D/2."""
    return 1000 if d >= 2048 else 512 if d >= 768 else max(1, d // 2)


@register
class ViM(Detector):
    name, uses = "vim", "features+linear"
    paper = "virtual-logit matching, principal dimension by feature width (Wang et al. 2022)"

    def __init__(self, dim: int | None = None) -> None:
        self.dim = dim

    def fit(self, train: Train) -> None:
        assert train.linear is not None
        w, b = train.linear.weight, train.linear.bias
        self.origin = -(torch.linalg.pinv(w) @ b)
        m = moments(train)
        shift = m.mean - self.origin
        cov = m.total + torch.outer(shift, shift)  # E[(x - u)(x - u)^T]: the second moment about the origin
        d = cov.shape[0]
        self.dim_used = min(self.dim or principal_dim(d), d - 1)
        _, vecs = torch.linalg.eigh(cov)  # ascending eigenvalues
        self.residual = vecs[:, : d - self.dim_used].contiguous()  # the D - dim directions the train data least use
        n = len(train.features)
        rows = torch.arange(n)
        if n > ALPHA_ROWS:
            rows = (
                torch.randperm(n, generator=torch.Generator().manual_seed(train.seed + 37))[:ALPHA_ROWS].sort().values
            )
        norms = self._norms(train.features, rows)
        z, step = train.logits, block_rows(train.logits.shape[1])
        top = sum(float(z[a : a + step].double().amax(1).sum()) for a in range(0, n, step)) / n  # in row blocks
        self.alpha = top / float(norms.mean())
        self.alpha_rows = len(rows)

    def _norms(self, f: Tensor, rows: Tensor | None = None) -> Tensor:
        n = len(f) if rows is None else len(rows)
        out = torch.empty(n, dtype=torch.float64)
        step = block_rows(f.shape[1])
        for a in range(0, n, step):
            x = (f[a : a + step] if rows is None else f[rows[a : a + step]]).double() - self.origin
            out[a : a + len(x)] = (x @ self.residual).norm(dim=1)
        return out

    def score(self, x: Scored) -> Tensor:
        return self.alpha * self._norms(x.features) - torch.logsumexp(x.outputs.double(), 1)

    def settings(self) -> dict[str, object]:
        return {"principal_dim": self.dim_used, "alpha": self.alpha, "alpha_train_rows": self.alpha_rows}

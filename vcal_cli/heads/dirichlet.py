"""Dirichlet calibration with ODIR: an affine map of the log-probabilities, regularised off the diagonal.

log p(y|x) = log_softmax(W log softmax(z) + b), fitted on val by
    mean NLL + lambda * mean_{i != j} W_ij^2 + mu * mean_j b_j^2
(off-diagonal and intercept regularisation, ODIR, the paper's choice for many classes), full-batch L-BFGS in
float64 from W = I, b = 0 (the original probabilities). lambda = mu is chosen from a grid by 5-fold
cross-validation of the val NLL, then refitted on all of val. Differences from the paper: the paper
searches lambda and mu separately (and fits with Adam / Newton); vcal ties them to keep the search at 5
fits x 5 folds. As published, the diagonal is free: on a val split the original head classifies without
error it scales without bound (test NLL 16 on the digits sample, against 0.14); `--head auto` scores it
cross-fitted, which exposes this, and does not pick it there. Above 128 classes the map is diag(d) + U V^T of
rank 16 (the off-diagonal part, which ODIR regularises, is U V^T's), as for `matrix`.

Kull, Perello-Nieto, Kängsepp, Silva Filho, Song, Flach. Beyond temperature scaling: Obtaining
well-calibrated multiclass probabilities with Dirichlet calibration. NeurIPS 2019. arXiv:1910.12656.
"""

from __future__ import annotations

from dataclasses import dataclass

from vcal_cli.heads.base import param, register
from vcal_cli.heads.vector import LogitMapParams, VectorHead


@dataclass(frozen=True)
class DirichletParams(LogitMapParams):
    odir: float | None = param(None, "ODIR weight lambda = mu (auto: 5-fold cross-validation on val).")


@register
class DirichletHead(VectorHead[DirichletParams]):
    name = "dirichlet"
    summary = "Dirichlet calibration (ODIR): affine map of the log-probabilities, fitted on val (post-hoc)"
    paper = "Kull et al., NeurIPS 2019, arXiv:1910.12656"
    Params = DirichletParams
    kind = "dirichlet"
    penalty = "odir"

    def _reg(self, lam: float) -> dict[str, float]:
        return {"off_diagonal": lam, "bias": lam}

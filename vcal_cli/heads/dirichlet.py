"""Dirichlet calibration with ODIR: an affine map of the log-probabilities, regularised off the diagonal.

log p(y|x) = log_softmax(W log softmax(z) + b), fitted on val by
    mean NLL + lambda * mean_{i != j} W_ij^2 + mu * mean_j b_j^2
(off-diagonal and intercept regularisation, ODIR, the paper's choice for many classes), full-batch L-BFGS in
float64 from W = I, b = 0 (the original probabilities). lambda = mu is chosen from a grid by 5-fold
cross-validation of the val NLL, then refitted on all of val. Differences from the paper: the paper
searches lambda and mu separately (and fits with Adam / Newton); vcal ties them to keep the search at 5
fits x 5 folds.

Kull, Perello-Nieto, Kängsepp, Silva Filho, Song, Flach. Beyond temperature scaling: Obtaining
well-calibrated multiclass probabilities with Dirichlet calibration. NeurIPS 2019. arXiv:1910.12656.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from vcal_cli.heads._posthoc import LogitMap, cross_fitted_nll, fit_logit_map
from vcal_cli.heads.base import FitData, HeadParams, Track, register
from vcal_cli.heads.vector import VectorHead

GRID = (1e-4, 1e-3, 1e-2, 1e-1, 1.0)


@dataclass(frozen=True)
class DirichletParams(HeadParams):
    odir: float | None = None  # lambda = mu; None: chosen from GRID by 5-fold cross-validation on val
    max_iter: int = 500  # L-BFGS iterations


@register
class DirichletHead(VectorHead):
    name = "dirichlet"
    summary = "Dirichlet calibration (ODIR): affine map of the log-probabilities, fitted on val (post-hoc)"
    paper = "Kull et al., NeurIPS 2019, arXiv:1910.12656"
    Params = DirichletParams
    kind = "dirichlet"

    def _fit(self, train: FitData, val: FitData, *, base: nn.Module | None, progress: Track) -> nn.Module:
        p: DirichletParams = self.params  # type: ignore[assignment]
        if p.odir is None:
            scores = {}
            for lam in progress(GRID, total=len(GRID), description="dirichlet: choosing lambda"):

                def fit(rows: torch.Tensor, lam: float = lam):  # noqa: ANN202
                    m = LogitMap(val.logits.shape[1], val.logits.shape[1], "dirichlet")
                    fit_logit_map(m, val.logits[rows], val.labels[rows], off_diagonal=lam, bias=lam,
                                  max_iter=p.max_iter)  # fmt: skip
                    return lambda held: torch.log_softmax(m.calibrate(val.logits[held].double()), 1).detach()

                scores[lam] = float(cross_fitted_nll(fit, len(val.labels), val.labels, seed=p.seed).mean())
            self.lambda_ = min(scores, key=lambda k: (scores[k], -k))  # ties: the stronger penalty
            self.cv_ = scores
        else:
            self.lambda_, self.cv_ = p.odir, {}
        return super()._fit(train, val, base=base, progress=progress)

    def refit_params(self) -> DirichletParams:
        import dataclasses

        return dataclasses.replace(self.params, odir=self.lambda_)  # type: ignore[type-var]

    def _reg(self) -> dict[str, float]:
        return {"off_diagonal": self.lambda_, "bias": self.lambda_}

    def extra_report(self) -> dict[str, Any]:
        return {"lambda": self.lambda_, "val_loss": self.val_loss_}

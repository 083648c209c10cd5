"""Vector scaling: a per-class scale and bias of the original logits, fitted on val by NLL.

log p(y|x) = log_softmax(w * z + b), z the checkpoint's logits, w and b in R^K; full-batch L-BFGS in float64
on the val NLL. K + K parameters: between temperature scaling (1) and matrix scaling (K^2 + K); it can
change the predicted class. Difference from the paper (measured): Guo et al. fit it unregularised; on a
val split the original head classifies almost without error (the shipped digits sample: 180 images)
the unregularised map scales the logits without bound and the test NLL explodes (37 on the sample, against
0.14 for the original). vcal adds `ridge * mean((w - 1)^2) + ridge * mean(b^2)`, a pull towards the
original logits, with `ridge` chosen from a grid by 5-fold cross-validation of the val NLL (`--ridge 0`
gives the paper's method).

Guo, Pleiss, Sun, Weinberger. On Calibration of Modern Neural Networks. ICML 2017. arXiv:1706.04599.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

import torch
from torch import nn

from vcal_cli.heads._posthoc import LogitMap, cross_fitted_nll, fit_logit_map
from vcal_cli.heads.base import FitData, Head, HeadModule, HeadParams, Track, param, register

GRID = (1e-4, 1e-3, 1e-2, 1e-1, 1.0)  # penalty weights the cross-validation chooses from


@dataclass(frozen=True)
class LogitMapParams(HeadParams):
    """What the logit-map heads share; each adds its penalty weight (the field named by `penalty`)."""

    max_iter: int = param(500, "L-BFGS iterations.")


@dataclass(frozen=True)
class VectorParams(LogitMapParams):
    ridge: float | None = param(None, "Pull towards the original logits (auto: 5-fold CV on val; 0: none, the paper).")


LP = TypeVar("LP", bound=LogitMapParams)


@register
class VectorHead(Head[LP]):
    name = "vector"
    summary = "vector scaling: per-class scale and bias of the original logits, fitted on val (post-hoc)"
    paper = "Guo et al., ICML 2017, arXiv:1706.04599"
    Params = VectorParams
    Module = LogitMap
    needs_linear_base = True
    fits_on = "val"
    kind: ClassVar[str] = "vector"
    penalty: ClassVar[str] = "ridge"  # the Params field holding the penalty weight

    def _reg(self, lam: float) -> dict[str, float]:
        return {"ridge": lam, "bias": lam}

    def _fit(self, train: FitData, val: FitData, *, base: nn.Module | None, progress: Track) -> HeadModule:
        assert isinstance(base, nn.Linear)
        chosen = getattr(self.params, self.penalty)
        self.cv_: dict[float, float] = {}
        if chosen is None:
            for lam in progress(GRID, total=len(GRID), description=f"{self.name}: choosing the penalty"):
                self.cv_[lam] = self._cv(val, lam)
            chosen = min(self.cv_, key=lambda k: (self.cv_[k], -k))  # ties: the stronger penalty
        self.lambda_ = chosen
        module = LogitMap(base.in_features, base.out_features, self.kind)
        module.linear.load_state_dict(base.state_dict())
        self.val_loss_ = fit_logit_map(module, val.logits, val.labels, **self._reg(chosen),
                                       max_iter=self.params.max_iter)  # fmt: skip
        return module

    def _cv(self, val: FitData, lam: float) -> float:
        k = val.logits.shape[1]

        def fit(rows: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
            m = LogitMap(k, k, self.kind)
            fit_logit_map(m, val.logits[rows], val.labels[rows], **self._reg(lam),
                          max_iter=self.params.max_iter)  # fmt: skip
            return lambda held: torch.log_softmax(m.calibrate(val.logits[held].double()), 1).detach()

        return float(cross_fitted_nll(fit, len(val.labels), val.labels, seed=self.params.seed).mean())

    def refit_params(self) -> LP:
        return dataclasses.replace(self.params, **{self.penalty: self.lambda_})

    def extra_report(self) -> dict[str, Any]:
        return {self.penalty: self.lambda_, "val_loss": self.val_loss_}

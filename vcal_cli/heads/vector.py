"""Vector scaling: a per-class scale and bias of the original logits, fitted on val by NLL.

log p(y|x) = log_softmax(w * z + b), z the checkpoint's logits, w and b in R^K; full-batch L-BFGS in float64
on the val NLL. K + K parameters: between temperature scaling (1) and matrix scaling (K^2 + K); it can
change the predicted class. Difference from the paper (measured): Guo et al. fit it unregularised; on a
val split the original head classifies almost without error (the shipped digits sample: 180 images)
the unregularised map scales the logits without bound and the test NLL explodes (37 on the sample, against
0.14 for the original). vcal adds `ridge * mean((w - 1/T)^2) + ridge * mean(b^2)`, a pull towards temperature
scaling's map (T fitted on the same rows; a strong ridge gives temperature scaling), with `ridge` chosen by
5-fold cross-validation of the val NLL along the path 1e6, 1e5, ..., 1e-4, strongest first, stopped once two
weaker penalties in a row gain nothing (on more than 10,000 val rows, or for the low-rank maps of matrix and
Dirichlet scaling above 128 classes: one held-out fifth of at most 10,000 seeded rows).
`--ridge 0` gives the paper's method.
The CV fits start at W = I/T, the refit on all of val from the folds' solution at the chosen penalty; L-BFGS on the
analytic gradient (float32 passes above 4M val cells).

Guo, Pleiss, Sun, Weinberger. On Calibration of Modern Neural Networks. ICML 2017. arXiv:1706.04599.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

import torch
from torch import nn

from vcal_cli.errors import HeadError
from vcal_cli.heads._posthoc import LOW_RANK_K, RANK, LogitMap, fit_logit_map
from vcal_cli.heads.base import FitData, Head, HeadModule, HeadParams, Track, param, register
from vcal_cli.heads.temperature import fit_inverse_temperature

MAX_PENALTY = 1e6  # the path of penalties the cross-validation walks: 1e6, 1e5, ..., MIN_PENALTY
MIN_PENALTY = 1e-4
PATIENCE = 2  # the path stops after this many weaker penalties in a row without a better CV score
CV_ITER = 100  # L-BFGS iterations of a fold's fit (at float32's tolerances): the CV compares NLLs to ~1e-6
FOLDS = 5
CV_ROWS = 10_000  # the penalty is chosen on at most this many val rows (seeded), then the map refitted on all


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
        self.stopped_: str | None = None
        self.path_: dict[float, Any] = {}  # penalty -> the folds' mean solution (the refit's warm start)
        if chosen is None:
            self.cv_ = self._choose(val, progress)
            chosen = min(self.cv_, key=lambda k: (self.cv_[k], -k))  # ties: the stronger penalty
        self.lambda_ = chosen
        module, s = self._start(val.logits, val.labels, base.in_features)
        module.linear.load_state_dict(base.state_dict())
        self.val_loss_, _ = fit_logit_map(
            module,
            val.logits,
            val.labels,
            **self._reg(chosen),
            anchor=s,
            start=self.path_.get(chosen),
            max_iter=self.params.max_iter,
            seed=self.params.seed,
        )
        return module

    def _start(self, logits: torch.Tensor, labels: torch.Tensor, in_features: int) -> tuple[LogitMap, float]:
        """The map at temperature scaling's optimum (W = I / T: the NLL is already near its minimum there), and
        1/T, which the ridge pulls towards."""
        module = LogitMap(in_features, logits.shape[1], self.kind)
        try:
            s = fit_inverse_temperature(logits, labels)
        except HeadError:  # val separable or unrelated: start from the original logits
            s = 1.0
        with torch.no_grad():
            module.weight.mul_(s)
        return module, s

    def _choose(self, val: FitData, progress: Track) -> dict[float, float]:
        """Cross-validated val NLL per penalty along the path MAX_PENALTY, MAX_PENALTY / 10, ..., MIN_PENALTY, each
        fold's fit starting from its previous solution (the strongest penalty barely moves temperature scaling's
        map, so the path starts where the answer is cheap), stopped once PATIENCE weaker penalties in a row score no
        better: the weak end, where a K-class map has most freedom and L-BFGS the most work, is reached only when it
        helps. Up to CV_ROWS val rows: FOLDS folds. More, or a low-rank map (matrix and Dirichlet above LOW_RANK_K
        classes: a fold's fit costs seconds there): one held-out fifth of at most CV_ROWS seeded rows (a fifth of
        10,000 rows gives the NLL to about +-0.02)."""
        n = len(val.labels)
        gen = torch.Generator().manual_seed(self.params.seed)
        rows = torch.randperm(n, generator=gen)[:CV_ROWS].sort().values if n > CV_ROWS else torch.arange(n)
        logits, labels = val.logits[rows], val.labels[rows]
        self.cv_rows_ = len(rows)
        perm = torch.randperm(len(rows), generator=gen)
        low_rank = self.kind != "vector" and logits.shape[1] > LOW_RANK_K  # a fold's fit takes seconds there
        folds = FOLDS if n <= CV_ROWS and not low_rank else 1
        shown = f" on {len(rows) // FOLDS:,} held-out of {n:,} val rows" if folds == 1 else ""
        splits = []
        for f in range(folds):
            held = perm[f::FOLDS]
            keep = torch.cat([perm[g::FOLDS] for g in range(FOLDS) if g != f])
            splits.append((held, keep, *self._start(logits[keep], labels[keep], logits.shape[1])))
        thetas: list[Any] = [None] * folds
        scores: dict[float, float] = {}
        path = [MAX_PENALTY / 10**i for i in range(round(math.log10(MAX_PENALTY / MIN_PENALTY)) + 1)]
        best, worse = math.inf, 0
        for lam in progress(path, total=len(path), description=f"{self.name}: choosing the penalty{shown}"):
            nll = torch.full((len(rows),), torch.nan, dtype=torch.float64)
            for f, (held, keep, module, s) in enumerate(splits):
                _, thetas[f] = fit_logit_map(
                    module,
                    logits[keep],
                    labels[keep],
                    **self._reg(lam),
                    anchor=s,
                    start=thetas[f],
                    max_iter=min(self.params.max_iter, CV_ITER),
                    seed=self.params.seed,
                    rough=True,
                )
                with torch.no_grad():
                    logp = torch.log_softmax(module.calibrate(logits[held].double()), 1)
                nll[held] = -logp.gather(1, labels[held, None].long())[:, 0]
            scores[lam] = float(nll.nanmean())
            self.path_[lam] = sum(thetas) / folds
            best, worse = (scores[lam], 0) if scores[lam] < best else (best, worse + 1)
            if worse >= PATIENCE:
                break
            if self.deadline is not None and time.monotonic() > self.deadline:  # `--auto-budget`: the best so far
                self.stopped_ = f"after {len(scores)} of {len(path)} penalties on the path"
                break
        return scores

    def refit_params(self) -> LP:
        return dataclasses.replace(self.params, **{self.penalty: self.lambda_})

    def extra_report(self) -> dict[str, Any]:
        k = self.module_.linear.out_features
        form = f"diagonal + rank {RANK}" if self.kind != "vector" and k > LOW_RANK_K else "full"
        return {
            self.penalty: self.lambda_,
            "val_loss": self.val_loss_,
            "form": form,
            **({"cv_rows": self.cv_rows_} if self.cv_ else {}),
            **({"stopped": self.stopped_} if getattr(self, "stopped_", None) else {}),
        }

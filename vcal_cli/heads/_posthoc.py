"""What the post-hoc heads share: they keep the checkpoint's own linear head and learn a map of its
logits (or probabilities) on val, so their modules are `log_softmax(map(linear(features)))`.

- `LogitMap`: vector scaling, matrix scaling (Guo et al. 2017) and Dirichlet calibration (Kull et al.
  2019) as one module; `fit_logit_map` solves their full-batch objectives with L-BFGS in float64.
- `OneDimMaps`: the non-parametric maps (isotonic regression, histogram binning) as piecewise-linear or
  piecewise-constant tables in buffers, one-vs-rest (one table per class, then normalised: scikit-learn's
  and netcal's multi-class definition) or top-label (one table for the top class's confidence, the
  other classes rescaled to fill the rest).
- `cross_fitted_nll`: per-sample val NLL of a head fitted on val, each fold scored by a fit on the
  others, so a head that fits val is not judged on the samples it was fitted to (`--head auto`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from vcal_cli.errors import HeadError
from vcal_cli.heads.base import HeadModule

PROB_FLOOR = 1e-6  # calibrated probabilities below this are raised to it (then renormalised): NLL stays finite


class LogitMap(HeadModule):
    """log_softmax(A(x) + b) with x = linear(features) (vector, matrix) or log_softmax of it (dirichlet);
    A is diag(w) (vector) or a full K x K matrix (matrix, dirichlet)."""

    def __init__(self, in_features: int, num_classes: int, kind: str) -> None:
        super().__init__()
        if kind not in ("vector", "matrix", "dirichlet"):
            raise HeadError(f"unknown logit map '{kind}'")
        self.kind = kind
        self.linear = nn.Linear(in_features, num_classes)
        k = num_classes
        self.weight = nn.Parameter(torch.ones(k) if kind == "vector" else torch.eye(k))
        self.bias = nn.Parameter(torch.zeros(k))

    def calibrate(self, logits: Tensor) -> Tensor:
        x = torch.log_softmax(logits, dim=1) if self.kind == "dirichlet" else logits
        w, b = self.weight.to(x.dtype), self.bias.to(x.dtype)
        return (x * w if self.kind == "vector" else x @ w.T) + b

    def forward(self, features: Tensor) -> Tensor:
        return torch.log_softmax(self.calibrate(self.linear(features)), dim=1)

    def config(self) -> dict[str, Any]:
        return {"in_features": self.linear.in_features, "num_classes": self.linear.out_features, "kind": self.kind}


def fit_logit_map(
    module: LogitMap, logits: Tensor, labels: Tensor, *, off_diagonal: float = 0.0, bias: float = 0.0,
    ridge: float = 0.0, max_iter: int = 500,
) -> float:  # fmt: skip
    """Minimise mean NLL + off_diagonal * mean_{i != j} W_ij^2 + bias * mean_j b_j^2 (Kull et al.'s ODIR)
    + ridge * mean (W - I)^2 (a pull towards the original logits) over the map's parameters, full batch:
    SciPy's L-BFGS-B on the analytic gradient in float64 (NumPy: microseconds per step on val-sized
    inputs). Returns the loss at the optimum."""
    from scipy.optimize import minimize

    z = logits.double().numpy()
    y = labels.long().numpy()
    n, k = z.shape
    x = z
    if module.kind == "dirichlet":  # log softmax (a shift of the logits leaves it unchanged)
        x = z - z.max(1, keepdims=True)
        x = x - np.log(np.exp(x).sum(1, keepdims=True))
    onehot = np.zeros((n, k))
    onehot[np.arange(n), y] = 1.0
    vector = module.kind == "vector"
    w0 = np.ones(k) if vector else np.eye(k)
    off = None if vector else ~np.eye(k, dtype=bool)
    n_off = max(k * (k - 1), 1)

    def f(theta: np.ndarray) -> tuple[float, np.ndarray]:
        w = theta[:k] if vector else theta[: k * k].reshape(k, k)
        b = theta[-k:]
        out = (x * w if vector else x @ w.T) + b
        out = out - out.max(1, keepdims=True)
        lse = np.log(np.exp(out).sum(1))
        loss = float((lse - out[np.arange(n), y]).mean())
        g_out = (np.exp(out - lse[:, None]) - onehot) / n
        gw = (g_out * x).sum(0) if vector else g_out.T @ x
        gb = g_out.sum(0)
        if off is not None and off_diagonal > 0 and k > 1:
            loss += off_diagonal * float((w[off] ** 2).sum()) / n_off
            gw = gw + np.where(off, 2 * off_diagonal * w / n_off, 0.0)
        if bias > 0:
            loss += bias * float((b**2).mean())
            gb = gb + 2 * bias * b / k
        if ridge > 0:
            d = w - w0
            loss += ridge * float((d**2).mean())
            gw = gw + 2 * ridge * d / d.size
        return loss, np.concatenate([gw.ravel(), gb])

    theta0 = np.concatenate([module.weight.detach().double().numpy().ravel(), module.bias.detach().double().numpy()])
    r = minimize(f, theta0, jac=True, method="L-BFGS-B",
                 options={"maxiter": max_iter, "ftol": 1e-15, "gtol": 1e-9, "maxcor": 20})  # fmt: skip
    final = float(r.fun)
    if not math.isfinite(final):
        raise HeadError(f"{module.kind} scaling diverged on val (loss {final})")
    with torch.no_grad():
        module.weight.copy_(torch.from_numpy(r.x[:-k].reshape(module.weight.shape)).float())
        module.bias.copy_(torch.from_numpy(r.x[-k:]).float())
    return final


class OneDimMaps(HeadModule):
    """Per-class (one-vs-rest) or top-label 1-D maps of probabilities, as tables: knots `xs` (T,) per map and
    values `ys`, interpolated linearly (isotonic) or looked up by equal-width bin (histogram)."""

    def __init__(self, in_features: int, num_classes: int, maps: int, knots: int, mode: str, interp: str) -> None:
        super().__init__()
        self.mode, self.interp = mode, interp  # mode: ovr | top; interp: linear | bins
        self.linear = nn.Linear(in_features, num_classes)
        self.register_buffer("xs", torch.zeros(maps, knots, dtype=torch.float64))
        self.register_buffer("ys", torch.zeros(maps, knots, dtype=torch.float64))
        self.register_buffer("n_knots", torch.zeros(maps, dtype=torch.int64))

    def _apply_map(self, i: int, p: Tensor) -> Tensor:
        p = p.contiguous()
        n = int(self.n_knots[i])
        xs, ys = self.xs[i, :n], self.ys[i, :n]
        if self.interp == "bins":  # xs: the B+1 bin edges, ys[:B] each bin's value (netcal's rule: right-closed bins)
            eps = torch.finfo(torch.float64).eps
            p = p.clamp(eps, 1 - eps)  # as netcal
            b = n - 1
            idx = (torch.searchsorted(xs, p, right=False) - 1).clamp(0, b - 1)
            return ys[idx]
        if n == 1:
            return ys[:1].expand_as(p)
        p = p.clamp(xs[0], xs[-1])  # out_of_bounds="clip", as scikit-learn's isotonic calibration
        j = torch.searchsorted(xs, p, right=True).clamp(1, n - 1)
        x0, x1, y0, y1 = xs[j - 1], xs[j], ys[j - 1], ys[j]
        t = torch.where(x1 > x0, (p - x0) / (x1 - x0), torch.zeros_like(p))
        return y0 + t * (y1 - y0)

    def calibrated_probs(self, probs: Tensor) -> Tensor:
        """(N, K) calibrated probabilities before the floor, in float64."""
        p = probs.double()
        if self.mode == "ovr":
            out = torch.stack([self._apply_map(k, p[:, k]) for k in range(p.shape[1])], dim=1)
            s = out.sum(1, keepdim=True)
            return torch.where(s > 0, out / s.clamp_min(1e-300), torch.full_like(out, 1.0 / p.shape[1]))
        conf, top = p.max(1)
        new = self._apply_map(0, conf).clamp(0, 1)
        others = p.scatter(1, top[:, None], 0.0).sum(1)  # exact, unlike 1 - conf when conf rounds to 1
        k = p.shape[1]  # the other classes share 1 - new in their proportions; uniformly if they had none
        flat = torch.full_like(p, 1.0 / max(k - 1, 1)).scatter(1, top[:, None], 0.0)
        share = torch.where(others[:, None] > 0, p / others.clamp_min(1e-300)[:, None], flat)
        out = share * (1 - new)[:, None]
        return out.scatter(1, top[:, None], new[:, None])

    def forward(self, features: Tensor) -> Tensor:
        q = self.calibrated_probs(torch.softmax(self.linear(features), dim=1)).clamp_min(PROB_FLOOR)
        return torch.log(q / q.sum(1, keepdim=True)).to(features.dtype)

    def config(self) -> dict[str, Any]:
        return {"in_features": self.linear.in_features, "num_classes": self.linear.out_features,
                "maps": int(self.xs.shape[0]), "knots": int(self.xs.shape[1]), "mode": self.mode,
                "interp": self.interp}  # fmt: skip


def set_tables(module: OneDimMaps, tables: list[tuple[Tensor, Tensor]]) -> None:
    for i, (xs, ys) in enumerate(tables):
        n = len(xs)
        module.xs[i, :n], module.ys[i, :n], module.n_knots[i] = xs.double(), ys.double(), n


def one_dim_targets(probs: Tensor, labels: Tensor, mode: str) -> list[tuple[Tensor, Tensor]]:
    """(scores, 0/1 targets) per map: per class (ovr) or the top class's confidence and correctness (top)."""
    p = probs.double()
    if mode == "ovr":
        return [(p[:, k], (labels == k).double()) for k in range(p.shape[1])]
    conf, top = p.max(1)
    return [(conf, (top == labels).double())]


def cross_fitted_nll(
    fit: Callable[[Tensor], Callable[[Tensor], Tensor]], n: int, labels: Tensor, folds: int = 5, seed: int = 0
) -> Tensor:
    """Per-sample NLL on val where each fold is predicted by `fit(train_idx)` (which returns a log-prob
    predictor taking row indices). Fixed seeded folds; (n,) float64."""
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    out = torch.empty(n, dtype=torch.float64)
    for f in range(folds):
        held = perm[f::folds]
        keep = torch.cat([perm[g::folds] for g in range(folds) if g != f])
        logp = fit(keep)(held)
        out[held] = -logp.double().gather(1, labels[held, None].long())[:, 0]
    return out

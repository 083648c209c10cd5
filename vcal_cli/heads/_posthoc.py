"""What the post-hoc heads share: they keep the checkpoint's own linear head and learn a map of its
logits (or probabilities) on val, so their modules are `log_softmax(map(linear(features)))`.

- `LogitMap`: vector scaling, matrix scaling (Guo et al. 2017) and Dirichlet calibration (Kull et al.
  2019) as one module; `fit_logit_map` solves their full-batch objectives with L-BFGS (exact gradients by
  torch; float32 on large val splits; a diagonal + low-rank map above LOW_RANK_K classes).
- `OneDimMaps`: the non-parametric maps (isotonic regression, histogram binning) as piecewise-linear or
  piecewise-constant tables in buffers, one-vs-rest (one table per class, then normalised: scikit-learn's
  and netcal's multi-class definition) or top-label (one table for the top class's confidence, the
  other classes rescaled to fill the rest).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from threadpoolctl import threadpool_limits
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

    def as_linear(self) -> tuple[Tensor, Tensor] | None:
        """vector: diag(a) W, a * b + c; matrix: A W, A b + c (dirichlet maps log-probabilities: not linear)."""
        if self.kind == "dirichlet":
            return None
        w, b = self.linear.weight.detach().double(), self.linear.bias.detach().double()
        a, c = self.weight.detach().double(), self.bias.detach().double()
        return (a[:, None] * w, a * b + c) if self.kind == "vector" else (a @ w, a @ b + c)

    def config(self) -> dict[str, Any]:
        return {"in_features": self.linear.in_features, "num_classes": self.linear.out_features, "kind": self.kind}


FLOAT64_CELLS = 4_000_000  # val logits up to this many cells (N x K) fit in float64; larger ones in float32
LOW_RANK_K = 128  # matrix and Dirichlet maps of more classes fit W = diag(d) + U V^T (rank RANK), not all K^2
RANK = 16
BLOCK = 4096  # rows per block of the N x K passes
SCALE_ITER = 100  # L-BFGS iterations per stage: the low-rank form, and float32 (large val splits)


class LogitMapObjective:
    """The penalised mean NLL of a logit map on (logits, labels) and its analytic gradient, over a flat float64
    parameter vector: [w, b] (vector), [W, b] (full K x K) or [d, U, V, b] (W = diag(d) + U V^T, above LOW_RANK_K
    classes). The N x K passes run over row blocks, in float64 up to FLOAT64_CELLS cells and float32 above (the
    parameters, penalties and sums stay float64). Checked against autograd in the tests."""

    def __init__(
        self,
        kind: str,
        logits: Tensor,
        labels: Tensor,
        *,
        off_diagonal: float = 0.0,
        bias: float = 0.0,
        ridge: float = 0.0,
        anchor: float = 1.0,
    ) -> None:
        self.n, self.k = n, k = logits.shape
        self.dtype = torch.float64 if n * k <= FLOAT64_CELLS else torch.float32
        x = logits.to(self.dtype)
        self.x = torch.log_softmax(x, dim=1) if kind == "dirichlet" else x  # a shift of the logits changes nothing
        self.y = labels.long()
        self.form = "vector" if kind == "vector" else ("low_rank" if k > LOW_RANK_K else "full")
        self.off_diagonal, self.bias, self.ridge, self.anchor = off_diagonal, bias, ridge, anchor

    def parts(self, t: Tensor) -> tuple[Tensor, ...]:
        k, r = self.k, RANK
        if self.form == "vector":
            return t[:k], t[k:]
        if self.form == "full":
            return t[: k * k].view(k, k), t[-k:]
        return t[:k], t[k : k + k * r].view(k, r), t[k + k * r : k + 2 * k * r].view(k, r), t[-k:]

    def weight(self, t: Tensor) -> Tensor:
        """The map's W (K x K, or the K scales of a vector map) from a parameter vector."""
        p = self.parts(t)
        return torch.diag(p[0]) + p[1] @ p[2].T if self.form == "low_rank" else p[0]

    def __call__(self, t: Tensor) -> tuple[float, np.ndarray]:
        """The loss and its gradient at parameters `t` (float64)."""
        n, k, x, y, form, dtype = self.n, self.k, self.x, self.y, self.form, self.dtype
        off_diagonal, bias, ridge, anchor = self.off_diagonal, self.bias, self.ridge, self.anchor
        n_off = max(k * (k - 1), 1)
        p = self.parts(t)
        b = p[-1]
        pd = [q.to(dtype) for q in p]
        loss, gb = 0.0, torch.zeros(k, dtype=torch.float64)
        grads = [torch.zeros_like(q) for q in p[:-1]]
        for lo in range(0, n, BLOCK):  # row blocks: buffers small enough to be reused, not mapped afresh each pass
            xb, yb = x[lo : lo + BLOCK], y[lo : lo + BLOCK]
            if form == "vector":
                out = xb * pd[0] + pd[-1]
            elif form == "full":
                out = torch.addmm(pd[-1], xb, pd[0].T)
            else:
                xv = xb @ pd[2]
                out = torch.addmm(pd[-1], xv, pd[1].T).addcmul_(xb, pd[0])
            logp = torch.log_softmax(out, dim=1)
            rows = torch.arange(len(yb))
            loss -= float(logp[rows, yb].double().sum()) / n
            g = logp.exp_()  # d loss / d out = (softmax - onehot) / n
            g[rows, yb] -= 1.0
            g /= n
            gb += g.sum(0).double()
            if form == "vector":
                grads[0] += (g * xb).sum(0).double()
            elif form == "full":
                grads[0] += (g.T @ xb).double()
            else:
                grads[0] += (g * xb).sum(0).double()
                grads[1] += (g.T @ xv).double()
                grads[2] += (xb.T @ (g @ pd[1])).double()
        if form == "low_rank":  # ||U V^T||_F^2 and diag(U V^T) without forming the K x K matrix
            d, u, v = p[0], p[1], p[2]
            utu, vtv = u.T @ u, v.T @ v
            frob = float((utu * vtv).sum())
            diag = (u * v).sum(1)
            if off_diagonal > 0:  # mean over i != j of (U V^T)_ij^2
                c = off_diagonal / n_off
                loss += c * (frob - float((diag**2).sum()))
                grads[1] = grads[1] + 2 * c * (u @ vtv - diag[:, None] * v)
                grads[2] = grads[2] + 2 * c * (v @ utu - diag[:, None] * u)
            if ridge > 0:  # mean of (diag(d) + U V^T - anchor I)^2 over all K^2 entries
                c, e = ridge / (k * k), d - anchor
                loss += c * (float((e**2).sum()) + 2 * float((e * diag).sum()) + frob)
                grads[0] = grads[0] + 2 * c * (e + diag)
                grads[1] = grads[1] + 2 * c * (e[:, None] * v + u @ vtv)
                grads[2] = grads[2] + 2 * c * (e[:, None] * u + v @ utu)
        elif form == "full":
            w = p[0]
            if off_diagonal > 0 and k > 1:
                off = w - torch.diag(w.diagonal())
                loss += off_diagonal * float((off**2).sum()) / n_off
                grads[0] = grads[0] + 2 * off_diagonal * off / n_off
            if ridge > 0:
                e = w - anchor * torch.eye(k, dtype=torch.float64)
                loss += ridge * float((e**2).mean())
                grads[0] = grads[0] + 2 * ridge * e / e.numel()
        elif ridge > 0:
            e = p[0] - anchor
            loss += ridge * float((e**2).mean())
            grads[0] = grads[0] + 2 * ridge * e / k
        if bias > 0:
            loss += bias * float((b**2).mean())
            gb = gb + 2 * bias * b / k
        return loss, torch.cat([gr.ravel() for gr in grads] + [gb]).numpy()


def fit_logit_map(
    module: LogitMap,
    logits: Tensor,
    labels: Tensor,
    *,
    off_diagonal: float = 0.0,
    bias: float = 0.0,
    ridge: float = 0.0,
    anchor: float = 1.0,
    max_iter: int = 500,
    start: np.ndarray | None = None,
    seed: int = 0,
    rough: bool = False,
) -> tuple[float, np.ndarray]:
    """Minimise mean NLL + off_diagonal * mean_{i != j} W_ij^2 + bias * mean_j b_j^2 (Kull et al.'s ODIR)
    + ridge * mean (W - anchor I)^2 (a pull towards temperature scaling's map, anchor = 1/T; 1: the original
    logits), full batch: SciPy's L-BFGS-B on `LogitMapObjective`'s analytic gradient, computed by torch on all
    cores.

    Matrix and Dirichlet maps of more than LOW_RANK_K classes are fitted in the structured form
    W = diag(d) + U V^T with U, V of rank RANK: a full K x K map has K^2 parameters (a million at K = 1,000) that
    the val split cannot determine, and each pass costs N K^2. The structured map costs N K RANK and keeps what
    ODIR regularises (the off-diagonal part is U V^T's). The fitted W is written into the module in full.

    `start` warm-starts from an earlier solution of the same shape (a lambda path); returns (loss, solution).
    `rough` stops at float32's tolerances (relative loss change 1e-8) whatever the arithmetic: enough to compare
    penalties by their cross-validated NLL.
    The module's own weight and bias are the start otherwise."""
    from scipy.optimize import minimize

    objective = LogitMapObjective(
        module.kind, logits, labels, off_diagonal=off_diagonal, bias=bias, ridge=ridge, anchor=anchor
    )
    k, form, dtype = objective.k, objective.form, objective.dtype

    def f(theta: np.ndarray) -> tuple[float, np.ndarray]:
        return objective(torch.from_numpy(theta))

    tol = {"ftol": 1e-15, "gtol": 1e-9} if dtype == torch.float64 and not rough else {"ftol": 1e-8, "gtol": 1e-5}
    iters = max_iter if dtype == torch.float64 and form != "low_rank" else min(max_iter, SCALE_ITER)

    def run(fun: Callable[[np.ndarray], tuple[float, np.ndarray]], x0: np.ndarray) -> Any:
        # SciPy's OpenBLAS threads spin after each L-BFGS step and starve torch's (20x slower on 2 cores): one
        # BLAS thread for the optimizer's own small algebra, every core for torch
        with torch.no_grad(), threadpool_limits(1, user_api="blas"):
            return minimize(fun, x0, jac=True, method="L-BFGS-B", options={"maxiter": iters, "maxcor": 20, **tol})

    if start is None:
        w0 = module.weight.detach().double()
        b0 = module.bias.detach().double()
        if form == "low_rank":  # U = 0, V small and seeded: the gradient reaches U at once (U = V = 0 is a saddle)
            v0 = torch.randn(k, RANK, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * 1e-2
            start = torch.cat([w0.diagonal(), torch.zeros(k * RANK, dtype=torch.float64), v0.ravel(), b0]).numpy()
            # first the diagonal and bias alone (U = 0 leaves a vector map: cheap, well conditioned), then all
            free = np.r_[np.arange(k), np.arange(len(start) - k, len(start))]

            def diagonal(theta: np.ndarray) -> tuple[float, np.ndarray]:
                full = start.copy()
                full[free] = theta
                loss, grad = f(full)
                return loss, grad[free]

            start[free] = run(diagonal, start[free]).x
        else:
            start = torch.cat([w0.ravel(), b0]).numpy()
    res = run(f, start)
    final = float(res.fun)
    if not math.isfinite(final):
        raise HeadError(f"{module.kind} scaling diverged on val (loss {final})")
    with torch.no_grad():
        theta = torch.from_numpy(res.x)
        module.weight.copy_(objective.weight(theta).reshape(module.weight.shape).float())
        module.bias.copy_(objective.parts(theta)[-1].float())
    return final, res.x


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
        return {
            "in_features": self.linear.in_features,
            "num_classes": self.linear.out_features,
            "maps": int(self.xs.shape[0]),
            "knots": int(self.xs.shape[1]),
            "mode": self.mode,
            "interp": self.interp,
        }


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

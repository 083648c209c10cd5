"""Temperature scaling: the baseline every comparison shows.

One scalar T > 0 divides the original logits; T minimises the val NLL
    NLL(T) = mean_n [ logsumexp_k(z_nk / T) - z_{n,y_n} / T ].
With s = 1/T the objective is convex in s and its derivative is mean_n (E_{softmax(s z_n)}[z_n] - z_{n,y_n}),
so vcal solves d NLL / ds = 0 by safeguarded Newton steps on log s inside a bisection bracket, with the
analytic gradient and curvature (mean_n Var_{softmax(s z_n)}[z_n]). Unlike LBFGS with a small step
(peers.md section 4.3) it recovers a known temperature to solver precision.

Guo, Pleiss, Sun, Weinberger. On Calibration of Modern Neural Networks. ICML 2017. arXiv:1706.04599.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from vcal_cli.errors import HeadError
from vcal_cli.heads.base import FitData, Head, HeadModule, HeadParams, Track, param, register


@dataclass(frozen=True)
class TemperatureParams(HeadParams):
    max_iter: int = param(100, "Newton/bisection steps (convergence to 1e-10 in log T takes ~10).")


class TemperatureModule(HeadModule):
    """log_softmax((W f + b) / T): the checkpoint's own linear head, scaled."""

    def __init__(self, in_features: int, num_classes: int) -> None:
        super().__init__()
        self.linear = nn.Linear(in_features, num_classes)
        self.register_buffer("temperature", torch.ones(()))

    def forward(self, features: Tensor) -> Tensor:
        return torch.log_softmax(self.linear(features) / self.temperature, dim=1)

    def as_linear(self) -> tuple[Tensor, Tensor] | None:
        t = float(self.temperature)
        return self.linear.weight.detach().double() / t, self.linear.bias.detach().double() / t

    def config(self) -> dict[str, Any]:
        return {"in_features": self.linear.in_features, "num_classes": self.linear.out_features}


def fit_inverse_temperature(logits: Tensor, labels: Tensor, max_iter: int = 100) -> float:
    """s = 1/T minimising the NLL of softmax(s * logits); float64, analytic derivatives."""
    z = logits.double()
    zy = z.gather(1, labels[:, None])[:, 0]

    def grad_curv(s: float) -> tuple[float, float]:
        p = torch.softmax(s * z, dim=1)
        ez = (p * z).sum(1)
        return float((ez - zy).mean()), float(((p * z * z).sum(1) - ez**2).mean())

    lo, hi = 1e-4, 1e4  # bracket on s; NLL'(s) is increasing in s (convexity)
    if grad_curv(lo)[0] > 0 or grad_curv(hi)[0] < 0:
        # a solution outside [1e-4, 1e4] means the labels and logits are unrelated or perfectly separated
        raise HeadError(
            "temperature scaling found no optimum for T in [1e-4, 1e4]",
            hint="the val logits look unrelated to the labels or perfectly separable",
        )
    u = 0.0  # log s, starting at T = 1
    for _ in range(max_iter):
        s = math.exp(u)
        g, c = grad_curv(s)
        if g > 0:
            hi = min(hi, s)
        else:
            lo = max(lo, s)
        # Newton step in u = log s: dNLL/du = s g, d2NLL/du2 = s g + s^2 c
        d2 = s * g + s * s * c
        u_new = u - (s * g) / d2 if d2 > 0 else math.nan
        if not (math.log(lo) < u_new < math.log(hi)):
            u_new = 0.5 * (math.log(lo) + math.log(hi))  # bisection keeps the bracket
        if abs(u_new - u) < 1e-12:
            u = u_new
            break
        u = u_new
    return math.exp(u)


@register
class TemperatureHead(Head[TemperatureParams]):
    name = "temperature"
    summary = "post-hoc temperature scaling of the original logits, fitted on val (the baseline)"
    paper = "Guo et al., ICML 2017, arXiv:1706.04599"
    fits_on = "val"  # one T on the val logits: --head auto cross-fits it like the other post-hoc maps
    Params = TemperatureParams
    Module = TemperatureModule
    needs_linear_base = True

    def _fit(self, train: FitData, val: FitData, *, base: nn.Module | None, progress: Track) -> HeadModule:
        assert isinstance(base, nn.Linear)
        p = self.params
        s = fit_inverse_temperature(val.logits, val.labels, p.max_iter)
        module = TemperatureModule(base.in_features, base.out_features)
        module.linear.load_state_dict(base.state_dict())
        module.temperature.fill_(1.0 / s)
        self.temperature_ = 1.0 / s
        return module

    def extra_report(self) -> dict[str, Any]:
        return {"temperature": self.temperature_}

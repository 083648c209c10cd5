"""White-box attacks through the whole model (backbone + the head under evaluation), in pixel space.

Inputs are pixels in [0, 1] at the model's input size; normalisation happens inside the attacked
function, so the budget eps is in pixel units (attacks on normalised inputs silently change it).
- FGSM: x' = clip(x + eps * sign(grad_x CE(f(x), y)), 0, 1).
- PGD (L-infinity): a uniform random start in the eps-ball, then `steps` steps of size alpha
  (default 2.5 * eps / steps) along the gradient sign, each projected back onto the ball and [0, 1].
The loss is the cross-entropy of the model's output; retrained vcal heads output log probabilities,
for which log_softmax is the identity, so the same loss applies to every head.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vcal_cli.errors import UsageError
from vcal_cli.metrics import DEFAULT_N_BINS, compute_metrics

Model = Callable[[Tensor], Tensor]


def parse_eps(text: str) -> list[float]:
    """'1/255,2/255,0.03' -> [0.00392..., 0.00784..., 0.03]."""
    out = []
    for part in text.split(","):
        num, _, den = part.strip().partition("/")
        try:
            v = float(num) / (float(den) if den else 1.0)
        except (ValueError, ZeroDivisionError):
            raise UsageError(f"--eps '{text}': '{part}' is not a number or fraction such as 8/255") from None
        if not 0 <= v <= 1:
            raise UsageError(f"--eps '{text}': {v:g} is outside [0, 1] (pixels are in [0, 1])")
        out.append(v)
    return out


def _grad(model: Model, x: Tensor, y: Tensor) -> Tensor:
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        loss = F.cross_entropy(model(x), y)
        (g,) = torch.autograd.grad(loss, x)
    return g


def fgsm(model: Model, x: Tensor, y: Tensor, eps: float) -> Tensor:
    return (x + eps * _grad(model, x, y).sign()).clamp(0, 1).detach()


def pgd(
    model: Model,
    x: Tensor,
    y: Tensor,
    eps: float,
    *,
    steps: int = 10,
    alpha: float | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    alpha = 2.5 * eps / steps if alpha is None else alpha
    noise = torch.rand(x.shape, generator=generator, dtype=x.dtype).to(x.device) * 2 - 1
    adv = (x + eps * noise).clamp(0, 1)
    for _ in range(steps):
        adv = adv + alpha * _grad(model, adv, y).sign()
        adv = (x + (adv - x).clamp(-eps, eps)).clamp(0, 1).detach()
    return adv


class PixelModel(nn.Module):
    """model(normalize(pixels)): the function an attack differentiates."""

    def __init__(self, model: nn.Module, normalize: Callable[[Tensor], Tensor]) -> None:
        super().__init__()
        self.model, self.normalize = model, normalize

    def forward(self, pixels: Tensor) -> Tensor:
        return self.model(self.normalize(pixels))


@dataclass(frozen=True, kw_only=True)
class Attacks:
    """Which attacks to run: every one of `kinds` (fgsm, pgd) at every L-infinity budget in `eps` (pixel units),
    PGD with `steps` steps from a random start drawn with `seed`."""

    eps: tuple[float, ...]
    kinds: tuple[str, ...] = ("fgsm", "pgd")
    steps: int = 10
    seed: int = 0


def adversarial_evaluation(
    model: nn.Module,
    pixels: Tensor,
    labels: Tensor,
    attacks: Attacks,
    *,
    batch_size: int = 256,
    device: str | torch.device = "cpu",
    n_bins: int = DEFAULT_N_BINS,
    progress: Callable = lambda it, **_: it,
) -> list[dict]:
    """Rows {attack, eps, accuracy, ece, nll} for every attack and budget, on `pixels` (N, C, H, W) in [0, 1]."""
    model = model.to(device).eval()
    gen = torch.Generator().manual_seed(attacks.seed)
    rows = []
    jobs = [(a, e) for a in attacks.kinds for e in attacks.eps]
    for attack, eps in progress(jobs, total=len(jobs), description="attacks"):
        outs = []
        for i in range(0, len(labels), batch_size):
            x, y = pixels[i : i + batch_size].to(device), labels[i : i + batch_size].to(device)
            adv = (
                fgsm(model, x, y, eps)
                if attack == "fgsm"
                else pgd(model, x, y, eps, steps=attacks.steps, generator=gen)
            )
            with torch.no_grad():
                outs.append(model(adv).float().cpu())
        m = compute_metrics(labels, logits=torch.cat(outs), n_bins=n_bins, n_bootstrap=0).metrics
        rows.append({"attack": attack, "eps": eps, "accuracy": m.accuracy, "ece": m.ece, "nll": m.nll})
    model.to("cpu")
    return rows

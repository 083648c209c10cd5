"""The method of `vcal frontier`: V-TST with a feature decoder, fitted at one (beta, lambda), and R, D, C.

Gao & Chaudhari (ICML 2020) put the rate R, distortion D and classification loss C of a representation
on one convex equilibrium surface, F(lambda, gamma) = min R + lambda D + gamma C. On cached features the
backbone's penultimate features h play the part of the input x:

    encoder   e(z|h) = N(mu(h), diag sigma^2(h))          (V-TST's encoder, `vcal_cli.heads.vtst`)
    prior     m(z)   = N(0, I)
    decoder   d(h|z) = N(h_std; g(z), I)                   (h standardised with train statistics)
    classifier c(y|z) = softmax(W z + b)

    R = E_h KL(e(z|h) || m(z))                                           (closed form, nats)
    D = E_h E_z [ ||h_std - g(z)||^2 / 2 + (d/2) log 2 pi ]             (nats; `mse` is the mean squared part / d)
    C = E_h E_z [ -log c(y|z) ]                                          (nats)

Each point (beta, lambda) minimises C + beta R + lambda D, i.e. the free energy with gamma = 1/beta and the
distortion weight lambda/beta, scaled by beta: V-TST's own one-sample ELBO (`VTSTHead.terms`) plus lambda D.
lambda = 0 is the information-bottleneck edge (V-TST itself at beta = 1/Z): there the decoder still learns to
reconstruct h from z, with no gradient into the encoder, so D measures what the latent keeps about the
features without shaping it. Expectations over z use the head's M stored Monte-Carlo draws.

By default `walk` moves along the surface the way the paper's quasi-static processes do: the first point (the
smallest beta) is a cold fit (seeded, early stopping on its val free energy); each next point starts from its
neighbour's equilibrium (the previous beta at the same lambda) and re-equilibrates for at most a quarter of the
cold schedule at ten times the learning rate. The rate matters: at V-TST's 1e-4 the walk from beta = 1 to 10
kept 0.5 nats too much rate (the encoder's bounded variance climbs back to the prior's slowly); at 1e-3 it
lands on or below an independent fit. So does the length: with an eighth of the schedule the Fashion-MNIST
model's beta = 1 point stayed 0.067 nats above (seed spread 0.006). Measured with `benchmarks/bench_frontier.py`
(6 betas, Z = 128), val free energy of the walk minus an independent fit's:
- the shipped sample (1,200 epochs a cold point): 59 s against 206 s for independent early-stopped fits (3.5x)
  and 309 s for the full schedule (5.2x); -0.033..+0.005 nats (seed-to-seed spread 0.003-0.071);
- the early Fashion-MNIST resnet18 (55,000 x 512, 40 epochs): 210 s against 463 s for independent early-stopped
  fits (2.2x; the second seed's took 518 s) and 699 s for the full schedule (3.3x); -0.029..+0.005 nats, all
  within the seed spread or below but beta = 10 (+0.0045 against a spread of 0.0002, where every fit collapses
  to the prior and a fit's own val F wanders by about 0.01).
`warm=False` fits every point from scratch. The iso-classification process holds C at a target while beta
moves, finding for each beta the lambda whose equilibrium has that C (bisection on log lambda, each fit from
scratch), which traces the paper's trade of rate against distortion at constant classification loss. It does
not walk: warm-starting each bisection step from its nearest fitted neighbour (a quarter of a 200-epoch schedule
at 10x the rate) found lambda = 0.27 at beta = 1 on the sample where cold fits find 1.38, because after a jump in
lambda the distortion relaxes slowly (at lambda = 0.56 the warm point's free energy was 0.2 nats above a cold
fit's, its C 0.11 lower), and that sent the bisection the other way.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from vcal_cli._progress import Track, quiet
from vcal_cli.heads.base import FitData
from vcal_cli.heads.vtst import VTSTHead, VTSTModule, VTSTParams


class FrontierModule(VTSTModule):
    """V-TST's module plus the decoder g(z) used for D only (what gets written is the V-TST part)."""

    def __init__(self, in_features: int, num_classes: int, hidden: int, samples: int) -> None:
        super().__init__(in_features, num_classes, hidden, samples)
        self.decoder = nn.Sequential(nn.Linear(hidden, 3 * hidden), nn.ReLU(), nn.Linear(3 * hidden, in_features))

    def vtst_state(self) -> dict[str, Tensor]:
        """The state dict of the V-TST head alone (the decoder dropped)."""
        return {k: v for k, v in self.state_dict().items() if not k.startswith("decoder.")}


@torch.no_grad()
def measure(model: FrontierModule, features: Tensor, labels: Tensor, mean: Tensor, std: Tensor) -> dict[str, float]:
    """R, D, MSE and C of `model` on one split (averages over samples and the stored draws)."""
    z, mu, logvar = model.sample_latents(features)  # z: (M, N, Z)
    rate = model.kl(mu, logvar).mean()
    target = (features - mean) / std
    sq = (target[None] - model.decoder(z)).pow(2).sum(-1)  # (M, N)
    d = target.shape[1]
    distortion = (sq / 2).mean() + d / 2 * math.log(2 * math.pi)
    logp = torch.log_softmax(model.out(z), -1)
    c = -logp.gather(-1, labels[None, :, None].expand(len(z), -1, 1)).mean()
    return {
        "rate": float(rate),
        "distortion": float(distortion),
        "mse": float(sq.mean() / d),
        "classification": float(c),
    }


class FrontierHead(VTSTHead):
    """`vtst` at (beta, lambda): its ELBO plus lambda D, its fit and checks; optionally warm-started."""

    def __init__(
        self, params: VTSTParams, *, lam: float, mean: Tensor, std: Tensor, init: FrontierModule | None = None
    ) -> None:
        super().__init__(params)
        self.lam, self.mean, self.std, self.init = lam, mean, std, init

    def label(self) -> str:
        return f"vtst beta={self.params.beta:g} lambda={self.lam:g}"

    def build(self, train: FitData) -> FrontierModule:
        p = self.params
        z = p.hidden or 0
        self.beta_ = float(p.beta or 0.0)
        module = FrontierModule(train.features.shape[1], train.logits.shape[1], z, p.samples)
        module.eps.copy_(torch.randn(p.samples, z))
        self.mean, self.std = self.mean.to(train.features.device), self.std.to(train.features.device)
        if self.init is not None:  # a quasi-static step: start from the neighbour's equilibrium
            module.load_state_dict(self.init.state_dict())
        return module

    def loss(self, module: VTSTModule, x: Tensor, y: Tensor) -> Tensor:
        assert isinstance(module, FrontierModule)
        ce, kl, z = self.terms(module, x, y)
        target = (x - self.mean) / self.std
        d_enc = (target - module.decoder(z)).pow(2).sum(1).mean() / 2
        d_dec = (target - module.decoder(z.detach())).pow(2).sum(1).mean() / 2  # the decoder always learns
        return ce + self.beta_ * kl + self.lam * d_enc + d_dec

    def select(self, module: VTSTModule, val: FitData) -> float:
        """The point's free energy C + beta R + lambda D on val (with the stored draws)."""
        assert isinstance(module, FrontierModule)
        r = measure(module, val.features, val.labels, self.mean, self.std)
        return r["classification"] + self.beta_ * r["rate"] + self.lam * r["distortion"]


WARM_EPOCHS_SHARE = 4  # a warm point re-equilibrates for at most 1/4 of the cold schedule ...
WARM_LR_FACTOR = 10.0  # ... at 10x the cold fit's learning rate


@dataclass(frozen=True, kw_only=True)
class Settings:
    hidden: int
    samples: int
    epochs: int  # the cold fit's schedule
    warm_epochs: int  # each warm-started point's re-equilibration
    lr: float
    batch_size: int
    seed: int
    patience: int | None = None
    warm_lr: float | None = None  # the re-equilibration's learning rate (None: WARM_LR_FACTOR x lr)
    device: str = "auto"  # where every fit runs (the heads' --train-device)

    @property
    def warm_rate(self) -> float:
        """The learning rate a warm-started point re-equilibrates at."""
        return self.warm_lr or WARM_LR_FACTOR * self.lr


def warm_epochs_for(epochs: int) -> int:
    """The default re-equilibration of a warm-started point: a quarter of the cold schedule (it stops early)."""
    return max(1, epochs // WARM_EPOCHS_SHARE)


@dataclass(frozen=True, kw_only=True)
class Surface:
    """What every point of one surface is fitted on: train and val, train's feature mean and std (the scale of D)
    and the fits' settings."""

    train: FitData
    val: FitData
    mean: Tensor
    std: Tensor
    fit: Settings

    @classmethod
    def of(cls, train: FitData, val: FitData, fit: Settings) -> Surface:
        mean, std = train.features.mean(0), train.features.std(0).clamp_min(1e-6)
        return cls(train=train, val=val, mean=mean, std=std, fit=fit)

    def measure(self, model: FrontierModule) -> dict[str, float]:
        """R, D, MSE and C of `model` on val."""
        return measure(model, self.val.features, self.val.labels, self.mean, self.std)


def fit_point(
    surface: Surface, beta: float, lam: float, init: FrontierModule | None = None, progress: Track = quiet
) -> FrontierModule:
    """The equilibrium at (beta, lambda): a cold fit, or a short one from `init` (the neighbour's module)."""
    s = surface.fit
    lr = s.lr if init is None else s.warm_rate
    params = VTSTParams(
        seed=s.seed,
        hidden=s.hidden,
        beta=beta,
        samples=s.samples,
        lr=lr,
        batch_size=s.batch_size,
        epochs=s.epochs if init is None else s.warm_epochs,
        patience=s.patience,
        train_device=s.device,
    )
    head = FrontierHead(params, lam=lam, mean=surface.mean, std=surface.std, init=init)
    module = head.fit(surface.train, surface.val, progress=progress).module_
    assert isinstance(module, FrontierModule)
    return module


def walk(
    surface: Surface,
    betas: tuple[float, ...],
    lambdas: tuple[float, ...],
    *,
    warm: bool = True,
    progress: Track = quiet,
) -> list[tuple[float, float, FrontierModule]]:
    """Every (beta, lambda) point in order of lambda, then beta: each warm-started from the previous beta at
    its lambda (the first beta of a row from the first point of the previous row); `warm=False` fits each
    point from scratch (the reference the warm walk is checked against)."""
    out: list[tuple[float, float, FrontierModule]] = []
    row_start: FrontierModule | None = None
    grid = [(b, lam) for lam in lambdas for b in sorted(betas)]
    for i, (b, lam) in enumerate(progress(grid, total=len(grid), description="frontier")):
        first = i % len(betas) == 0
        init = (row_start if first else out[-1][2]) if warm else None
        m = fit_point(surface, b, lam, init)
        if first:
            row_start = m
        out.append((b, lam, m))
    return out


def iso_classification(
    surface: Surface,
    betas: tuple[float, ...],
    target: float,
    *,
    lam_range: tuple[float, float] = (1e-4, 10.0),
    steps: int = 6,
    progress: Track = quiet,
) -> list[tuple[float, float, FrontierModule, bool]]:
    """For each beta (ascending), the lambda whose equilibrium has val C closest to `target`: bisection on log
    lambda over `lam_range` for `steps` fits. Returns (beta, lambda, module, reached), `reached`
    False where C stays on one side of the target over the whole range (the closest end is returned)."""
    lo0, hi0 = math.log(lam_range[0]), math.log(lam_range[1])
    out: list[tuple[float, float, FrontierModule, bool]] = []
    for b in progress(sorted(betas), total=len(betas), description="iso-classification"):
        lo, hi = lo0, hi0
        tried: list[tuple[float, float, FrontierModule]] = []  # (|C - target|, lambda, module)
        signs = set()
        for _ in range(steps):
            lam = math.exp(0.5 * (lo + hi))
            m = fit_point(surface, b, lam)
            c = surface.measure(m)["classification"]
            tried.append((abs(c - target), lam, m))
            signs.add(c > target)
            if c > target:  # too much classification loss: weigh the features (lambda) more, C falls
                lo = math.log(lam)
            else:
                hi = math.log(lam)
        gap, lam, m = min(tried, key=lambda t: t[0])
        out.append((b, lam, m, len(signs) == 2))
    return out


def settings_dict(s: Settings) -> dict[str, object]:
    return dataclasses.asdict(s)

"""V-TST: a variational two-stage head with a Gaussian latent and an N(0, I) prior.

Encoder q(z|h) = N(mu(h), diag sigma^2(h)) with mu: Linear(D, 3Z) -> ReLU -> Linear(3Z, Z) and
log sigma^2: the same shape followed by logsigmoid (bounded variance, sigma^2 in (0, 1)); decoder
p(y|z) = softmax(Linear(Z, K)). Objective (the official `VTST_Module.training_step`):
    loss = CE(Linear(z), y) with one reparameterised sample z = mu + sigma * eps
         + beta * sum_j KL(N(mu_j, sigma_j^2) || N(0, 1)),
with beta = 1/Z by default (the code averages the KL over latent dimensions). Adam (lr 1e-4), batch 256,
40 epochs (raised on small splits to ~6,000 steps, see `ce`); the epoch with the lowest val NLL of the
M-sample predictive is kept, as the authors' README prescribes for stage 2 (their code monitors the
one-sample val CE + KL, which on small splits picks underconfident epochs).
Prediction: the mean of softmax over M Monte-Carlo samples (default 10). The M noise vectors are drawn
once from the seed at fit time and stored with the head, so predictions are deterministic.

Differences from the official code (`MJordahn/Decoupled-Layers-for-Calibrated-NNs@9578eb6`), with their measured
effect (README, "Real-data calibration benchmark" and "Why vtst and vc fall short"):
- Features, schedule and early stopping: as `ce`. With `--train-views 4` on the model trained past fitting, the
  test ECE / NLL / AURC go from 0.0314 / 0.3209 / 0.0232 to 0.0257 / 0.2886 / 0.0150, for 1.1 points of accuracy.
- Selection: the lowest val NLL of the M-sample predictive (the authors' README); their code monitors the
  one-sample val CE + KL, which on the digits sample keeps under-confident epochs.
- Prediction: the mean of softmax over M = 10 draws; the code's default is M = 1, which on the early Fashion-MNIST
  model gives test NLL 0.3817 and ECE 0.0299 against 0.2901 and 0.0129 at M = 10 (M = 3: 0.2958, M = 30: 0.2922).
- The draws are fixed at fit time and saved with the head (the code draws afresh on every call), so an audit of the
  saved checkpoint reproduces the retrain's numbers exactly.
- Under shift, measured (docs/seeds.md, `bench_seeds.py --study two-stage`): on a crop+flip-trained Fashion-MNIST
  resnet18 with stage 2 on 2 augmented views, `vtst` is worse than the original on clean ECE-15 (0.0173 against
  0.0094) and better on ECE pooled over 45 corrupted splits (paired: -0.0309 [-0.0315, -0.0304]; against `ce`
  -0.0380), the reproduction study's pattern.
As in the official code: both encoder branches, the logsigmoid variance bound, the N(0, I) prior, the KL
averaged over latent dimensions (beta = 1/Z), one reparameterised sample per step, Adam at 1e-4, batch 256.

Jordahn & Olmos. Decoupling Feature Extraction and Classification Layers for Calibrated Neural
Networks. ICML 2024. arXiv:2405.01196.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vcal_cli.heads._train import SGDHead, SGDParams
from vcal_cli.heads.base import FitData, HeadModule, param, register
from vcal_cli.heads.ce import default_latent


@dataclass(frozen=True)
class VTSTParams(SGDParams):
    hidden: int | None = param(None, "Latent size Z (auto: 128 for <= 10 classes, else 512).")
    beta: float | None = param(None, "Weight of the summed KL (auto: 1/Z, as the official code).")
    samples: int = param(10, "Monte-Carlo samples M of the predictive.")


class VTSTModule(HeadModule):
    def __init__(self, in_features: int, num_classes: int, hidden: int, samples: int) -> None:
        super().__init__()
        self.in_features, self.num_classes, self.hidden, self.samples = in_features, num_classes, hidden, samples
        self.mu = nn.Sequential(nn.Linear(in_features, 3 * hidden), nn.ReLU(), nn.Linear(3 * hidden, hidden))
        self.logvar = nn.Sequential(
            nn.Linear(in_features, 3 * hidden), nn.ReLU(), nn.Linear(3 * hidden, hidden), nn.LogSigmoid()
        )
        self.out = nn.Linear(hidden, num_classes)
        self.register_buffer("eps", torch.zeros(samples, hidden))  # fixed predictive noise (M, Z)

    def encode(self, features: Tensor) -> tuple[Tensor, Tensor]:
        return self.mu(features), self.logvar(features)

    def kl(self, mu: Tensor, logvar: Tensor) -> Tensor:
        """KL(N(mu, sigma^2) || N(0, I)) summed over latent dims; (N,)."""
        return 0.5 * (mu.pow(2) + logvar.exp() - logvar - 1).sum(1)

    def sample_latents(self, features: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """z_m = mu + sigma * eps_m for the M stored noise draws (M, N, Z), with mu and log sigma^2 (N, Z)."""
        mu, logvar = self.encode(features)
        return mu[None] + (0.5 * logvar).exp()[None] * self.eps[:, None, :], mu, logvar

    def sample_log_probs(self, features: Tensor) -> Tensor:
        """log p(y | z_m) for the M stored noise draws; (M, N, K)."""
        return self._draw_log_probs(*self.encode(features))

    def _draw_log_probs(self, mu: Tensor, logvar: Tensor) -> Tensor:
        """log p(y | z_m), (M, N, K), in one product without the (M, N, Z) latents: W (mu + sigma * eps_m) + b
        = (W mu + b) + sigma @ (eps_m * W)^T, all m at once as an N x Z by Z x MK GEMM (5,000 rows of 640
        features: 54 ms against 84 ms; the logits agree to about 1e-6)."""
        w = self.out.weight  # (K, Z)
        scaled = (self.eps[:, None, :] * w[None]).reshape(-1, w.shape[1])  # (M K, Z): row (m, k) = eps_m * w_k
        noise = (0.5 * logvar).exp() @ scaled.t()  # (N, M K)
        logits = (self.out(mu).repeat(1, self.samples) + noise).view(-1, self.samples, self.num_classes)  # batch free
        return torch.log_softmax(logits, dim=-1).transpose(0, 1)

    def forward(self, features: Tensor) -> Tensor:
        return torch.logsumexp(self.sample_log_probs(features), dim=0) - math.log(self.samples)

    def uncertainty(self, features: Tensor) -> dict[str, Tensor]:
        """The head's own OOD scores (higher = more uncertain): the mutual information between y and z (the
        epistemic part of the predictive entropy, BALD) and the KL rate of q(z|h) from the prior."""
        mu, logvar = self.encode(features)
        logp = self._draw_log_probs(mu, logvar)
        mean = torch.logsumexp(logp, 0) - math.log(self.samples)
        entropy = -(mean.exp() * mean).sum(-1)
        expected = -(logp.exp() * logp).sum(-1).mean(0)
        return {"mutual_info": entropy - expected, "kl_rate": self.kl(mu, logvar)}

    def config(self) -> dict[str, Any]:
        return {
            "in_features": self.in_features,
            "num_classes": self.num_classes,
            "hidden": self.hidden,
            "samples": self.samples,
        }


@register
class VTSTHead(SGDHead[VTSTParams, VTSTModule]):
    name = "vtst"
    summary = "V-TST: Gaussian latent with N(0,I) prior, ELBO (CE + KL/Z), MC-averaged predictive"
    paper = "Jordahn & Olmos, ICML 2024, arXiv:2405.01196"
    Params = VTSTParams
    Module = VTSTModule
    fast_params = {"epochs": 3}

    def build(self, train: FitData) -> VTSTModule:
        p = self.params
        k = train.logits.shape[1]
        z = default_latent(k) if p.hidden is None else p.hidden
        self.beta_ = 1.0 / z if p.beta is None else p.beta
        module = VTSTModule(train.features.shape[1], k, z, p.samples)
        module.eps.copy_(torch.randn(p.samples, z))
        return module

    def terms(self, module: VTSTModule, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """The one-sample ELBO's parts: CE(Linear(z), y), mean KL(q(z|h) || N(0, I)), and z = mu + sigma * eps."""
        mu, logvar = module.encode(x)
        z = mu + (0.5 * logvar).exp() * torch.randn_like(mu)
        return F.cross_entropy(module.out(z), y), module.kl(mu, logvar).mean(), z

    def loss(self, module: VTSTModule, x: Tensor, y: Tensor) -> Tensor:
        """The one-sample ELBO: CE(Linear(mu + sigma * eps), y) + beta * KL(q(z|h) || N(0, I))."""
        ce, kl, _ = self.terms(module, x, y)
        return ce + self.beta_ * kl

    def extra_report(self) -> dict[str, Any]:
        return {"beta": self.beta_, **super().extra_report()}

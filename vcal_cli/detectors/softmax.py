"""Detectors on the scored head's outputs alone: maximum softmax probability (Hendrycks & Gimpel 2017), predictive
entropy, maximum logit (Hendrycks et al. 2022), energy (Liu et al. 2020) and GEN (Liu et al. 2023)."""

from __future__ import annotations

import torch
from torch import Tensor

from vcal_cli.detectors.base import Detector, Scored, register

GEN_GAMMA = 0.1  # the paper's default
GEN_TOP = 100  # M: the paper's choice at ImageNet's 1,000 classes; every class when there are fewer


@register
class MSP(Detector):
    name, uses = "msp", "outputs"
    paper = "maximum softmax probability (Hendrycks & Gimpel 2017)"

    def score(self, x: Scored) -> Tensor:
        return -torch.softmax(x.outputs.double(), 1).amax(1)


@register
class Entropy(Detector):
    name, uses = "entropy", "outputs"
    paper = "predictive entropy, in nats"

    def score(self, x: Scored) -> Tensor:
        logp = torch.log_softmax(x.outputs.double(), 1)
        return -(logp.exp() * logp).sum(1)


@register
class MaxLogit(Detector):
    name, uses = "max_logit", "logits"
    paper = "maximum logit (Hendrycks et al. 2022)"

    def score(self, x: Scored) -> Tensor:
        return -x.outputs.double().amax(1)


@register
class Energy(Detector):
    name, uses = "energy", "logits"
    paper = "free energy -logsumexp(logits) (Liu et al. 2020)"

    def score(self, x: Scored) -> Tensor:
        return -torch.logsumexp(x.outputs.double(), 1)


@register
class GEN(Detector):
    """Generalised entropy of the M largest probabilities: mean of p^g (1 - p)^g over them (the mean, as
    pytorch-ood takes it, keeps the scale bounded; the ranking is the paper's sum's)."""

    name, uses = "gen", "outputs"
    paper = "generalised entropy GEN, gamma 0.1, top 100 classes (Liu et al. 2023)"

    def __init__(self, gamma: float = GEN_GAMMA, top: int = GEN_TOP) -> None:
        self.gamma, self.top = gamma, top

    def score(self, x: Scored) -> Tensor:
        p = torch.softmax(x.outputs.double(), 1).clamp(1e-7, 1 - 1e-7)
        if self.top < p.shape[1]:
            p = p.topk(self.top, 1).values
        return (p.pow(self.gamma) * (1 - p).pow(self.gamma)).mean(1)

    def settings(self) -> dict[str, object]:
        return {"gamma": self.gamma, "top_classes": self.top}

"""Detectors of a deep ensemble's members (Lakshminarayanan et al. 2017): the mutual information between the label
and the member (the epistemic part of the predictive entropy, BALD's score) and the members' disagreement."""

from __future__ import annotations

import torch
from torch import Tensor

from vcal_cli.detectors.base import Detector, Scored, register


def _entropy(logp: Tensor) -> Tensor:
    return -(logp.exp() * logp).sum(-1)


@register
class MutualInformation(Detector):
    name, uses = "mutual_info", "members"
    paper = "mutual information: entropy of the mean prediction minus the mean member entropy (ensembles)"

    def score(self, x: Scored) -> Tensor:
        assert x.members is not None
        lp = torch.log_softmax(x.members.double(), -1)  # (M, N, K)
        mean = torch.logsumexp(lp, 0) - torch.log(torch.tensor(float(len(lp)), dtype=torch.float64))
        return (_entropy(mean) - _entropy(lp).mean(0)).clamp_min(0)


@register
class Disagreement(Detector):
    name, uses = "disagreement", "members"
    paper = "share of members whose predicted class is not the ensemble's (ensembles)"

    def score(self, x: Scored) -> Tensor:
        assert x.members is not None
        votes = x.members.argmax(-1)  # (M, N)
        agree = (votes == x.outputs.argmax(1)[None]).double().mean(0)
        return 1 - agree

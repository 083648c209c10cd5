"""The `bayes` head's closed-form probit predictive against laplace-torch's last-layer KFAC GLM probit
predictive, given the same matrix-normal posterior."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from vcal_cli.heads import FitData, get_head

laplace = pytest.importorskip("laplace")


def laplace_with_posterior(m: torch.Tensor, cov: torch.Tensor, sigma2: float, prior_precision: float):
    """A KronLLLaplace on a bias-free Linear over [h, 1] whose posterior precision is
    (I_K / sigma^2) (x) (A^T A + tau I), i.e. the `bayes` head's posterior (cov = (A^T A + tau I)^-1)."""
    from laplace.utils.matrix import Kron

    k, d1 = m.shape
    model = nn.Sequential(nn.Identity(), nn.Linear(d1, k, bias=False)).double()
    with torch.no_grad():
        model[1].weight.copy_(m)
    la = laplace.Laplace(
        model,
        "classification",
        subset_of_weights="last_layer",
        hessian_structure="kron",
        prior_precision=prior_precision / sigma2,
    )
    dummy = DataLoader(
        TensorDataset(torch.zeros(2, d1, dtype=torch.float64), torch.zeros(2, dtype=torch.long)), batch_size=2
    )
    la.fit(dummy)
    ata = torch.linalg.inv(cov) - prior_precision * torch.eye(d1, dtype=torch.float64)  # A^T A
    la.H_facs = Kron([[torch.eye(k, dtype=torch.float64) / sigma2, ata]])
    la.H = la.H_facs.decompose()
    return la


def test_bayes_predictive_matches_laplace_torch_kfac_probit() -> None:
    g = torch.Generator().manual_seed(0)
    k, d, n = 3, 5, 200
    means = torch.randn(k, d, generator=g) * 1.5
    y = torch.randint(0, k, (n,), generator=g)
    x = means[y] + torch.randn(n, d, generator=g)
    train = FitData(x[:150], torch.zeros(150, k), y[:150])
    val = FitData(x[150:], torch.zeros(50, k), y[150:])
    head = get_head("bayes")().fit(train, val)
    mod = head.module_.double()
    mod.sigma2.fill_(30.0)  # a noise scale at which the posterior variance visibly softens the predictive
    la = laplace_with_posterior(mod.weight, mod.cov, float(mod.sigma2), head.params.prior_precision)
    feats = torch.cat([val.features.double(), torch.ones(50, 1, dtype=torch.float64)], 1)
    ref = la(feats, pred_type="glm", link_approx="probit")
    ours = mod(val.features.double()).exp()
    assert torch.allclose(ours, ref, atol=1e-5), (ours - ref).abs().max()
    plain = torch.softmax(feats @ mod.weight.T, 1)
    assert (plain - ref).abs().max() > 1e-2  # the variance term matters here, so the agreement is not vacuous

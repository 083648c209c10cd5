"""The `bayes` head against laplace-torch's last-layer Laplace fitted for real on the same features.

`bayes`'s posterior is MN(M_N, sigma^2 I_K, (A^T A + tau I)^-1): its mean the MAP of the summed cross-entropy plus
(tau / 2 alpha) ||W||^2, its input factor the Gram matrix of the features [h, 1], its output factor isotropic with a
noise scale chosen on val. A real `KronLLLaplace` fitted at that mean has the same input factor (its KFAC input
factor times N) and the GGN's output factor sum_n (diag p_n - p_n p_n^T) instead: compared here are the mean (against
an independent optimisation of the same objective), the input factor (against laplace-torch's own fit), and the probit
predictive given the same posterior (laplace-torch's GLM predictive with bayes's output factor put in its place)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
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


def _fit(**params: object):
    g = torch.Generator().manual_seed(0)
    k, d, n = 3, 5, 200
    means = torch.randn(k, d, generator=g) * 1.5
    y = torch.randint(0, k, (n,), generator=g)
    x = means[y] + torch.randn(n, d, generator=g)
    train = FitData(x[:150], torch.zeros(150, k), y[:150])
    val = FitData(x[150:], torch.zeros(50, k), y[150:])
    head = get_head("bayes")(get_head("bayes").make_params(**params)).fit(train, val)
    return head, train, val


def test_bayes_mean_is_the_map_and_its_input_factor_is_laplace_torchs() -> None:
    head, train, _ = _fit(tol=1e-10, max_iter=1000)
    mod = head.module_.double()
    a = torch.cat([train.features.double(), torch.ones(len(train.labels), 1, dtype=torch.float64)], 1)
    tau, alpha = head.params.prior_precision, head.params.step
    # the mean: an independent L-BFGS on a plain nn.Linear, objective written out
    lin = nn.Linear(a.shape[1], mod.weight.shape[0], bias=False).double()
    opt = torch.optim.LBFGS(
        lin.parameters(), max_iter=2000, tolerance_grad=1e-12, tolerance_change=1e-15, line_search_fn="strong_wolfe"
    )

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = F.cross_entropy(lin(a), train.labels, reduction="sum") + tau / (2 * alpha) * lin.weight.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    # bayes solves the MAP in float32 (half the time): its weights sit within 1e-3 of the float64 optimum, where
    # the gradient of the mean objective is a few float32 roundings of its terms, below 2e-5 (the largest entry
    # depends on the CPU's float32 kernels: 0.9e-5 on one machine, 1.1e-5 on another; at the start of the fit it is
    # about 1e-1)
    assert torch.allclose(mod.weight, lin.weight.detach(), atol=1e-3), (mod.weight - lin.weight).abs().max()
    w = mod.weight.detach().clone().requires_grad_(True)
    (F.cross_entropy(a @ w.T, train.labels) + tau / (2 * alpha * len(a)) * w.pow(2).sum()).backward()
    assert w.grad.abs().max() < 2e-5, w.grad.abs().max()
    # the posterior's input factor: a real KronLLLaplace fitted at that mean on the same features
    model = nn.Sequential(nn.Identity(), nn.Linear(a.shape[1], mod.weight.shape[0], bias=False)).double()
    with torch.no_grad():
        model[1].weight.copy_(mod.weight)
    la = laplace.Laplace(
        model, "classification", subset_of_weights="last_layer", hessian_structure="kron", prior_precision=tau
    )
    la.fit(DataLoader(TensorDataset(a, train.labels), batch_size=50))
    ggn_out, kfac_in = la.H_facs.kfacs[0]
    n = len(train.labels)
    precision_in = torch.linalg.inv(mod.cov)  # bayes: A^T A + tau I
    assert torch.allclose(precision_in - tau * torch.eye(a.shape[1], dtype=torch.float64), n * kfac_in, atol=1e-9)
    # the output factor differs by design: the GGN's, where bayes has I / sigma^2 (sigma^2 chosen on val)
    p = torch.softmax(a @ mod.weight.T, 1)
    assert torch.allclose(ggn_out, torch.diag(p.sum(0)) - p.T @ p, atol=1e-9)


def test_bayes_predictive_matches_laplace_torch_kfac_probit() -> None:
    head, _, val = _fit()
    mod = head.module_.double()
    mod.sigma2.fill_(30.0)  # a noise scale at which the posterior variance visibly softens the predictive
    la = laplace_with_posterior(mod.weight, mod.cov, float(mod.sigma2), head.params.prior_precision)
    feats = torch.cat([val.features.double(), torch.ones(50, 1, dtype=torch.float64)], 1)
    ref = la(feats, pred_type="glm", link_approx="probit")
    ours = mod(val.features.double()).exp()
    assert torch.allclose(ours, ref, atol=1e-5), (ours - ref).abs().max()
    plain = torch.softmax(feats @ mod.weight.T, 1)
    assert (plain - ref).abs().max() > 1e-2  # the variance term matters here, so the agreement is not vacuous

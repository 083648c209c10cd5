"""Many classes: the logit maps' analytic gradient against autograd in each form (vector, full K x K, diagonal +
low rank), the structured form above LOW_RANK_K classes, the penalty grid extending when its strongest end wins,
`bayes` streaming row blocks to the one-block posterior."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from vcal_cli.heads import FitData, get_head
from vcal_cli.heads._posthoc import LOW_RANK_K, RANK, LogitMapObjective


def _loss_by_autograd(kind: str, form: str, theta: torch.Tensor, z: torch.Tensor, y: torch.Tensor, reg: dict):
    """The objective written out on the materialised W (no shared code with vcal's), differentiated by autograd."""
    k = z.shape[1]
    x = torch.log_softmax(z.double(), 1) if kind == "dirichlet" else z.double()
    b = theta[-k:]
    if form == "vector":
        w = torch.diag(theta[:k])
    elif form == "full":
        w = theta[: k * k].view(k, k)
    else:
        u, v = theta[k : k + k * RANK].view(k, RANK), theta[k + k * RANK : k + 2 * k * RANK].view(k, RANK)
        w = torch.diag(theta[:k]) + u @ v.T
    loss = F.cross_entropy(x @ w.T + b, y)
    off = w - torch.diag(w.diagonal())
    loss = loss + reg.get("off_diagonal", 0) * (off**2).sum() / (k * (k - 1))
    eye = torch.eye(k, dtype=torch.float64) * reg.get("anchor", 1.0)
    ridge = reg.get("ridge", 0) * (((w - eye) ** 2).sum() / (k if form == "vector" else k * k))
    return loss + ridge + reg.get("bias", 0) * (b**2).mean()


@pytest.mark.parametrize(
    ("kind", "k"), [("vector", 12), ("matrix", 12), ("dirichlet", 12), ("matrix", 140), ("dirichlet", 140)]
)
def test_analytic_gradient_equals_autograd(kind: str, k: int) -> None:
    torch.manual_seed(0)
    z, y = torch.randn(300, k) * 2, torch.randint(0, k, (300,))
    reg = {"off_diagonal": 0.3, "bias": 0.2, "ridge": 0.5, "anchor": 0.7}
    objective = LogitMapObjective(kind, z, y, **reg)
    form = "vector" if kind == "vector" else ("low_rank" if k > LOW_RANK_K else "full")
    assert objective.form == form
    size = 2 * k if form == "vector" else (k * k + k if form == "full" else 2 * k + 2 * k * RANK)
    theta = torch.randn(size, dtype=torch.float64) * 0.3
    loss, grad = objective(theta)
    t = theta.clone().requires_grad_()
    want = _loss_by_autograd(kind, form, t, z, y, reg)
    want.backward()
    assert loss == pytest.approx(float(want.detach()), rel=1e-10)
    np.testing.assert_allclose(grad, t.grad.numpy(), rtol=1e-7, atol=1e-10)


def test_many_classes_fit_the_structured_form_and_never_lose_to_temperature() -> None:
    """150 classes with structured confusions (class c mistaken for c+1): matrix scaling fits diag + rank 16 (not
    150^2 parameters); on held-out rows its NLL is at most temperature scaling's (the ridge pulls towards it)."""
    torch.manual_seed(0)
    k = 150

    def make(n: int) -> FitData:
        y = torch.randint(0, k, (n,))
        z = torch.randn(n, k)
        z[torch.arange(n), y] += 5
        z[torch.arange(n), (y + 1) % k] += 4 * (torch.rand(n) < 0.4)
        return FitData(z, z, y)

    val, test = make(3000), make(3000)
    base = torch.nn.Linear(k, k)
    with torch.no_grad():
        base.weight.copy_(torch.eye(k))
        base.bias.zero_()
    nll = {}
    for name in ("temperature", "matrix"):
        head = get_head(name)(get_head(name).Params()).fit(val, val, base=base)
        nll[name] = -head.predict_log_proba(test.features).gather(1, test.labels[:, None]).mean().item()
        if name == "matrix":
            assert head.extra_report()["form"] == f"diagonal + rank {RANK}"
    assert nll["matrix"] <= nll["temperature"] + 1e-3, nll


def test_penalty_grid_extends_while_its_strongest_end_wins() -> None:
    """Val logits already calibrated, with many classes and few rows per class: any free map overfits, so the
    cross-validation keeps asking for more penalty, past the grid's 1.0."""
    torch.manual_seed(0)
    k, n = 60, 600
    y = torch.randint(0, k, (n,))
    z = torch.randn(n, k)
    z[torch.arange(n), y] += 2.5
    data = FitData(z, z, y)
    base = torch.nn.Linear(k, k)
    with torch.no_grad():
        base.weight.copy_(torch.eye(k))
        base.bias.zero_()
    head = get_head("vector")(get_head("vector").Params()).fit(data, data, base=base)
    assert max(head.cv_) > 1.0 and head.lambda_ > 1.0, head.cv_


def test_bayes_streams_row_blocks_to_the_same_posterior(monkeypatch: pytest.MonkeyPatch) -> None:
    """`bayes` in blocks of 97 train rows and 37 val rows (dozens of blocks) gives the posterior of the one-block
    fit: the precision's inverse to 1e-10 (exact float64 sums in another order), predictions to 1e-5 (the MAP's
    float32 L-BFGS follows a path that depends on summation order, within its tolerance)."""
    from vcal_cli.heads import bayes

    torch.manual_seed(0)
    k, d = 7, 16
    centres = torch.randn(k, d) * 1.5

    def make(n: int) -> FitData:
        y = torch.randint(0, k, (n,))
        f = centres[y] + torch.randn(n, d)
        return FitData(f, f @ torch.randn(d, k), y)

    train, val, test = make(2000), make(400), make(300)
    params = get_head("bayes").Params(max_iter=200, tol=1e-9)
    whole = get_head("bayes")(params).fit(train, val)
    monkeypatch.setattr(bayes, "BLOCK", 97)
    monkeypatch.setattr(bayes, "VAL_BLOCK", 37)
    streamed = get_head("bayes")(params).fit(train, val)
    torch.testing.assert_close(streamed.module_.cov, whole.module_.cov, rtol=1e-10, atol=1e-10)
    assert streamed.sigma2_ == whole.sigma2_
    torch.testing.assert_close(
        streamed.predict_log_proba(test.features), whole.predict_log_proba(test.features), rtol=1e-5, atol=1e-5
    )


def test_top_confusions_count_the_most_frequent_mistakes() -> None:
    """Hand-worked: 3 classes, mistakes 0->1 twice, 2->0 once; shares of the true class."""
    from vcal_cli.metrics.details import top_confusions

    labels = torch.tensor([0, 0, 0, 0, 1, 2, 2])
    pred = torch.tensor([1, 1, 0, 0, 1, 0, 2])
    got = top_confusions(labels, pred, 3)
    assert got == [
        {"true": 0, "predicted": 1, "count": 2, "share": 0.5},
        {"true": 2, "predicted": 0, "count": 1, "share": 0.5},
    ]


def test_a_thousand_class_report_stays_small_and_readable(runner, tmp_path) -> None:
    """1,000 classes: no K x K matrix anywhere, the 20 worst classes in the page, the top mistakes as pairs."""
    import json

    from vcal_cli.cli import app

    rng = np.random.default_rng(0)
    n, k = 6000, 1000
    y = rng.integers(0, k, n)
    z = rng.normal(size=(n, k)).astype(np.float32)
    z[np.arange(n), y] += 4
    z[np.arange(n), (y + 1) % k] += 3.5 * (rng.random(n) < 0.3)
    np.savez(tmp_path / "p.npz", logits=z, labels=y)
    r = runner.invoke(
        app, ["audit", "--logits", str(tmp_path / "p.npz"), "--out", str(tmp_path / "r"), "--bootstrap", "20"]
    )
    assert r.exit_code == 0, r.output
    rep = json.loads((tmp_path / "r" / "report.json").read_text())
    det = rep["details"]
    assert det["confusion"] is None and len(det["per_class"]) == k
    top = det["top_confusions"][0]
    assert top["predicted"] == (top["true"] + 1) % k  # the planted mistake
    html = (tmp_path / "r" / "report.html").read_text()
    assert "Most frequent mistakes" in html and "980 more classes in report.json" in html
    assert not (tmp_path / "r" / "confusion.png").exists()
    total = sum(p.stat().st_size for p in (tmp_path / "r").iterdir())
    assert total < 2_000_000, total

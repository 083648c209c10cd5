"""The OOD detectors against pytorch-ood 0.4 (the library users compare with) on the same features and logits (float64
logits where pytorch-ood keeps the dtype it is given).

pytorch-ood takes a model: it gets head-only modules here (an identity backbone, the linear last layer). Tolerances
are float32's (pytorch-ood computes in float32, vcal in float64 or float32 blocks). Stated differences: pytorch-ood's
Mahalanobis and RMD covariances are scatter sums (not divided by N), so its distances are vcal's / N (the same
ranking); its KNN uses scikit-learn's exact search, vcal blocked products (the same k-th neighbour, its distance
recomputed in float64)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from vcal_cli.detectors import DETECTORS, ORDER, Linear, Scored, Train, parse_detectors
from vcal_cli.errors import UsageError

pood = pytest.importorskip("pytorch_ood.detector")

N, D, K = 800, 24, 5


@pytest.fixture(scope="module")
def problem() -> dict[str, object]:
    g = torch.Generator().manual_seed(0)
    centres = torch.randn(K, D, generator=g) * 3
    y = torch.randint(0, K, (N,), generator=g)
    f = (centres[y] + torch.randn(N, D, generator=g)).relu()  # post-ReLU features, as a CNN's penultimate layer
    head = nn.Linear(D, K)
    with torch.no_grad():
        head.weight.copy_(centres / 3 + 0.1 * torch.randn(K, D, generator=g))
        head.bias.copy_(torch.randn(K, generator=g))
        logits = head(f)
        near = centres[torch.randint(0, K, (150,), generator=g)] + torch.randn(150, D, generator=g)
        far = torch.randn(150, D, generator=g) * 2
        test = torch.cat([near, far]).relu()
        test_logits = head(test)
    train = Train(features=f, logits=logits, labels=y, num_classes=K, linear=Linear.of(head), seed=0)
    return {"train": train, "head": head, "f": f, "y": y, "test": test, "test_logits": test_logits}


def _ours(name: str, p: dict, **kw: object) -> torch.Tensor:
    det = DETECTORS.get(name)(**kw)
    det.fit(p["train"])
    return det.score(Scored(features=p["test"], outputs=p["test_logits"], raw_logits=True))


@pytest.mark.parametrize(
    ("name", "theirs"),
    [
        ("msp", lambda z: pood.MaxSoftmax.score(z)),
        ("entropy", lambda z: pood.Entropy.score(z)),
        ("max_logit", lambda z: pood.MaxLogit.score(z)),
        ("energy", lambda z: pood.EnergyBased.score(z)),
        ("gen", lambda z: pood.GEN.score(z, gamma=0.1, M=100)),
    ],
)
def test_output_scores_match_pytorch_ood(problem: dict, name: str, theirs) -> None:
    ours = _ours(name, problem)
    # pytorch-ood clips probabilities at 1e-7 before its entropy's log: near-certain rows differ by up to 1e-5
    atol = 1e-5 if name == "entropy" else 1e-12
    torch.testing.assert_close(ours, theirs(problem["test_logits"].double()), rtol=1e-9, atol=atol)


def test_gen_top_classes_match_pytorch_ood(problem: dict) -> None:
    ours = _ours("gen", problem, gamma=0.5, top=2)
    theirs = pood.GEN.score(problem["test_logits"].double(), gamma=0.5, M=2)
    torch.testing.assert_close(ours, theirs, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize(
    ("name", "cls", "scale"), [("mahalanobis", "Mahalanobis", 0.5 / N), ("relative_mahalanobis", "RMD", 1 / N)]
)
def test_gaussian_scores_match_pytorch_ood_up_to_its_scale(problem: dict, name: str, cls: str, scale: float) -> None:
    """pytorch-ood's covariances are scatter sums (its distances are ours / N) and its Mahalanobis score is the
    Gaussian log-density term, half the squared distance: the same ranking."""
    det = getattr(pood, cls)(None).fit_features(problem["f"], problem["y"])
    theirs = det.predict_features(problem["test"]).double()
    ours = _ours(name, problem) * scale
    torch.testing.assert_close(ours, theirs, rtol=2e-4, atol=2e-5)


@pytest.mark.parametrize("k", [1, 50])
def test_knn_matches_pytorch_ood(problem: dict, k: int) -> None:
    theirs = pood.KNN(None, k=k).fit_features(problem["f"], problem["y"]).predict_features(problem["test"])
    torch.testing.assert_close(_ours("knn", problem, k=k), theirs.double(), rtol=1e-5, atol=1e-5)


def test_knn_on_a_sample_of_train_rows(problem: dict) -> None:
    """share < 1: the same as KNN over exactly those rows."""
    det = DETECTORS.get("knn")(k=3, share=0.25)
    det.fit(problem["train"])
    assert det.settings()["train_rows"] == N // 4
    kept = torch.randperm(N, generator=torch.Generator().manual_seed(31))[: N // 4].sort().values
    theirs = pood.KNN(None, k=3).fit_features(problem["f"][kept], problem["y"][kept]).predict_features(problem["test"])
    ours = det.score(Scored(features=problem["test"], outputs=problem["test_logits"], raw_logits=True))
    torch.testing.assert_close(ours, theirs.double(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dim", [4, 12])
def test_vim_matches_pytorch_ood(problem: dict, dim: int) -> None:
    head = problem["head"]
    theirs = pood.ViM(None, d=dim, w=head.weight, b=head.bias).fit_features(problem["f"], problem["y"])
    ours = DETECTORS.get("vim")(dim=dim)
    ours.fit(problem["train"])
    assert ours.alpha == pytest.approx(theirs.alpha, rel=1e-4)
    got = ours.score(Scored(features=problem["test"], outputs=problem["test_logits"], raw_logits=True))
    # pytorch-ood casts to float32: its eigenvectors near the subspace's edge move the residual by up to 0.2% with two
    # threads and 0.24% with one (float32 sums in another order), so 0.5%
    torch.testing.assert_close(got, theirs.predict_features(problem["test"]).double(), rtol=5e-3, atol=1e-4)


def test_react_matches_pytorch_ood(problem: dict) -> None:
    theirs = pood.ReAct(backbone=nn.Identity(), head=problem["head"]).fit_feature_maps(problem["f"], problem["y"])
    ours = DETECTORS.get("react")()
    ours.fit(problem["train"])
    assert ours.threshold == pytest.approx(theirs.threshold, rel=1e-6)
    with torch.no_grad():
        want = theirs.predict(problem["test"]).double()
    torch.testing.assert_close(
        ours.score(Scored(features=problem["test"], outputs=problem["test_logits"], raw_logits=True)),
        want,
        rtol=1e-5,
        atol=1e-5,
    )


def test_every_detector_is_in_the_order_and_parse_is_strict() -> None:
    assert set(ORDER) == set(DETECTORS.names())
    assert parse_detectors("all") == ORDER
    assert parse_detectors("vim, msp") == ("msp", "vim")  # the report's order
    assert parse_detectors("knn") == ("msp", "knn")  # MSP, the paired verdicts' baseline, always
    with pytest.raises(UsageError, match="--ood-detectors: unknown detector 'nope'"):
        parse_detectors("msp,nope")
    with pytest.raises(UsageError, match="--ood-detectors is empty"):
        parse_detectors(" , ")


def test_knn_k_larger_than_the_train_rows_is_a_usage_error(problem: dict) -> None:
    with pytest.raises(UsageError, match="--knn-k 5000 is not between 1 and the 800 train rows"):
        DETECTORS.get("knn")(k=5000).fit(problem["train"])


def test_logit_detectors_say_why_they_skip_a_vcal_head(problem: dict) -> None:
    x = Scored(features=problem["test"], outputs=torch.log_softmax(problem["test_logits"], 1), raw_logits=False)
    for name in ("max_logit", "energy", "vim", "react"):
        assert "logits" in DETECTORS.get(name)().applies(x)
    for name in ("msp", "entropy", "gen", "knn", "mahalanobis"):
        assert DETECTORS.get(name)().applies(x) is None

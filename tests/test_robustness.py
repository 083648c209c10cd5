"""Robustness per head: `vcal retrain --shift --adversarial --ood` compares every head on the same cached
splits; the probabilistic heads' own uncertainty scores; gate rules reaching the keyed summaries."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from vcal_cli.cli import app
from vcal_cli.detectors import ORDER
from vcal_cli.gate.rules import resolve
from vcal_cli.heads.bayes import BayesModule
from vcal_cli.heads.vc import VCModule
from vcal_cli.heads.vtst import VTSTModule

from .conftest import SAMPLES
from .helpers import one_line_error

CNN = str(SAMPLES / "cnn_digits.safetensors")
ROBUST = [
    "--shift",
    "--corruptions",
    "contrast,motion_blur",
    "--severities",
    "1,5",
    "--adversarial",
    "--eps",
    "4/255",
    "--adv-limit",
    "64",
    "--ood",
    "npz:noise.npz",
]


@pytest.fixture
def noise(tmp_path) -> None:
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "noise.npz", x=rng.integers(0, 256, (150, 1, 8, 8), dtype=np.uint8), y=np.zeros(150, int))


def test_retrain_compares_every_head_on_shift_attacks_and_ood(runner, tmp_path, noise) -> None:
    args = ["retrain", CNN, "--head", "temperature", "--head", "vtst", "--epochs", "3", "--bootstrap", "0"]
    r = runner.invoke(app, [*args, *ROBUST, "--json", "-o", "rt"])
    assert r.exit_code == 0, r.output
    rep = json.loads(r.stdout)
    heads = rep["heads"]
    for name in ("original", "temperature", "vtst"):
        h = heads[name]
        assert [(x["corruption"], x["severity"]) for x in h["shift"]] == [
            ("contrast", 1),
            ("contrast", 5),
            ("motion_blur", 1),
            ("motion_blur", 5),
        ]
        assert set(h["shift_mean"]) == {"severity_1", "severity_5"}
        assert [(x["attack"], round(x["eps"] * 255)) for x in h["adversarial"]] == [("fgsm", 4), ("pgd", 4)]
        assert set(h["adversarial_summary"]["pgd"]) == {"4/255"}
        assert all(0 <= x["auroc"] <= 1 for x in h["ood"])
    scores = {n: {x["score"] for x in h["ood"]} for n, h in heads.items()}
    # every one-model detector (the CNN's last layer is linear: ViM and ReAct too); the ensemble's need members
    assert scores["original"] == set(ORDER) - {"mutual_info", "disagreement"}
    # log-probabilities: no max-logit, energy, ViM or ReAct; the feature-space ones are the original's alone
    assert scores["temperature"] == {"msp", "entropy", "gen"}
    assert scores["vtst"] == {"msp", "entropy", "gen", "mutual_info", "kl_rate"}  # plus its own uncertainty
    # temperature scaling keeps every argmax: the same accuracy on every corrupted split, only ECE moves
    assert [x["accuracy"] for x in heads["temperature"]["shift"]] == [x["accuracy"] for x in heads["original"]["shift"]]
    assert heads["temperature"]["shift"] != heads["original"]["shift"]
    # the top-level sections are the original head's, as in `vcal audit` with the same flags (from the cache)
    a = runner.invoke(app, ["audit", CNN, *ROBUST, "--json", "--bootstrap", "0", "-o", "au"])
    audit = json.loads(a.stdout)
    assert audit["shift"] == rep["shift"] == heads["original"]["shift"]
    assert audit["adversarial"] == heads["original"]["adversarial"]
    assert audit["ood"] == heads["original"]["ood"]
    for png in ("shift.png", "adversarial.png", "ood_0.png", "ood_0_vtst.png", "ood_0_temperature.png"):
        assert (tmp_path / "rt" / png).stat().st_size > 0, png
    # gate rules reach a head's keyed summaries
    g = runner.invoke(
        app,
        ["gate", "rt/report.json", "-b", "rt/report.json", "--max", "heads.vtst.adversarial_summary.pgd.4/255.ece=0"],
    )
    assert g.exit_code == 1 and "4/255" in g.output


def test_bad_corruption_fails_before_any_fitting(runner, noise) -> None:
    line = one_line_error(runner.invoke(app, ["retrain", CNN, "--head", "vtst", "--shift", "--corruptions", "fog"]))
    assert "fog" in line and "elastic_transform" in line and "motion_blur" in line
    line = one_line_error(runner.invoke(app, ["retrain", CNN, "--head", "vtst", "--ood", "npz:missing.npz"]))
    assert line.startswith("error: --ood") and "missing.npz" in line
    line = one_line_error(runner.invoke(app, ["audit", CNN, "--shift", "--strengths", "tiny"]))
    assert "cifar" in line and "imagenet" in line


def test_bayes_logit_variance_by_hand() -> None:
    m = BayesModule(2, 3)
    m.cov.copy_(torch.tensor([[2.0, 0.5, 0.0], [0.5, 1.0, 0.0], [0.0, 0.0, 0.25]]))
    m.sigma2.fill_(3.0)
    f = torch.tensor([[1.0, -1.0], [0.0, 2.0]])
    # a = (f, 1); v* = a^T C a = 2 + 1 + 0.25 + 2 * 0.5 * (1)(-1) = 2.25 and 1 * 4 + 0.25 = 4.25; times sigma^2 = 3
    assert torch.allclose(m.uncertainty(f)["logit_var"], torch.tensor([6.75, 12.75]))


def test_vtst_mutual_information_is_bald() -> None:
    torch.manual_seed(0)
    m = VTSTModule(5, 4, hidden=3, samples=6)
    m.eps.copy_(torch.randn(6, 3))
    f = torch.randn(20, 5)
    u = m.uncertainty(f)
    p = m.sample_log_probs(f).exp().double()  # (M, N, K)
    mean = p.mean(0)
    h = lambda q: -(q * q.log()).sum(-1)  # noqa: E731
    assert torch.allclose(u["mutual_info"].double(), h(mean) - h(p).mean(0), atol=1e-5)
    assert (u["mutual_info"] >= -1e-6).all()
    m.eps.zero_()  # every draw at the mean: no disagreement between samples
    assert m.uncertainty(f)["mutual_info"].abs().max() < 1e-6
    mu, logvar = m.encode(f)
    kl = 0.5 * (mu.pow(2) + logvar.exp() - logvar - 1).sum(1)
    assert torch.allclose(m.uncertainty(f)["kl_rate"], kl)


def test_vc_latent_score_is_the_best_class_log_likelihood() -> None:
    torch.manual_seed(0)
    m = VCModule(4, 3, hidden=2)
    f = torch.randn(5, 4)
    z = m.encoder(f).double()
    best = torch.stack(
        [
            -0.5
            * (m.log_covs[c].double().sum() + ((z - m.centers[c].double()) ** 2 / m.log_covs[c].double().exp()).sum(1))
            for c in range(3)
        ],
        1,
    ).amax(1)
    assert torch.allclose(m.uncertainty(f)["latent_nll"].double(), -best, atol=1e-5)


def test_gate_paths_reach_keys_that_hold_dots() -> None:
    rep = {"adversarial_summary": {"pgd": {"7.65/255": {"ece": 0.25}}}, "shift_mean": {"severity_5": {"ece": 0.5}}}
    assert resolve(rep, "adversarial_summary.pgd.7.65/255.ece", "r") == 0.25
    assert resolve(rep, "shift_mean.severity_5.ece", "r") == 0.5

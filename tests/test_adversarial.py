"""Attacks: closed-form FGSM on a linear model, PGD's constraints, and PGD against IBM's ART (and torchattacks)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from vcal_cli.errors import UsageError
from vcal_cli.evaluations.adversarial import Attacks, PixelModel, adversarial_evaluation, fgsm, parse_eps, pgd

from .conftest import SAMPLES


def _linear() -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 3)).double()
    x = torch.rand(16, 3, 2, 2, dtype=torch.float64) * 0.6 + 0.2  # away from the [0, 1] box edges
    return model, x, torch.randint(0, 3, (16,))


def test_fgsm_closed_form_on_a_linear_model() -> None:
    model, x, y = _linear()
    w = model[1].weight
    p = torch.softmax(model(x), 1)
    grad = ((p - F.one_hot(y, 3).double()) @ w).reshape(x.shape)  # d CE / dx, up to the 1/N of the mean
    assert torch.equal(fgsm(model, x, y, 0.1), (x + 0.1 * grad.sign()).clamp(0, 1))


def test_pgd_stays_in_the_ball_and_beats_the_clean_loss() -> None:
    model, x, y = _linear()
    adv = pgd(model, x, y, 0.05, generator=torch.Generator().manual_seed(0))
    assert (adv - x).abs().max() <= 0.05 + 1e-12 and adv.min() >= 0 and adv.max() <= 1
    with torch.no_grad():
        assert F.cross_entropy(model(adv), y) > F.cross_entropy(model(fgsm(model, x, y, 0.0)), y)
    again = pgd(model, x, y, 0.05, generator=torch.Generator().manual_seed(0))
    assert torch.equal(adv, again)  # a fixed seed gives the same attack


def test_parse_eps() -> None:
    assert parse_eps("1/255, 8/255,0.1") == [1 / 255, 8 / 255, 0.1]
    with pytest.raises(UsageError, match="--eps"):
        parse_eps("x/255")
    with pytest.raises(UsageError, match="outside"):
        parse_eps("2")


@pytest.mark.parametrize("eps", [8 / 255, 32 / 255])
def test_pgd_matches_adversarial_robustness_toolbox(eps: float) -> None:
    """IBM's ART (a test extra) runs its own PGD (L-inf, one uniform random start, 10 steps of 2.5 eps/10) on
    the same model and pixels: adversarial accuracy within 2 points. At 32/255 the attack matters: accuracy
    falls from 0.96 to about 0.11, so the comparison cannot pass by both attacks doing nothing."""
    art = pytest.importorskip("art")
    from art.attacks.evasion import ProjectedGradientDescentPyTorch
    from art.estimators.classification import PyTorchClassifier

    from vcal_cli import load_checkpoint, load_split

    assert art.__version__
    m = load_checkpoint(SAMPLES / "cnn_digits.safetensors")
    split = load_split("digits", "test")
    pixels, labels = m.preprocessing.to_pixels(split.images), split.labels
    model = PixelModel(m.model, m.preprocessing.normalize).eval()
    ours = adversarial_evaluation(model, pixels, labels, Attacks(eps=(eps,), kinds=("pgd",)))[0]["accuracy"]
    clf = PyTorchClassifier(
        model, torch.nn.CrossEntropyLoss(), input_shape=tuple(pixels.shape[1:]), nb_classes=10, clip_values=(0.0, 1.0)
    )
    atk = ProjectedGradientDescentPyTorch(
        clf, norm=np.inf, eps=eps, eps_step=2.5 * eps / 10, max_iter=10, num_random_init=1, verbose=False
    )
    np.random.seed(0)
    adv = torch.from_numpy(atk.generate(pixels.numpy(), y=labels.numpy()))
    with torch.no_grad():
        ref = float((model(adv).argmax(1) == labels).double().mean())
    assert abs(ours - ref) <= 0.02, (ours, ref)
    if eps > 16 / 255:
        assert ours < 0.5 and ref < 0.5


def test_audit_adversarial_section_is_reproducible(runner, tmp_path) -> None:
    import json

    from vcal_cli.cli import app

    from .helpers import one_line_error

    args = [
        "audit",
        str(SAMPLES / "cnn_digits.safetensors"),
        "--adversarial",
        "--eps",
        "0,8/255",
        "--adv-limit",
        "60",
        "--bootstrap",
        "0",
        "--json",
    ]
    a = runner.invoke(app, [*args, "-o", "a"])
    assert a.exit_code == 0, a.output
    rows = json.loads(a.stdout)["adversarial"]
    assert [(r["attack"], round(r["eps"] * 255)) for r in rows] == [("fgsm", 0), ("fgsm", 8), ("pgd", 0), ("pgd", 8)]
    clean = json.loads(a.stdout)["metrics"]
    assert rows[0]["accuracy"] == rows[2]["accuracy"]  # eps 0: both attacks leave the images as they are
    assert rows[1]["accuracy"] <= rows[0]["accuracy"] and rows[3]["accuracy"] <= rows[0]["accuracy"]
    assert clean["accuracy"] > 0.9
    b = runner.invoke(app, [*args, "-o", "b"])
    assert json.loads(b.stdout)["adversarial"] == rows  # a fixed --seed gives the same numbers
    assert (tmp_path / "a" / "adversarial.png").stat().st_size > 0
    assert "--eps" in one_line_error(runner.invoke(app, [*args[:3], "--eps", "big"]))

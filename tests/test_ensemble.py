"""Deep ensembles audited, recalibrated and gated like one model, on real files: three small MLPs trained on digits
with different seeds (seconds), each checked against what its members give alone."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.stats import entropy

from vcal_cli import load_features
from vcal_cli.cli import app
from vcal_cli.detectors import DETECTORS, Scored
from vcal_cli.errors import UsageError
from vcal_cli.heads.temperature import fit_inverse_temperature
from vcal_cli.session.ensemble import Ensemble, mean_log_probs

from .helpers import one_line_error, tiny_mlp, trained_digits_mlp


@pytest.fixture(scope="module")
def members(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    folder = tmp_path_factory.mktemp("members")
    return [trained_digits_mlp(folder / f"m{s}.safetensors", seed=s) for s in (1, 2, 3)]


def _member_logits(paths: list[Path], split: str) -> tuple[list[torch.Tensor], torch.Tensor]:
    sets = [load_features(p, "digits", split)[1] for p in paths]
    return [fs.logits[:] for fs in sets], sets[0].labels[:]


def test_mean_log_probs_is_the_log_of_the_mean_probability() -> None:
    g = torch.Generator().manual_seed(0)
    z = [torch.randn(50, 7, generator=g) * 8 for _ in range(3)]
    want = np.log(np.mean([torch.softmax(x.double(), 1).numpy() for x in z], axis=0))
    torch.testing.assert_close(mean_log_probs(z).double(), torch.from_numpy(want), rtol=1e-6, atol=1e-6)


def test_audit_of_an_ensemble_is_the_audit_of_its_mean_prediction(runner, members: list[Path], tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "noise.npz", x=rng.integers(0, 256, (120, 1, 8, 8), dtype=np.uint8), y=np.zeros(120, int))
    args = ["audit", *map(str, members), "--bootstrap", "50", "--conformal", "0.1", "--ood", "npz:noise.npz"]
    args += ["--ood-detectors", "msp,knn,mutual_info,disagreement", "--json", "-o", str(tmp_path / "rep")]
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    rep = json.loads(r.stdout)
    logits, labels = _member_logits(members, "test")
    probs = np.mean([torch.softmax(z.double(), 1).numpy() for z in logits], axis=0)
    assert rep["metrics"]["accuracy"] == pytest.approx(float((probs.argmax(1) == labels.numpy()).mean()), abs=1e-12)
    nll = -np.log(probs[np.arange(len(labels)), labels.numpy()]).mean()
    assert rep["metrics"]["nll"] == pytest.approx(nll, rel=1e-5)
    assert rep["checkpoint"]["ensemble"]["members"][0]["path"] == str(members[0])
    # each member's row is that member audited alone
    e = rep["ensemble"]
    for row, z in zip(e["members"], logits, strict=True):
        alone = -torch.log_softmax(z.double(), 1).gather(1, labels[:, None]).mean()
        assert row["nll"] == pytest.approx(float(alone), rel=1e-6)
    assert e["best_member"] == 1 + int(np.argmin([row["nll"] for row in e["members"]]))
    assert set(e["vs_best_member"]) >= {"nll", "ece", "accuracy"}
    assert e["vs_best_member"]["nll"]["verdict"] in ("better", "worse", "no different")
    # every section runs: conformal sets, OOD with the ensemble's own detectors (ViM and ReAct need one linear head)
    assert rep["conformal"]
    scores = {x["score"] for x in rep["ood"]}
    assert {"msp", "knn", "mutual_info", "disagreement"} <= scores
    assert (tmp_path / "rep" / "report.html").read_text().count("Ensemble of 3") == 1


def test_retrain_of_an_ensemble_fits_temperature_on_its_val_predictions(runner, members: list[Path], tmp_path) -> None:
    r = runner.invoke(app, ["retrain", *map(str, members), "--head", "temperature", "--bootstrap", "0", "--json"])
    assert r.exit_code == 0, r.output
    rep = json.loads(r.stdout)
    logits, labels = _member_logits(members, "val")
    s = fit_inverse_temperature(mean_log_probs(logits), labels)
    assert rep["heads"]["temperature"]["fitted"]["temperature"] == pytest.approx(1 / s, rel=1e-6)
    assert any("not written" in w for w in rep["warnings"])
    assert not list(Path.cwd().glob("vcal-report/*.safetensors"))


def test_gate_takes_ensemble_reports(runner, members: list[Path], tmp_path: Path) -> None:
    for name, ms in (("ens", members), ("one", members[:1])):
        r = runner.invoke(app, ["audit", *map(str, ms), "--bootstrap", "50", "-o", name, "--json"])
        assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["gate", "ens/report.json", "--baseline", "one/report.json"])
    assert r.exit_code in (0, 1), r.output  # a verdict either way, from real reports
    assert "gate" in r.output


def test_mutual_information_and_disagreement_against_the_formulas() -> None:
    g = torch.Generator().manual_seed(1)
    z = torch.randn(4, 30, 6, generator=g) * 3  # 4 members, 30 rows, 6 classes
    mean = mean_log_probs(list(z))
    x = Scored(features=torch.zeros(30, 1), outputs=mean, raw_logits=False, members=z)
    p = torch.softmax(z.double(), -1).numpy()
    want = entropy(p.mean(0), axis=1) - np.mean([entropy(pm, axis=1) for pm in p], axis=0)
    got = DETECTORS.get("mutual_info")().score(x)
    torch.testing.assert_close(got, torch.from_numpy(want).clamp_min(0), rtol=1e-6, atol=1e-6)
    votes = p.argmax(-1)
    agree = (votes == mean.argmax(1).numpy()[None]).mean(0)
    torch.testing.assert_close(DETECTORS.get("disagreement")().score(x), torch.from_numpy(1 - agree))
    assert "ensemble" in DETECTORS.get("mutual_info")().applies(
        Scored(features=torch.zeros(30, 1), outputs=mean, raw_logits=False)
    )


def test_bad_ensembles_are_one_line(runner, members: list[Path], tmp_path: Path) -> None:
    from vcal_cli import save_checkpoint

    five = save_checkpoint(tiny_mlp(0, num_classes=5), tmp_path / "five.safetensors")
    line = one_line_error(runner.invoke(app, ["audit", str(members[0]), str(five), "--data", "digits"]))
    assert "ensemble member 2" in line and "5 classes" in line
    renamed = tiny_mlp(0)
    renamed.class_names = [f"c{i}" for i in range(10)]
    other = save_checkpoint(renamed, tmp_path / "renamed.safetensors")
    line = one_line_error(runner.invoke(app, ["audit", str(members[0]), str(other)]))
    assert "names its classes differently" in line
    line = one_line_error(runner.invoke(app, ["audit", *map(str, members[:2]), "--head-file", str(five)]))
    assert "--head-file" in line
    with pytest.raises(UsageError, match="two checkpoints or more"):
        Ensemble.open([members[0]])


def test_shift_and_attacks_run_on_an_ensemble(runner, members: list[Path]) -> None:
    """Corrupted splits go through every member; attacks through the averaged network (one preprocessing)."""
    args = ["audit", *map(str, members), "--shift", "--corruptions", "contrast", "--severities", "5", "--adversarial"]
    args += ["--eps", "8/255", "--adv-limit", "40", "--bootstrap", "0", "--json", "-o", "rep"]
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    rep = json.loads(r.stdout)
    assert [(x["corruption"], x["severity"]) for x in rep["shift"]] == [("contrast", 5)]
    assert rep["shift"][0]["accuracy"] < rep["metrics"]["accuracy"]  # severity 5 contrast hurts
    pgd = next(x for x in rep["adversarial"] if x["attack"] == "pgd")
    logits, labels = _member_logits(members, "test")
    clean = (mean_log_probs([z[:40] for z in logits]).argmax(1) == labels[:40]).double().mean()
    assert pgd["accuracy"] < float(clean)  # the attack works through the averaged network

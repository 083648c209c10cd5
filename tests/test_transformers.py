"""transformers' own image classifiers, written by transformers itself (`save_pretrained` with tiny configs): vcal
audits the folder with no flag, its logits equal transformers' forward pass, class names and preprocessing come from
the folder, `vcal retrain` works and its checkpoint re-audits to the same numbers; custom code is refused."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

from vcal_cli import ExtractOptions, Workbench, load_checkpoint
from vcal_cli.cli import app
from vcal_cli.data import load_split
from vcal_cli.errors import CheckpointError

from .helpers import one_line_error

transformers = pytest.importorskip("transformers")

NAMES = [f"digit {i}" for i in range(10)]


def _labels() -> dict:
    return {"num_labels": 10, "id2label": dict(enumerate(NAMES)), "label2id": {n: i for i, n in enumerate(NAMES)}}


CONFIGS = {  # tiny, 1-channel, 8x8: what transformers builds for digits
    "ViTForImageClassification": lambda: transformers.ViTConfig(
        image_size=8,
        patch_size=4,
        num_channels=1,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        **_labels(),
    ),
    "DeiTForImageClassification": lambda: transformers.DeiTConfig(
        image_size=8,
        patch_size=4,
        num_channels=1,
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        **_labels(),
    ),
    "ConvNextForImageClassification": lambda: transformers.ConvNextConfig(
        num_channels=1, num_stages=2, hidden_sizes=[8, 16], depths=[1, 1], patch_size=2, image_size=8, **_labels()
    ),
    "ResNetForImageClassification": lambda: transformers.ResNetConfig(
        num_channels=1, embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], layer_type="basic", **_labels()
    ),
    "SwinForImageClassification": lambda: transformers.SwinConfig(
        image_size=8,
        patch_size=2,
        num_channels=1,
        embed_dim=8,
        depths=[1, 1],
        num_heads=[1, 2],
        window_size=2,
        **_labels(),
    ),
}


def _save(folder: Path, name: str, model=None) -> torch.nn.Module:
    """The model as transformers writes it, with a ViT image processor (resize to 8x8, mean/std 0.5)."""
    if model is None:
        torch.manual_seed(0)
        model = getattr(transformers, name)(CONFIGS[name]()).eval()
    model.save_pretrained(folder)
    transformers.ViTImageProcessor(size={"height": 8, "width": 8}, image_mean=[0.5], image_std=[0.5]).save_pretrained(
        folder
    )
    return model


@pytest.mark.parametrize("name", list(CONFIGS))
def test_folder_audits_with_no_flag_and_logits_equal_transformers(tmp_path: Path, name: str) -> None:
    model = _save(tmp_path / "m", name)
    bench = Workbench.open(tmp_path / "m", "digits", ExtractOptions.of(cache_dir=str(tmp_path / "c")))
    loaded = bench.model
    assert loaded.arch == f"transformers:{name}" and loaded.class_names == NAMES and loaded.in_chans == 1
    prep = bench.preprocessing
    assert prep.input_size == (1, 8, 8) and prep.mean == (0.5,) and "preprocessor_config.json" in prep.source
    fs = bench.features("test")
    split = load_split("digits", "test")
    with torch.no_grad():
        want = model(pixel_values=prep.to_model_input(split.images)).logits
    assert torch.allclose(fs.logits, want, atol=1e-5)
    head = loaded.head  # the classifier: features @ W.T + b == logits
    assert torch.allclose(fs.features.float() @ head.weight.T + head.bias, fs.logits, atol=1e-4)


def _trained_vit(folder: Path) -> None:
    """A tiny ViT trained a few epochs on digits (so temperature scaling has something to fit)."""
    torch.manual_seed(0)
    model = transformers.ViTForImageClassification(CONFIGS["ViTForImageClassification"]())
    train = load_split("digits", "train")
    x, y = (train.images.float() - 0.5) / 0.5, train.labels  # digits: float pixels in [0, 1]
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    for _ in range(15):
        for idx in torch.randperm(len(y)).split(64):
            loss = torch.nn.functional.cross_entropy(model(pixel_values=x[idx]).logits, y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    _save(folder, "ViTForImageClassification", model.eval())


def test_retrain_on_a_transformers_folder_and_reaudit(runner, tmp_path: Path) -> None:
    _trained_vit(tmp_path / "vit")
    r = runner.invoke(app, ["audit", "vit", "--data", "digits", "--bootstrap", "0", "--json"])
    assert r.exit_code == 0, r.output
    before = json.loads(r.stdout)
    assert before["metrics"]["accuracy"] > 0.7 and before["class_names"] == NAMES
    r = runner.invoke(
        app, ["retrain", "vit", "--data", "digits", "--head", "temperature", "--bootstrap", "0", "--out", "out"]
    )
    assert r.exit_code == 0, r.output
    rep = json.loads((tmp_path / "out" / "report.json").read_text())
    again = runner.invoke(app, ["audit", "out/vit.temperature.safetensors", "--bootstrap", "0", "--json"])
    assert again.exit_code == 0, again.output
    got = json.loads(again.stdout)
    assert got["metrics"] == pytest.approx(rep["heads"]["temperature"]["metrics"], abs=1e-6)
    assert got["class_names"] == NAMES


def test_distilled_deit_and_custom_code_are_refused(tmp_path: Path) -> None:
    cfg = CONFIGS["DeiTForImageClassification"]()
    transformers.DeiTForImageClassificationWithTeacher(cfg).save_pretrained(tmp_path / "deit")
    with pytest.raises(CheckpointError, match="averages two linear heads"):
        load_checkpoint(tmp_path / "deit")
    _save(tmp_path / "custom", "ViTForImageClassification")
    cfg_path = tmp_path / "custom" / "config.json"
    d = json.loads(cfg_path.read_text())
    d["auto_map"] = {"AutoModelForImageClassification": "modeling_evil.EvilModel"}
    cfg_path.write_text(json.dumps(d))
    (tmp_path / "custom" / "modeling_evil.py").write_text("raise SystemExit('ran the folder code')\n")
    with pytest.raises(CheckpointError, match="never runs code from a model folder"):
        load_checkpoint(tmp_path / "custom")


def test_without_transformers_the_folder_names_the_extra(runner, tmp_path: Path, monkeypatch) -> None:
    _save(tmp_path / "m", "ViTForImageClassification")
    monkeypatch.setitem(sys.modules, "transformers", None)  # import transformers now raises ImportError
    line = one_line_error(runner.invoke(app, ["audit", "m", "--data", "digits"]))
    assert 'pip install "vcal[transformers]"' in line and "transformers is not installed" in line


def test_export_transformers_writes_a_folder_that_reaudits_with_no_flags(runner, tmp_path: Path) -> None:
    """`--export transformers`: save_pretrained with temperature folded into the classifier; the folder audits with
    nothing but `--data` (as any transformers folder) to the head's numbers, and the source folder is untouched."""
    _trained_vit(tmp_path / "vit")
    before = (tmp_path / "vit" / "model.safetensors").read_bytes()
    args = ["retrain", "vit", "--data", "digits", "--head", "temperature", "--export", "transformers"]
    r = runner.invoke(app, [*args, "--bootstrap", "0", "--out", "out"])
    assert r.exit_code == 0, r.output
    rep = json.loads((tmp_path / "out" / "report.json").read_text())
    assert rep["heads"]["temperature"]["checkpoint"] == str(Path("out") / "vit.temperature")
    again = runner.invoke(app, ["audit", "out/vit.temperature", "--data", "digits", "--bootstrap", "0", "--json"])
    assert again.exit_code == 0, again.output
    got = json.loads(again.stdout)
    assert got["metrics"] == pytest.approx(rep["heads"]["temperature"]["metrics"], abs=2e-5)
    assert got["class_names"] == NAMES
    assert (tmp_path / "out" / "vit.temperature" / "preprocessor_config.json").exists()
    assert (tmp_path / "vit" / "model.safetensors").read_bytes() == before

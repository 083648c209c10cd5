"""`--data hf:PATH`: Hugging Face datasets written by the `datasets` library itself (save_to_disk folders with a
DatasetDict or a lone Dataset, parquet files), columns found from the features or named by flags, and the bad
inputs, each one line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from vcal_cli import load_split
from vcal_cli.cli import app

from .conftest import SAMPLES
from .helpers import one_line_error

datasets = pytest.importorskip("datasets")
MLP = str(SAMPLES / "mlp_digits.safetensors")


def _digits(split: str, image: str = "image", label: str = "label", class_label: bool = True):
    from PIL import Image

    s = load_split("digits", split)
    imgs = [Image.fromarray((x[0].numpy() * 255).round().astype(np.uint8)) for x in s.images]
    lab = datasets.ClassLabel(names=list(s.classes)) if class_label else datasets.Value("int64")
    feats = datasets.Features({image: datasets.Image(), label: lab})
    return datasets.Dataset.from_dict({image: imgs, label: s.labels.tolist()}, features=feats)


def _audit(runner, *args: str) -> dict:
    r = runner.invoke(app, ["audit", MLP, *args, "--bootstrap", "0", "--no-suggest", "--json"])
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("hf") / "digits"
    datasets.DatasetDict({"train": _digits("train"), "test": _digits("test")}).save_to_disk(str(path))
    return path


def test_a_dataset_dict_audits_like_the_built_in_data(runner, saved: Path) -> None:
    hf = _audit(runner, "--data", f"hf:{saved}")
    ref = _audit(runner, "--data", "digits")
    assert hf["data"]["n"] == ref["data"]["n"] == 540
    assert hf["metrics"]["accuracy"] == ref["metrics"]["accuracy"]
    assert hf["metrics"]["nll"] == pytest.approx(ref["metrics"]["nll"], abs=2e-3)  # uint8 pixels, not 17 levels
    assert hf["class_names"] == list(load_split("digits", "test").classes)  # from the ClassLabel


def test_val_is_the_validation_split_or_held_out_of_train(runner, saved: Path, tmp_path: Path) -> None:
    held = _audit(runner, "--data", f"hf:{saved}", "--split", "val")
    assert held["data"]["n"] == 108  # 10% of the 1,077 train rows, vcal's rule
    path = tmp_path / "with_val"
    parts = {"train": _digits("train"), "validation": _digits("val"), "test": _digits("test")}
    datasets.DatasetDict(parts).save_to_disk(str(path))
    assert _audit(runner, "--data", f"hf:{path}", "--split", "val")["data"]["n"] == 180


def test_a_lone_dataset_is_pooled_and_parquet_files_are_read(runner, tmp_path: Path) -> None:
    _digits("test").save_to_disk(str(tmp_path / "one"))
    assert _audit(runner, "--data", f"hf:{tmp_path / 'one'}")["data"]["n"] == 162  # 30% of 540, the pool rule
    folder = tmp_path / "pq"
    folder.mkdir()
    _digits("train").to_parquet(str(folder / "train-00000-of-00001.parquet"))
    _digits("test").to_parquet(str(folder / "test-00000-of-00001.parquet"))
    rep = _audit(runner, "--data", f"hf:{folder}")
    assert rep["data"]["n"] == 540 and rep["metrics"]["accuracy"] > 0.95


def test_columns_named_by_flags(runner, tmp_path: Path) -> None:
    path = tmp_path / "named"
    ds = datasets.DatasetDict(
        {"train": _digits("train", "img", "y", False), "test": _digits("test", "img", "y", False)}
    )
    ds.save_to_disk(str(path))
    line = one_line_error(runner.invoke(app, ["audit", MLP, "--data", f"hf:{path}"]))
    assert "no label column" in line and "--label-column" in line
    rep = _audit(runner, "--data", f"hf:{path}", "--label-column", "y")
    assert rep["metrics"]["accuracy"] > 0.95 and rep["class_names"][:2] == ["0", "1"]
    line = one_line_error(runner.invoke(app, ["audit", MLP, "--data", f"hf:{path}", "--image-column", "nope"]))
    assert "no image column" in line


def test_bad_hugging_face_inputs_are_one_line(runner, tmp_path: Path) -> None:
    from PIL import Image

    img = Image.fromarray(np.zeros((8, 8), np.uint8))
    feats = datasets.Features({"image": datasets.Image(), "label": datasets.Value("float32")})
    bad = datasets.Dataset.from_dict({"image": [img] * 20, "label": [0.5] * 20}, features=feats)
    datasets.DatasetDict({"train": bad, "test": bad}).save_to_disk(str(tmp_path / "floats"))
    cases = {
        f"hf:{tmp_path / 'floats'}": "label column 'label' holds float32, not class indices",
        "hf:surely-not-a-cached-dataset-name": "not in the local Hugging Face cache",
        f"hf:{tmp_path}": "neither a save_to_disk folder nor a folder of parquet files",
    }
    for spec, says in cases.items():
        line = one_line_error(runner.invoke(app, ["audit", MLP, "--data", spec, "-o", str(tmp_path / "rep")]))
        assert says in line, line
    line = one_line_error(runner.invoke(app, ["audit", MLP, "--data", "digits", "--label-column", "y"]))
    assert "for Hugging Face datasets" in line
    assert not (tmp_path / "rep").exists()

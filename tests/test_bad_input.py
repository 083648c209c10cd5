"""Bad input that used to reach an internal error or give silently wrong numbers: each is now one `error:` line with
exit 2 naming the file or flag, before any work where the input is a flag."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vcal_cli.cli import app

from .conftest import SAMPLES
from .helpers import one_line_error

CNN = str(SAMPLES / "cnn_digits.safetensors")  # 1x8x8, 10 classes


def _audit(runner, *args: str) -> str:
    return one_line_error(runner.invoke(app, ["audit", CNN, "--bootstrap", "0", "--no-suggest", *args]))


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--data", "digits", "--input-size", "3,8,8"], ["--input-size", "3 channel", "takes 1"]),
        (["--data", "digits", "--input-size", "1,100000,100000"], ["--input-size", "4096"]),
        (["--data", "digits", "--out", "x" * 300], ["--out", "too long"]),
    ],
)
def test_bad_flags_are_one_line(runner, args: list[str], words: list[str]) -> None:
    line = _audit(runner, *args)
    assert all(w in line for w in words), line


def _npz(path: Path, x: np.ndarray, y: np.ndarray) -> str:
    np.savez(path, x=x, y=y)
    return f"npz:{path}"


@pytest.mark.parametrize(
    ("labels", "words"),
    [
        (np.array(["a"] * 20), ["labels must be integer", "str"]),
        (np.arange(20) % 10 + 0.5, ["labels must be integer", "not whole"]),
    ],
)
def test_npz_labels_that_are_not_class_indices(runner, tmp_path: Path, labels: np.ndarray, words: list[str]) -> None:
    x = np.random.default_rng(0).random((20, 1, 8, 8), dtype=np.float32)
    line = _audit(runner, "--data", _npz(tmp_path / "d.npz", x, labels))
    assert all(w in line for w in words) and "d.npz" in line, line


def test_npz_whole_float_labels_are_accepted(runner, tmp_path: Path) -> None:
    x = np.random.default_rng(0).random((20, 1, 8, 8), dtype=np.float32)
    r = runner.invoke(
        app,
        [
            "audit",
            CNN,
            "--bootstrap",
            "0",
            "--no-suggest",
            "--data",
            _npz(tmp_path / "d.npz", x, (np.arange(20) % 10).astype(float)),
        ],
    )
    assert r.exit_code == 0, r.output


def test_normalised_pixels_are_refused_not_misread(runner, tmp_path: Path) -> None:
    """Pixels in [-1, 1] (already normalised): the README promises [0, 1] or [0, 255]; they gave silently wrong
    numbers (accuracy 0)."""
    x = np.random.default_rng(0).random((20, 1, 8, 8), dtype=np.float32) * 2 - 1
    line = _audit(runner, "--data", _npz(tmp_path / "d.npz", x, np.arange(20) % 10))
    assert "pixels must lie in [0, 1] or [0, 255]" in line and "d.npz" in line, line


def _folder(tmp_path: Path) -> Path:
    root = tmp_path / "imgs"
    for c in range(10):
        (root / str(c)).mkdir(parents=True)
        for i in range(3):
            Image.fromarray((np.random.default_rng(i).random((8, 8)) * 255).astype("uint8")).save(
                root / str(c) / f"{i}.png"
            )
    return root


@pytest.mark.parametrize("which", ["first", "later"])
def test_a_corrupt_image_is_named(runner, tmp_path: Path, which: str) -> None:
    root = _folder(tmp_path)
    bad = root / ("0" if which == "first" else "7") / "1.png"
    bad.write_bytes(b"not an image")
    line = _audit(runner, "--data", f"imagefolder:{root}", "--split", "train")
    assert "cannot decode image" in line and str(bad.name) in line, line


def test_a_decompression_bomb_is_named(runner, tmp_path: Path) -> None:
    root = _folder(tmp_path)
    bomb = root / "0" / "0.png"
    Image.new("L", (20_000, 20_000)).save(bomb, optimize=True)  # 400 Mpixels in a few hundred kB
    assert bomb.stat().st_size < 2_000_000
    line = _audit(runner, "--data", f"imagefolder:{root}", "--split", "train")
    assert "DecompressionBombError" in line and "0.png" in line, line


@pytest.mark.parametrize(
    "text",
    ["class,parent\na,b\nb,a\nc,a\n", "class,level1\na,x\nb,x\nx,y\n", "class,level1,level2\na,x,a\nb,x,y\n"],
)
def test_a_hierarchy_whose_names_form_a_cycle_is_refused(runner, tmp_path: Path, text: str) -> None:
    path = tmp_path / "h.csv"
    path.write_text(text)
    line = one_line_error(runner.invoke(app, ["hierarchy", "show", str(path)]))
    assert "cycle" in line and "h.csv" in line, line


@pytest.mark.parametrize(
    ("head", "flag", "value", "words"),
    [
        ("ce", "--lr", "nan", "finite number"),
        ("ce", "--lr", "inf", "finite number"),
        ("vtst", "--samples", "0", "at least 1"),
        ("ce", "--hidden", "-5", "finite number"),
    ],
)
def test_head_parameters_that_cannot_fit_are_one_line(runner, head: str, flag: str, value: str, words: str) -> None:
    line = one_line_error(runner.invoke(app, ["retrain", CNN, "--data", "digits", "--head", head, flag, value]))
    assert flag in line and words in line, line

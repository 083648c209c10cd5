"""A vcal checkpoint's metadata is checked before anything is built from it: each key's type, size and range, the
architecture keyword arguments against an allowlist; every refusal is one line naming the key (and the limit) with
the value cut short, within a second."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from safetensors.torch import load_file, save_file

from vcal_cli.checkpoints import limits
from vcal_cli.cli import app

from .conftest import SAMPLES
from .helpers import one_line_error

MLP = SAMPLES / "mlp_digits.safetensors"


def _with(tmp_path: Path, **changes: str | None) -> Path:
    from safetensors import safe_open

    with safe_open(str(MLP), "pt") as f:
        meta = dict(f.metadata())
    for k, v in changes.items():
        if v is None:
            meta.pop(k, None)
        else:
            meta[k] = v
    path = tmp_path / "m.safetensors"
    save_file(load_file(str(MLP)), str(path), metadata=meta)
    return path


CASES = {
    "huge class count": ({"num_classes": "10000000000"}, "num_classes"),
    "class count not a number": ({"num_classes": "ten"}, "num_classes"),
    "fewer names than classes": ({"class_names": json.dumps(["a", "b"])}, "class_names"),
    "a name of a megabyte": ({"class_names": json.dumps(["x" * 1_000_000] * 10)}, "class_names"),
    "a list where numbers go": (
        {"preprocessing": json.dumps({"input_size": [1, 8, 8], "mean": [[0.5]], "std": [0.5]})},
        "preprocessing.mean",
    ),
    "a huge input size": (
        {"preprocessing": json.dumps({"input_size": [1, 100000, 8], "mean": [0.5], "std": [0.5]})},
        "preprocessing.input_size",
    ),
    "a zero std": ({"preprocessing": json.dumps({"input_size": [1, 8, 8], "mean": [0.5], "std": [0.0]})}, "std"),
    "an unknown arch keyword": ({"arch_kwargs": json.dumps({"in_features": 64, "bogus": 1})}, "'bogus'"),
    "timm loading another file": (
        {"arch": "resnet18", "arch_kwargs": json.dumps({"checkpoint_path": "/etc/passwd"})},
        "'checkpoint_path'",
    ),
    "pretrained weights": ({"arch": "resnet18", "arch_kwargs": json.dumps({"pretrained": True})}, "'pretrained'"),
    "a recipe that is not JSON": ({"vcal_head": "{not json", "head_module": "fc"}, "vcal_head"),
    "a huge recipe": ({"vcal_head": json.dumps({"x": "y" * 100_000}), "head_module": "fc"}, "vcal_head"),
    "a 5 MB metadata string": ({"trained_on": "z" * 5_000_000}, "trained_on"),
    "arch_kwargs not an object": ({"arch_kwargs": "[1, 2]"}, "arch_kwargs"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_hostile_or_broken_metadata_is_one_short_line_within_a_second(runner, tmp_path: Path, case: str) -> None:
    changes, key = CASES[case]
    path = _with(tmp_path, **changes)
    t = time.perf_counter()
    r = runner.invoke(app, ["audit", str(path), "--data", "digits", "--bootstrap", "0", "--no-suggest"])
    line = one_line_error(r)
    assert time.perf_counter() - t < 5  # refused before any model is built or data read (1 s on a quiet machine)
    assert key in line and len(line) < 400, line


def test_limits_are_the_documented_ones() -> None:
    assert limits.MAX_CLASSES == 100_000 and limits.MAX_NAME_CHARS == 256
    assert "checkpoint_path" not in limits.ARCH_KWARGS["timm"] and "pretrained" not in limits.ARCH_KWARGS["timm"]
    assert limits.short("a" * 1000).endswith("(1,000 characters)")

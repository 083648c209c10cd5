"""A hostile tester's matrix: pickles that try to run code (three payloads, zip and legacy formats, nested),
safetensors with lying headers, links out of an image folder, a zip bomb, and bad data (NaN/inf, labels out of
range or float, one class, zero rows, mismatched lengths, a report.json from a newer schema). Each one: exit 2, one
`error:` line naming the file or flag, no traceback, nothing executed, memory bounded."""

from __future__ import annotations

import builtins
import json
import os
import pickle
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from vcal_cli.cli import app

from .helpers import one_line_error


class _System:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


class _Exec:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (builtins.exec, (f"open({self.marker!r}, 'w').close()",))


class _Popen:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (subprocess.Popen, (["touch", self.marker],))


PAYLOADS = {"os.system": _System, "builtins.exec": _Exec, "subprocess.Popen": _Popen}


@pytest.mark.parametrize("fmt", ["zip", "legacy", "plain-pickle"])
@pytest.mark.parametrize("payload", list(PAYLOADS))
def test_code_running_pickles_are_refused_and_nothing_runs(runner, tmp_path: Path, payload: str, fmt: str) -> None:
    marker = tmp_path / "pwned"
    obj = {"state_dict": {"fc.weight": torch.zeros(2, 2), "nested": {"deeper": [PAYLOADS[payload](str(marker))]}}}
    path = tmp_path / "evil.pt"
    if fmt == "plain-pickle":
        path.write_bytes(pickle.dumps(obj, protocol=2))
    else:
        torch.save(obj, path, _use_new_zipfile_serialization=fmt == "zip")
    line = one_line_error(runner.invoke(app, ["audit", str(path), "--arch", "vcal:mlp", "--data", "digits"]))
    assert str(path) in line and "--trust-checkpoint" in line and "ran nothing" in line
    assert payload.split(".")[-1] in line or payload in line  # it names what the pickle asked to run
    assert not marker.exists()


def _safetensors(header: bytes, body: bytes = b"") -> bytes:
    return struct.pack("<Q", len(header)) + header + body


@pytest.mark.parametrize(
    "case",
    ["huge-length", "not-json", "offsets-past-end", "metadata-not-strings", "empty", "vcal-metadata-garbage"],
)
def test_lying_safetensors_are_one_line(runner, tmp_path: Path, case: str) -> None:
    path = tmp_path / "model.safetensors"
    if case == "huge-length":  # a header length of 2^60 bytes: must not be allocated
        path.write_bytes(struct.pack("<Q", 1 << 60) + b"{}")
    elif case == "not-json":
        path.write_bytes(_safetensors(b"{this is not json" + b" " * 8))
    elif case == "offsets-past-end":
        hdr = json.dumps({"fc.weight": {"dtype": "F32", "shape": [1000, 1000], "data_offsets": [0, 4_000_000]}})
        path.write_bytes(_safetensors(hdr.encode(), b"\0" * 16))
    elif case == "metadata-not-strings":
        hdr = json.dumps({"__metadata__": {"vcal_format": 1, "arch": ["x"]}})
        path.write_bytes(_safetensors(hdr.encode()))
    elif case == "empty":
        path.write_bytes(b"")
    else:  # vcal's own metadata, malformed
        from safetensors.torch import save_file

        save_file(
            {"w": torch.zeros(1)}, str(path), metadata={"vcal_format": "1", "arch": "vcal:mlp", "num_classes": "ten"}
        )
    line, peak = _one_line_in_own_process(["audit", str(path), "--data", "digits"], tmp_path)
    assert str(path) in line
    assert peak < PEAK_KB, peak  # nothing huge allocated


PEAK_KB = 1_500_000  # a vcal process that stops at start-up peaks near 0.6 GB (torch); 2^60 or 2 GB would show


# The child writes its own peak (VmHWM: the high-water mark of the memory map it got at exec) when it exits. Its
# rusage would not do: Linux keeps the forking parent's peak across exec, so a pytest process grown past 1.5 GB by
# earlier tests made every child look 1.5 GB.
_CHILD = """
import atexit, os, runpy, sys

def _peak():
    with open("/proc/self/status") as f:
        kb = next(line.split()[1] for line in f if line.startswith("VmHWM:"))
    with open(os.environ["VCAL_TEST_PEAK_FILE"], "w") as f:
        f.write(kb)

atexit.register(_peak)
sys.argv = ["vcal", *sys.argv[1:]]
runpy.run_module("vcal_cli", run_name="__main__")
"""


def _one_line_in_own_process(args: list[str], tmp_path: Path) -> tuple[str, int]:
    """The error line and the peak resident memory (KB) of a fresh `vcal` process: its own peak alone, which no
    earlier test and no size of the test process can have raised."""
    peak_file = tmp_path / "peak-kb"
    p = subprocess.run(
        [sys.executable, "-c", _CHILD, *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "VCAL_THREADS": "1", "VCAL_TEST_PEAK_FILE": str(peak_file)},
    )
    lines = [x for x in p.stderr.strip().splitlines() if x]
    assert p.returncode == 2 and lines and lines[-1].startswith("error:"), p.stderr[-600:]
    return lines[-1], int(peak_file.read_text())


def test_a_zip_bomb_is_refused_with_bounded_memory(runner, tmp_path: Path) -> None:
    """A torch-looking zip whose data.pkl inflates to 2 GB from 2 MB: refused before anything is inflated."""
    path = tmp_path / "bomb.pt"
    chunk = b"\0" * (1 << 24)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as z:
        with z.open("archive/data.pkl", "w", force_zip64=True) as f:
            for _ in range(128):
                f.write(chunk)
        z.writestr("archive/version", "3\n")
    assert path.stat().st_size < 4 << 20
    line, peak = _one_line_in_own_process(["audit", str(path), "--arch", "vcal:mlp", "--data", "digits"], tmp_path)
    assert str(path) in line
    assert peak < PEAK_KB, peak


def test_links_out_of_an_image_folder_are_refused(runner, tmp_path: Path, mlp_ckpt: Path) -> None:
    from PIL import Image

    root = tmp_path / "imgs"
    for c in ("a", "b"):
        (root / c).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(np.full((8, 8), 40 * i, dtype=np.uint8)).save(root / c / f"{i}.png")
    outside = tmp_path / "secret.png"
    Image.fromarray(np.zeros((8, 8), dtype=np.uint8)).save(outside)
    (root / "b" / "link.png").symlink_to(outside)
    line = one_line_error(runner.invoke(app, ["audit", str(mlp_ckpt), "--data", f"imagefolder:{root}"]))
    assert "link.png" in line and "outside the folder" in line


def _logits(tmp_path: Path, **arrays) -> Path:
    path = tmp_path / "preds.npz"
    np.savez(path, **arrays)
    return path


GOOD = {
    "logits": np.random.default_rng(0).normal(size=(50, 4)).astype(np.float32),
    "labels": np.random.default_rng(1).integers(0, 4, 50),
}


@pytest.mark.parametrize(
    ("case", "words"),
    [
        ("nan-logits", "NaN"),
        ("inf-logits", "inf"),
        ("labels-out-of-range", "label"),
        ("float-labels", "label"),
        ("zero-rows", "no rows"),
        ("mismatched-lengths", "50"),
        ("negative-probs", "prob"),
    ],
)
def test_bad_predictions_are_one_line(runner, tmp_path: Path, case: str, words: str) -> None:
    a = {k: v.copy() for k, v in GOOD.items()}
    if case == "nan-logits":
        a["logits"][3, 1] = np.nan
    elif case == "inf-logits":
        a["logits"][7, 0] = np.inf
    elif case == "labels-out-of-range":
        a["labels"][0] = 9
    elif case == "float-labels":
        a["labels"] = a["labels"].astype(np.float64) + 0.5
    elif case == "zero-rows":
        a = {"logits": np.zeros((0, 4), np.float32), "labels": np.zeros(0, np.int64)}
    elif case == "mismatched-lengths":
        a["labels"] = a["labels"][:40]
    else:
        a = {"probs": np.full((50, 4), -0.25), "labels": a["labels"]}
    path = _logits(tmp_path, **a)
    line = one_line_error(runner.invoke(app, ["audit", "--logits", str(path)]))
    assert words.lower() in line.lower(), line
    if case in ("zero-rows", "mismatched-lengths"):
        assert str(path) in line


def test_one_class_in_the_labels_is_said(runner, tmp_path: Path) -> None:
    """Legitimate (a per-class slice), so not an error: a warning that the numbers describe one class."""
    a = {"logits": GOOD["logits"], "labels": np.zeros(50, np.int64)}
    r = runner.invoke(app, ["audit", "--logits", str(_logits(tmp_path, **a))])
    text = r.stderr if r.stderr_bytes is not None else r.output
    assert r.exit_code == 0 and "the labels hold one class of 4" in text, text


def test_a_report_from_a_newer_schema_is_one_line(runner, tmp_path: Path) -> None:
    rep = {"schema_version": 99, "vcal_version": "9.0", "metrics": {"ece": 0.1}}
    (tmp_path / "new.json").write_text(json.dumps(rep))
    (tmp_path / "old.json").write_text(json.dumps(rep))
    line = one_line_error(
        runner.invoke(app, ["gate", str(tmp_path / "new.json"), "--baseline", str(tmp_path / "old.json")])
    )
    assert "has schema 99" in line and "upgrade vcal" in line and ".json" in line


def test_a_corrupt_image_in_a_folder_is_named(runner, tmp_path: Path) -> None:
    from PIL import Image

    from vcal_cli import save_checkpoint

    from .helpers import tiny_mlp

    ckpt = save_checkpoint(tiny_mlp(num_classes=2), tmp_path / "two.safetensors")
    root = tmp_path / "imgs"
    for c in ("a", "b"):
        (root / c).mkdir(parents=True)
        for i in range(6):
            Image.fromarray(np.full((8, 8), 30 * i, dtype=np.uint8)).save(root / c / f"{i}.png")
    for i in range(6):  # class b's images are all damaged, so every split holds one
        (root / "b" / f"{i}.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    line = one_line_error(runner.invoke(app, ["audit", str(ckpt), "--data", f"imagefolder:{root}"]))
    assert "decode" in line and "/b/" in line and ".png" in line

"""SIGKILL at chosen points of real runs, then a rerun: while a shard is being written (extraction), while the cache
entry is being merged, while the report is being written (before report.html, before report.json) and while a
retrained checkpoint is being written. Each time: nothing partial is left where a reader looks (no report.json, no
checkpoint, every cache entry readable), and the rerun gives the numbers of an uninterrupted run. The runs stop at
named points (`vcal_cli._io.pause_point`, set by VCAL_PAUSE_AT) so the kill lands exactly there."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from vcal_cli.features import FeatureSet

from .conftest import SAMPLES

AUDIT = [
    "audit",
    str(SAMPLES / "cnn_digits.safetensors"),
    "--data",
    "digits",
    "--bootstrap",
    "0",
    "--shard-size",
    "128",
    "--no-suggest",
]


def _run(args: list[str], tmp: Path, cache: Path, pause: str | None = None) -> subprocess.Popen:
    env = {**os.environ, "VCAL_CACHE": str(cache), "VCAL_THREADS": "1"}
    if pause:
        env |= {"VCAL_PAUSE_AT": pause, "VCAL_PAUSE_FILE": str(tmp / "paused")}
    return subprocess.Popen(
        [sys.executable, "-m", "vcal_cli", *args],
        env=env,
        cwd=tmp,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _kill_at(args: list[str], tmp: Path, cache: Path, pause: str) -> None:
    p = _run(args, tmp, cache, pause)
    deadline = time.monotonic() + 180
    while not (tmp / "paused").exists():
        assert p.poll() is None, p.stderr.read()[-800:]
        assert time.monotonic() < deadline, "the run never reached the pause point"
        time.sleep(0.05)
    p.send_signal(signal.SIGKILL)
    p.wait(30)
    (tmp / "paused").unlink()
    assert p.returncode == -signal.SIGKILL


def _entries_readable(cache: Path) -> None:
    for entry in cache.glob("*.safetensors"):
        fs = FeatureSet.load(entry)
        assert len(fs.labels) == len(fs.logits) > 0


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> dict:
    tmp = tmp_path_factory.mktemp("ref")
    p = _run([*AUDIT, "--out", "o"], tmp, tmp / "cache")
    assert p.wait(300) == 0, p.stderr.read()[-800:]
    return json.loads((tmp / "o" / "report.json").read_text())["metrics"]


@pytest.mark.parametrize(
    "pause",
    [
        "before-rename:shard-000002.safetensors",
        "before-rename:[0-9a-f]*.safetensors",
        "before-rename:report.html",
        "before-rename:report.json",
    ],
)
def test_sigkill_then_rerun_gives_the_uninterrupted_numbers(tmp_path: Path, reference: dict, pause: str) -> None:
    cache = tmp_path / "cache"
    args = [*AUDIT, "--out", "o"]
    _kill_at(args, tmp_path, cache, pause)
    assert not (tmp_path / "o" / "report.json").exists()  # report.json is written last, atomically
    _entries_readable(cache)
    again = _run(args, tmp_path, cache)
    assert again.wait(300) == 0, again.stderr.read()[-800:]
    assert json.loads((tmp_path / "o" / "report.json").read_text())["metrics"] == reference
    _entries_readable(cache)
    assert not list(cache.glob("*.parts")), "a finished run leaves no shard folders"


def test_sigkill_while_writing_a_checkpoint_leaves_none(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    args = [
        "retrain",
        str(SAMPLES / "cnn_digits.safetensors"),
        "--data",
        "digits",
        "--head",
        "temperature",
        "--bootstrap",
        "0",
        "--out",
        "r",
    ]
    _kill_at(args, tmp_path, cache, "before-rename:cnn_digits.temperature.safetensors")
    assert not (tmp_path / "r" / "cnn_digits.temperature.safetensors").exists()
    again = _run(args, tmp_path, cache)
    assert again.wait(300) == 0, again.stderr.read()[-800:]
    check = _run(["audit", "r/cnn_digits.temperature.safetensors", "--bootstrap", "0", "--out", "a"], tmp_path, cache)
    assert check.wait(300) == 0, check.stderr.read()[-800:]
    audited = json.loads((tmp_path / "a" / "report.json").read_text())["metrics"]
    reported = json.loads((tmp_path / "r" / "report.json").read_text())["heads"]["temperature"]["metrics"]
    assert audited["nll"] == pytest.approx(reported["nll"], abs=1e-6)

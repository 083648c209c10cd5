"""Concurrent runs on one cache: several `vcal audit` processes started at once on the same checkpoint, data and empty
cache all succeed with identical numbers and leave exactly one valid entry per split and no shard folders (a file lock
per entry: one run builds it, the others wait and read it)."""

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


@pytest.mark.parametrize("runs", [2, 4, 8])
def test_concurrent_audits_share_one_cache(tmp_path: Path, runs: int) -> None:
    cache = tmp_path / "cache"
    env = {**os.environ, "VCAL_CACHE": str(cache), "VCAL_THREADS": "1"}
    cmd = [sys.executable, "-m", "vcal_cli", "audit", str(SAMPLES / "cnn_digits.safetensors"), "--data", "digits",
           "--bootstrap", "0", "--shard-size", "64", "--batch-size", "16", "--json"]  # fmt: skip
    procs = [subprocess.Popen([*cmd, "--out", str(tmp_path / f"r{i}")], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for i in range(runs)]  # fmt: skip
    outs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-500:] for o in outs]
    metrics = [json.loads(o[0])["metrics"] for o in outs]
    assert all(m == metrics[0] for m in metrics)  # the same numbers, to the bit
    entries = sorted(cache.glob("*.safetensors"))
    assert len(entries) == 2  # test and val (the suggestion), once each
    assert all(len(FeatureSet.load(p)) in (540, 180) for p in entries)
    assert not list(cache.glob("*.parts")) and not list(cache.glob(".*.tmp"))


def _run(args: list[str], tmp_path: Path) -> subprocess.Popen:
    env = {**os.environ, "VCAL_CACHE": str(tmp_path / "cache"), "VCAL_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "vcal_cli", *args], env=env, cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip


def test_two_runs_writing_one_out_never_interleave(tmp_path: Path) -> None:
    """Two audits of different checkpoints into the same --out: the report files all come from one of them."""
    a = _run(["audit", str(SAMPLES / "cnn_digits.safetensors"), "--data", "digits", "--bootstrap", "0", "--out", "o"],
             tmp_path)  # fmt: skip
    b = _run(["audit", str(SAMPLES / "mlp_digits.safetensors"), "--data", "digits", "--bootstrap", "0", "--out", "o"],
             tmp_path)  # fmt: skip
    assert a.wait(300) == 0 and b.wait(300) == 0, (a.stderr.read(), b.stderr.read())
    rep = json.loads((tmp_path / "o" / "report.json").read_text())
    md = (tmp_path / "o" / "report.md").read_text()
    assert Path(rep["checkpoint"]["path"]).name in md  # report.md was written by the same run as report.json
    csv = (tmp_path / "o" / "metrics.csv").read_text()
    assert f"{rep['metrics']['ece']:.6f}"[:6] in csv or str(rep["metrics"]["ece"])[:6] in csv


def test_sigterm_stops_cleanly_with_one_line_and_exit_143(tmp_path: Path) -> None:
    """SIGTERM in the middle of a long audit (corrupted splits being extracted): one line, exit 143, no report, no
    temp file; the rerun finishes from the cache."""
    args = ["audit", str(SAMPLES / "cnn_digits.safetensors"), "--data", "digits", "--bootstrap", "0", "--shift",
            "--out", "o"]  # fmt: skip
    p = _run(args, tmp_path)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not list((tmp_path / "cache").glob("*.safetensors")):
        time.sleep(0.05)  # the first entry is written: the run is past start-up, inside the work
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 143, err[-800:]
    lines = [x for x in err.strip().splitlines() if x.startswith("error:")]
    assert len(lines) == 1 and "terminated" in lines[0], err[-800:]
    assert not (tmp_path / "o" / "report.json").exists()
    assert not list((tmp_path / "cache").glob(".*.tmp")) and not list((tmp_path / "o").glob(".*.tmp"))
    again = _run(args, tmp_path)
    assert again.wait(300) == 0, again.stderr.read()[-800:]
    assert (tmp_path / "o" / "report.json").is_file()

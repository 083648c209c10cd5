"""Concurrent runs on one cache: several `vcal audit` processes started at once on the same checkpoint, data and empty
cache all succeed with identical numbers and leave exactly one valid entry per split and no shard folders (a file lock
per entry: one run builds it, the others wait and read it)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from vcal_cli.features import FeatureSet

from .conftest import SAMPLES


@pytest.mark.parametrize("runs", [2, 4])
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

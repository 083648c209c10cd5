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
    cmd = [
        sys.executable,
        "-m",
        "vcal_cli",
        "audit",
        str(SAMPLES / "cnn_digits.safetensors"),
        "--data",
        "digits",
        "--bootstrap",
        "0",
        "--shard-size",
        "64",
        "--batch-size",
        "16",
        "--json",
    ]
    procs = [
        subprocess.Popen(
            [*cmd, "--out", str(tmp_path / f"r{i}")], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for i in range(runs)
    ]
    outs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-500:] for o in outs]
    metrics = [json.loads(o[0])["metrics"] for o in outs]
    assert all(m == metrics[0] for m in metrics)  # the same numbers, to the bit
    entries = sorted(cache.glob("*.safetensors"))
    assert len(entries) == 2  # test and val (the suggestion), once each
    assert all(len(FeatureSet.load(p)) in (540, 180) for p in entries)
    assert not list(cache.glob("*.parts")) and not list(cache.glob(".*.tmp"))


def _run(args: list[str], tmp_path: Path, pause: str | None = None) -> subprocess.Popen:
    env = {**os.environ, "VCAL_CACHE": str(tmp_path / "cache"), "VCAL_THREADS": "1"}
    if pause:  # stop at this named point until tmp_path/paused is removed (vcal_cli._io.pause_point)
        env |= {"VCAL_PAUSE_AT": pause, "VCAL_PAUSE_FILE": str(tmp_path / "paused")}
    return subprocess.Popen(
        [sys.executable, "-m", "vcal_cli", *args],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_two_runs_writing_one_out_never_interleave(tmp_path: Path) -> None:
    """Two audits of different checkpoints into the same --out: the report files all come from one of them."""
    a = _run(
        ["audit", str(SAMPLES / "cnn_digits.safetensors"), "--data", "digits", "--bootstrap", "0", "--out", "o"],
        tmp_path,
    )
    b = _run(
        ["audit", str(SAMPLES / "mlp_digits.safetensors"), "--data", "digits", "--bootstrap", "0", "--out", "o"],
        tmp_path,
    )
    assert a.wait(300) == 0 and b.wait(300) == 0, (a.stderr.read(), b.stderr.read())
    rep = json.loads((tmp_path / "o" / "report.json").read_text())
    md = (tmp_path / "o" / "report.md").read_text()
    assert Path(rep["checkpoint"]["path"]).name in md  # report.md was written by the same run as report.json
    csv = (tmp_path / "o" / "metrics.csv").read_text()
    assert f"original,ece,{rep['metrics']['ece']!r}," in csv, csv  # metrics.csv too, to the last digit


def test_sigterm_stops_cleanly_with_one_line_and_exit_143(tmp_path: Path) -> None:
    """SIGTERM in the middle of a long audit (corrupted splits being extracted): one line, exit 143, no report, no
    temp file; the rerun finishes from the cache."""
    args = [
        "audit",
        str(SAMPLES / "cnn_digits.safetensors"),
        "--data",
        "digits",
        "--bootstrap",
        "0",
        "--shift",
        "--out",
        "o",
    ]
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


def _held(p: subprocess.Popen, flag: Path, what: str = "", timeout: float = 180) -> str:
    """Wait until run p stops at a pause point (its flag file appears, holding the point's name); return the name."""
    deadline = time.monotonic() + timeout
    while not flag.exists() or (what and what not in flag.read_text()):
        assert p.poll() is None, p.stderr.read()[-800:]
        assert time.monotonic() < deadline, f"the run never reached {what or 'its pause point'}"
        time.sleep(0.05)
    return flag.read_text()


def _never(p: subprocess.Popen, flag: Path, what: str, seconds: float) -> None:
    """Run p does not reach the pause point `what` within `seconds` (it waits on a lock)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert not (flag.exists() and what in flag.read_text()), f"B reached {what} while A held the lock"
        assert p.poll() is None, "B finished while A held the lock"
        time.sleep(0.05)


def _run_b(args: list[str], tmp_path: Path, pattern: str) -> subprocess.Popen:
    env = {
        **os.environ,
        "VCAL_CACHE": str(tmp_path / "cache"),
        "VCAL_THREADS": "1",
        "VCAL_PAUSE_AT": pattern,
        "VCAL_PAUSE_FILE": str(tmp_path / "b-paused"),
    }
    return subprocess.Popen(
        [sys.executable, "-m", "vcal_cli", *args],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_the_cache_lock_makes_a_second_run_wait_and_read_the_first_runs_entry(tmp_path: Path) -> None:
    """Run A is held inside the cache build (its entry written, not yet renamed into place, the entry's lock held).
    Run B stops just before the lock (a pause point) and is let go; it must not get past the lock (the next pause
    point, just inside it) while A holds it. Released, A finishes the entry, B enters and reads it: exactly one of
    the two extracts the split. With the lock replaced by a null context, B passes the point inside at once and this
    test fails (checked once)."""
    args = ["audit", str(SAMPLES / "cnn_digits.safetensors"), "--data", "digits", "--bootstrap", "0", "--no-suggest"]
    flag_a, flag_b = tmp_path / "paused", tmp_path / "b-paused"
    a = _run([*args, "--out", "a"], tmp_path, pause="before-rename:[0-9a-f]*.safetensors")
    _held(a, flag_a)
    b = _run_b([*args, "--out", "b"], tmp_path, "cache-lock-*")
    _held(b, flag_b, "cache-lock-wait")
    flag_b.unlink()  # B goes on to the lock
    _never(b, flag_b, "cache-lock-held", 5)  # without a lock B is inside within milliseconds
    assert not list((tmp_path / "cache").glob("*.safetensors"))  # A's entry is not in place yet
    flag_a.unlink()  # A finishes its entry and lets go of the lock
    _held(b, flag_b, "cache-lock-held")
    flag_b.unlink()
    _, err_a = a.communicate(timeout=300)
    _, err_b = b.communicate(timeout=300)
    assert a.returncode == 0 and b.returncode == 0, (err_a[-800:], err_b[-800:])
    assert "features digits:test: started" in err_a
    assert "features digits:test" not in err_b  # B neither extracted nor resumed: it read A's entry
    assert len(list((tmp_path / "cache").glob("*.safetensors"))) == 1
    ra, rb = (json.loads((tmp_path / d / "report.json").read_text()) for d in ("a", "b"))
    assert ra["metrics"] == rb["metrics"] and rb["settings"]["cache"]["hit"] is True


def test_the_report_lock_makes_a_second_writer_wait(tmp_path: Path) -> None:
    """Run A is held inside its report write (report.html moved into place, report.json not yet); run B writing the
    same --out stops before the report lock, is let go, and must not get inside it while A holds it; released, A's
    report is complete, then B's replaces it whole."""
    cnn = ["audit", str(SAMPLES / "cnn_digits.safetensors"), "--data", "digits", "--bootstrap", "0", "--out", "o"]
    mlp = ["audit", str(SAMPLES / "mlp_digits.safetensors"), "--data", "digits", "--bootstrap", "0", "--out", "o"]
    flag_a, flag_b = tmp_path / "paused", tmp_path / "b-paused"
    a = _run(cnn, tmp_path, pause="before-rename:report.json")
    _held(a, flag_a)
    b = _run_b(mlp, tmp_path, "report-lock-*")
    _held(b, flag_b, "report-lock-wait")
    flag_b.unlink()
    _never(b, flag_b, "report-lock-held", 5)
    assert not (tmp_path / "o" / "report.json").exists()
    flag_a.unlink()
    assert a.wait(300) == 0, a.stderr.read()[-800:]
    assert json.loads((tmp_path / "o" / "report.json").read_text())["checkpoint"]["path"].endswith(
        "cnn_digits.safetensors"
    )
    _held(b, flag_b, "report-lock-held")
    flag_b.unlink()
    assert b.wait(300) == 0, b.stderr.read()[-800:]
    rep = json.loads((tmp_path / "o" / "report.json").read_text())
    assert Path(rep["checkpoint"]["path"]).name == "mlp_digits.safetensors"  # B wrote last, after A, whole
    md = (tmp_path / "o" / "report.md").read_text()
    assert "mlp_digits.safetensors" in md and "cnn_digits.safetensors" not in md
